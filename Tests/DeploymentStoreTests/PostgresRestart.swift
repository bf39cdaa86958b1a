import DeployCore
@testable import DeploymentStore
import Foundation
import Testing

/// Cases that take the Postgres server or a connection away under a live store.
enum PostgresRestart {
    static let bin = ProcessInfo.processInfo.environment["PG_BIN"] ?? "/usr/lib/postgresql/15/bin"

    /// Runs a command to completion with posix_spawn + waitpid on its own pid (Foundation's `Process` can miss
    /// the exit of a child when other code in the test process also spawns and reaps children, and then hangs).
    @discardableResult
    static func run(_ argv: [String], asPostgres: Bool = false) throws -> String {
        var args = argv
        if asPostgres, getuid() == 0 { args = ["/usr/sbin/runuser", "-u", "postgres", "--"] + args }
        if asPostgres {
            // The restarted server is a daemon: close every inherited descriptor above 2 first, so it cannot keep
            // the write end of this (or another test's) pipe open and hang a reader forever.
            args = ["/bin/bash", "-c", #"for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ] 2>/dev/null; then eval "exec $n>&-"; fi; done; exec "$@""#, "sh"] + args
        }
        struct Failed: Error, CustomStringConvertible { var description: String }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw Failed(description: "pipe failed") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if asPostgres {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        } else {
            posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        }
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, args[0], &actions, nil, &cargs, environ)
        close(fds[1])
        guard rc == 0 else { close(fds[0]); throw Failed(description: "spawn \(args[0]) failed: \(rc)") }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fds[0], &buf, buf.count)
            if n > 0 { data.append(contentsOf: buf[0..<n]); continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let exited = (status & 0x7f) == 0
        let code = (status >> 8) & 0xff
        guard exited && code == 0 else { throw Failed(description: "\(args) exited with status \(status): \(text)") }
        return text
    }

    static func psql(_ sql: String) throws -> String {
        try run(["\(bin)/psql", testPostgresURL!, "-XAtc", sql])
    }

    static func restartMidSession() throws {
        let db = try TestDatabase(.postgres)
        defer { db.cleanUp() }
        let store = try #require(try db.makeStore() as? PostgresStore)
        let r = sampleRecord()
        try store.insert(r, event: planEvent())
        let before = try store.backendPID()
        let dataDir = try psql("SHOW data_directory")
        // Output to a file: the restarted server must not hold our pipe open.
        try run(["\(bin)/pg_ctl", "-D", dataDir, "-l", dataDir + "/restart.log", "-m", "fast", "-w", "restart"], asPostgres: true)
        // The next call (a write) reconnects and succeeds; nothing written before is lost.
        let approved = try store.transition(
            id: r.deploymentId, from: .planned, to: .approved, changes: .init(approvedBy: "bob"), event: planEvent(at: instant(1)))
        #expect(approved.status == .approved && approved.approvedBy == "bob")
        #expect(try store.backendPID() != before)
        #expect(try store.events(deploymentId: r.deploymentId).map(\.seq) == [1, 2])
        #expect(try store.query(HistoryQuery()).deployments.map(\.deploymentId) == [r.deploymentId])
    }

    static func killedConnection() throws {
        let db = try TestDatabase(.postgres)
        defer { db.cleanUp() }
        let store = try #require(try db.makeStore() as? PostgresStore)
        let r = sampleRecord()
        try store.insert(r, event: planEvent())
        let pid = try store.backendPID()
        #expect(try psql("SELECT pg_terminate_backend(\(pid))") == "t")
        let e = try store.appendEvent(DeploymentEvent(deploymentId: r.deploymentId, at: instant(1), step: "s", actor: "a", message: "after"))
        #expect(e.seq == 2)
        #expect(try store.events(deploymentId: r.deploymentId).map(\.message) == ["planned", "after"])
        #expect(try store.backendPID() != pid)
    }
}
