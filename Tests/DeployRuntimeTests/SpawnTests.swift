@testable import DeployRuntime
import Glibc
import Testing

@Suite struct SpawnTests {
    @Test func runCapturesOutputAndStatus() async throws {
        let r = try await ProcessLauncher.run(executable: "sh", arguments: ["-c", "echo out; echo err >&2; exit 3"], timeout: .seconds(5))
        #expect(r.status == 3)
        #expect(r.output.contains("out"))
        #expect(r.output.contains("err"))
    }

    @Test func runTimesOutAndKills() async throws {
        do {
            _ = try await ProcessLauncher.run(executable: "sleep", arguments: ["30"], timeout: .milliseconds(200))
            Issue.record("expected a timeout")
        } catch {
            #expect(error.code == "command_timeout")
        }
    }

    /// A child whose exit status someone else took is an error, never exit 0: a check whose 0 means
    /// "verified" must fail closed.
    @Test func aLostExitStatusIsAnErrorNotZero() throws {
        let p = try ProcessLauncher.spawnDetached(executable: "sh", arguments: ["-c", "exit 7"], environment: ["PATH": "/usr/bin:/bin"],
                                                  workingDirectory: nil, logPath: "/dev/null")
        var status: Int32 = 0
        while waitpid(p.pid, &status, 0) < 0 && errno == EINTR {}  // reaped behind the waiter's back
        #expect(ProcessLauncher.exitCode(status) == 7)
        #expect(throws: RuntimeError.self) { _ = try ProcessLauncher.waitForExit(p.pid, what: "sh") }
        do { _ = try ProcessLauncher.waitForExit(p.pid, what: "sh") } catch { #expect(error.code == "child_lost") }
    }

    /// A liveness check or a stop on a pid that is not one of our long-running (detached) children never
    /// reaps it, even when it is an exited child of ours (a short command its waiter has not collected
    /// yet): that pid may be a stale one from a pid file, reused.
    @Test func livenessChecksReapOnlyDetachedChildren() async throws {
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        let pid = try ProcessLauncher.spawn(path: "/bin/sh", arguments: ["-c", "exit 5"], environment: ["PATH": "/usr/bin:/bin"],
                                            fileActions: &fa, flags: Int32(POSIX_SPAWN_SETPGROUP))
        for _ in 0..<400 where ProcessTable.info(pid)?.state != "Z" { await pause(milliseconds: 5) }
        #expect(!ProcessLauncher.isAlive(pid: pid))
        _ = await ProcessLauncher.terminateTree(pgid: pid, members: [pid], grace: .milliseconds(100))
        #expect(ProcessTable.info(pid)?.state == "Z")
        #expect(try ProcessLauncher.waitForExit(pid, what: "sh") == 5)  // still there for its own waiter
    }

    /// A group with no process left is neither signalled nor reaped: its id may already lead another group.
    @Test func aGoneGroupIsLeftAlone() async throws {
        let p = try ProcessLauncher.spawnDetached(executable: "sh", arguments: ["-c", "exit 0"], environment: ["PATH": "/usr/bin:/bin"],
                                                  workingDirectory: nil, logPath: "/dev/null")
        var status: Int32 = 0
        while waitpid(p.pid, &status, 0) < 0 && errno == EINTR {}
        #expect(await ProcessLauncher.terminateTree(pgid: p.pgid, members: [], grace: .milliseconds(100)))
    }

    @Test func missingExecutable() async {
        do {
            _ = try await ProcessLauncher.run(executable: "no-such-program-xyz", arguments: [], timeout: .seconds(1))
            Issue.record("expected an error")
        } catch {
            #expect(error.code == "spawn_failed")
        }
    }

    @Test func detachedProcessHasItsOwnSessionLogAndStops() async throws {
        let dir = try TempDir("spawn")
        defer { dir.remove() }
        let log = dir.path + "/out.log"
        let p = try ProcessLauncher.spawnDetached(
            executable: "sh", arguments: ["-c", "echo started in $(pwd) $MARK; sleep 60 & sleep 60; wait"],
            environment: ["PATH": "/usr/bin:/bin", "MARK": "m1"], workingDirectory: dir.path, logPath: log)
        #expect(p.pgid == p.pid)
        #expect(getsid(p.pid) == p.pid)
        #expect(ProcessLauncher.isAlive(pid: p.pid))
        var text = ""
        for _ in 0..<100 where !text.contains("m1") {
            usleep(20_000)
            text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        }
        #expect(text.contains("started in \(dir.path) m1"))
        // The background child is in the same group.
        let stopped = await ProcessLauncher.terminateGroup(pgid: p.pgid, grace: .seconds(2))
        #expect(stopped)
        #expect(!ProcessLauncher.isAlive(pid: p.pid))
        #expect(!ProcessTable.groupAlive(p.pgid))
    }

    @Test func treeStopReachesMembersThatLeftTheGroup() async throws {
        let dir = try TempDir("tree")
        defer { dir.remove() }
        // The child starts its own session, like a BentoML worker, and ignores SIGTERM.
        let p = try ProcessLauncher.spawnDetached(
            executable: "sh", arguments: ["-c", "setsid sh -c 'trap \"\" TERM; sleep 60' & sleep 60"],
            environment: ["PATH": "/usr/bin:/bin"], workingDirectory: nil, logPath: dir.path + "/log")
        var worker: Int32 = 0
        for _ in 0..<100 where worker == 0 {
            usleep(20_000)
            worker = ProcessTable.descendants(of: [p.pid], in: ProcessTable.snapshot())
                .first { ProcessTable.info($0).map { $0.pgrp != p.pgid } ?? false } ?? 0
        }
        #expect(worker != 0)
        let stopped = await ProcessLauncher.terminateTree(pgid: p.pgid, members: [], grace: .milliseconds(500))
        #expect(stopped)
        let state = ProcessTable.info(worker)?.state
        #expect(state == nil || state == "Z")
        #expect(!ProcessLauncher.isAlive(pid: p.pid))
    }

    @Test func deadChildIsNotReportedAlive() async throws {
        let dir = try TempDir("zombie")
        defer { dir.remove() }
        let p = try ProcessLauncher.spawnDetached(executable: "/bin/true", arguments: [], environment: [:],
                                                  workingDirectory: nil, logPath: dir.path + "/log")
        var alive = true
        for _ in 0..<200 where alive {
            usleep(10_000)
            alive = ProcessLauncher.isAlive(pid: p.pid)
        }
        #expect(!alive)
    }

    @Test func freePortHonoursPreferenceAndAvoidsRepeats() throws {
        let a = freePort(preferred: nil)
        let b = freePort(preferred: nil)
        #expect(a != b)
        #expect(portIsFree(a))
        let server = try TestHTTPServer()
        defer { server.close() }
        #expect(!portIsFree(server.port))
        #expect(freePort(preferred: server.port) != server.port)
    }
}
