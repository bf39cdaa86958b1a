#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc
import Synchronization

/// A process started by `ProcessLauncher.spawnDetached`: its pid and its process group (== pid, own session).
public struct SpawnedProcess: Sendable, Hashable {
    /// Process id.
    public var pid: Int32
    /// Process group id (the process leads its own session and group).
    public var pgid: Int32

    /// Creates a value from a known pid and group.
    public init(pid: Int32, pgid: Int32) {
        self.pid = pid
        self.pgid = pgid
    }
}

/// Starts, watches and stops processes with `posix_spawn` (argument arrays only, never a shell).
public enum ProcessLauncher {
    // glibc values; the GNU extensions are not imported into Swift.
    private static let spawnSetSID: Int32 = 0x80
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
    private static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: AddCloseFrom.self) }
    private static let addChdir: AddChdir? = dlsym(nil, "posix_spawn_file_actions_addchdir_np")
        .map { unsafeBitCast($0, to: AddChdir.self) }

    /// Starts `executable` as the leader of a new session (so it outlives the caller and can be stopped as a
    /// group), stdin from /dev/null, stdout and stderr appended to `logPath`. No descriptor of the caller leaks.
    ///
    /// - Parameters:
    ///   - executable: an absolute path, or a name resolved through `environment["PATH"]` (else the caller's PATH).
    ///   - arguments: arguments after argv[0].
    ///   - environment: the complete environment of the child.
    ///   - workingDirectory: the child's working directory, or the caller's when nil.
    ///   - logPath: file to append output to (created if missing; its directory must exist).
    /// - Throws: `spawn_failed`.
    public static func spawnDetached(executable: String, arguments: [String], environment: [String: String],
                                     workingDirectory: String?, logPath: String) throws(RuntimeError) -> SpawnedProcess {
        let path = try resolve(executable, environment: environment)
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fa, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&fa, 1, 2)
        _ = addCloseFrom?(&fa, 3)
        if let dir = workingDirectory {
            guard let addChdir else { throw .spawnFailed("posix_spawn_file_actions_addchdir_np is not available") }
            _ = addChdir(&fa, dir)
        }
        let pid = try spawn(path: path, arguments: arguments, environment: environment, fileActions: &fa,
                            flags: spawnSetSID)
        _ = detachedChildren.withLock { $0.insert(pid) }
        return SpawnedProcess(pid: pid, pgid: pid)
    }

    /// `true` while `pid` exists and is not a zombie. Reaps it first when it is an exited detached child of
    /// ours (``spawnDetached``); any other pid is only looked at.
    public static func isAlive(pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        if isDetachedChild(pid) {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                _ = detachedChildren.withLock { $0.remove(pid) }
                return false
            }
            if r == 0 { return true }
        }
        if kill(pid, 0) != 0 && errno == ESRCH { return false }
        return ProcessTable.info(pid).map { $0.state != "Z" } ?? false
    }

    /// Sends SIGTERM to process group `pgid`, waits up to `grace`, then SIGKILLs what is left.
    /// - Returns: `true` when no process of the group is left.
    public static func terminateGroup(pgid: Int32, grace: Duration) async -> Bool {
        await terminateTree(pgid: pgid, members: [], grace: grace)
    }

    /// Stops a process tree whose members may have left the leader's group (BentoML workers start their own
    /// session): SIGTERM the group `pgid`; once its leader is gone, SIGTERM remaining `members`; after `grace`
    /// SIGKILL everything left. Descendants of the group found now are added to `members`.
    /// - Returns: `true` when neither the group nor any member is left.
    public static func terminateTree(pgid: Int32, members extra: Set<Int32>, grace: Duration) async -> Bool {
        guard pgid > 0 || !extra.isEmpty else { return true }
        let table = ProcessTable.snapshot()
        let group = Set(table.filter { $0.pgrp == pgid && pgid > 0 }.map(\.pid))
        // A group that has no process now is gone for good: its id may be reused by the next process of
        // ours that leads its own group (a short command), which must be neither signalled nor reaped here.
        let pgid = group.isEmpty ? 0 : pgid
        guard pgid > 0 || !extra.isEmpty else { return true }
        var members = extra.union(group).union(ProcessTable.descendants(of: group.union(extra), in: table))
        members.remove(getpid())
        func alive() -> Set<Int32> {
            reap(group: pgid, members: members)
            return members.filter { isAliveNoReap($0) }
        }
        if pgid > 0 { kill(-pgid, SIGTERM) }
        let deadline = monotonicMs() + grace.secondsDouble * 1000
        var strayTermSent = false
        while true {
            let left = alive()
            let groupLeft = pgid > 0 && ProcessTable.groupAlive(pgid)
            if left.isEmpty && !groupLeft { return true }
            if !groupLeft && !strayTermSent {
                for p in left { kill(p, SIGTERM) }
                strayTermSent = true
            }
            if monotonicMs() >= deadline { break }
            await pause(milliseconds: 50)
        }
        let killDeadline = monotonicMs() + 3000
        while true {
            if pgid > 0 { kill(-pgid, SIGKILL) }
            let left = alive()
            for p in left { kill(p, SIGKILL) }
            if left.isEmpty && !(pgid > 0 && ProcessTable.groupAlive(pgid)) { return true }
            if monotonicMs() >= killDeadline { return false }
            await pause(milliseconds: 50)
        }
    }

    /// Runs a short command to completion, capturing stdout and stderr together (last 1 MiB).
    /// A non-zero exit is a result, not an error; a command still running after `timeout` is killed.
    /// - Throws: `spawn_failed`, `command_timeout`.
    /// `standardInput` is a file the command reads as its stdin (default `/dev/null`).
    public static func run(executable: String, arguments: [String], environment: [String: String]? = nil,
                           standardInput: String = "/dev/null",
                           timeout: Duration) async throws(RuntimeError) -> (status: Int32, output: String) {
        let env = environment ?? currentEnvironment()
        let timeoutMs = timeout.secondsDouble * 1000
        return try await Blocking.run { () throws(RuntimeError) -> (status: Int32, output: String) in
            try runSync(executable: executable, arguments: arguments, environment: env, timeoutMs: timeoutMs, standardInput: standardInput)
        }
    }

    /// The blocking body of `run`.
    static func runSync(executable: String, arguments: [String], environment: [String: String],
                        timeoutMs: Double, standardInput: String = "/dev/null") throws(RuntimeError) -> (status: Int32, output: String) {
        let path = try resolve(executable, environment: environment)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw .spawnFailed("pipe: \(errnoString())") }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let (r, w) = (fds[0], fds[1])
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 0, standardInput, O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&fa, w, 1)
        posix_spawn_file_actions_adddup2(&fa, w, 2)
        _ = addCloseFrom?(&fa, 3)
        let pid: Int32
        do {
            pid = try spawn(path: path, arguments: arguments, environment: environment, fileActions: &fa,
                            flags: Int32(POSIX_SPAWN_SETPGROUP))
        } catch {
            close(r); close(w)
            throw error
        }
        close(w)
        defer { close(r) }
        var output: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        let deadline = monotonicMs() + timeoutMs
        var timedOut = false
        while true {
            let remaining = deadline - monotonicMs()
            if remaining <= 0 { timedOut = true; break }
            var pfd = pollfd(fd: r, events: Int16(POLLIN), revents: 0)
            let pr = poll(&pfd, 1, Int32(min(remaining, 1000)))
            if pr < 0 { if errno == EINTR { continue }; break }
            if pr == 0 { continue }
            let n = buf.withUnsafeMutableBytes { read(r, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; break }
            if n == 0 { break }
            output.append(contentsOf: buf[0..<n])
            if output.count > 1 << 20 { output.removeFirst(output.count - (1 << 20)) }
        }
        if timedOut { kill(-pid, SIGKILL) }
        let status = try waitForExit(pid, what: executable)
        if timedOut {
            throw RuntimeError(code: "command_timeout",
                               message: "\(executable) \(arguments.joined(separator: " ")) did not finish in \(Int(timeoutMs)) ms")
        }
        return (status, String(decoding: output, as: UTF8.self))
    }

    /// Waits for our child `pid` and returns its exit code (128 + signal when a signal ended it).
    ///
    /// Fails closed: when the exit status cannot be had (`waitpid` fails for another reason than EINTR,
    /// for example because something else reaped the child), it throws `child_lost` rather than report
    /// an exit code it never saw. A command whose 0 means "verified" (ssh-keygen -Y verify) must never pass
    /// on a status nobody read.
    /// - Throws: `child_lost`.
    public static func waitForExit(_ pid: Int32, what: String) throws(RuntimeError) -> Int32 {
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, 0)
            if r == pid { return exitCode(status) }
            if r < 0 && errno == EINTR { continue }
            throw RuntimeError(code: "child_lost", message: "the exit status of \(what) (pid \(pid)) was lost: \(errnoString())")
        }
    }

    /// Field 22 of /proc/PID/stat: the start time, which tells a live process from a reused pid
    /// (the agent's owner tag carries it).
    public static func startTime(_ pid: Int32) -> String? {
        guard let bytes = FileIO.readBytes("/proc/\(pid)/stat", limit: 4096), let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = String(decoding: bytes[(close + 1)...], as: UTF8.self).split(separator: " ")
        // After the command name: field 3 is state, so start time (field 22) is index 19.
        return fields.count > 19 ? String(fields[19]) : nil
    }

    /// The caller's environment as a dictionary.
    public static func currentEnvironment() -> [String: String] {
        var env: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return env
    }

    /// Finds `name` on `PATH` (from `environment`, else the caller's); absolute or relative paths are checked as is.
    public static func resolve(_ name: String, environment: [String: String]? = nil) throws(RuntimeError) -> String {
        if name.contains("/") {
            guard access(name, X_OK) == 0 else { throw .spawnFailed("\(name) is not an executable file") }
            return name
        }
        let path = environment?["PATH"] ?? String(cString: getenv("PATH") ?? strdup("/usr/local/bin:/usr/bin:/bin"))
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 && !FileIO.isDirectory(candidate) { return candidate }
        }
        throw .spawnFailed("\(name) not found on PATH")
    }

    // MARK: - internals

    static func spawn(path: String, arguments: [String], environment: [String: String],
                              fileActions fa: inout posix_spawn_file_actions_t, flags: Int32) throws(RuntimeError) -> Int32 {
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attr, &mask)
        posix_spawnattr_setflags(&attr, Int16(flags | Int32(POSIX_SPAWN_SETSIGDEF) | Int32(POSIX_SPAWN_SETSIGMASK)))
        if flags & Int32(POSIX_SPAWN_SETPGROUP) != 0 { posix_spawnattr_setpgroup(&attr, 0) }

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        var rc = posix_spawn(&pid, path, &fa, &attr, argv, envp)
        // ETXTBSY: the file was just written, and a process forked meanwhile (by any thread) still holds
        // a descriptor open for writing until it execs. That lasts microseconds; try again briefly.
        var tries = 0
        while rc == ETXTBSY && tries < 20 {
            tries += 1
            usleep(5_000)
            rc = posix_spawn(&pid, path, &fa, &attr, argv, envp)
        }
        guard rc == 0 else { throw .spawnFailed("posix_spawn \(path): \(errnoString(rc))") }
        return pid
    }

    static func exitCode(_ status: Int32) -> Int32 {
        let sig = status & 0x7f
        return sig == 0 ? (status >> 8) & 0xff : 128 + sig
    }

    private static func reap(group pgid: Int32, members: Set<Int32>) {
        var status: Int32 = 0
        var ours = members.filter(isDetachedChild)
        if pgid > 0 && isDetachedChild(pgid) { ours.insert(pgid) }
        for p in ours where waitpid(p, &status, WNOHANG) == p {
            _ = detachedChildren.withLock { $0.remove(p) }
        }
    }

    /// The long-running children this process started with ``spawnDetached`` and has not reaped yet. Only
    /// these are ever reaped by a liveness check or a stop: a pid read from a pid file or an old record
    /// may since have been reused by any other child of ours.
    private static let detachedChildren = Mutex<Set<Int32>>([])

    static func isDetachedChild(_ pid: Int32) -> Bool {
        detachedChildren.withLock { $0.contains(pid) }
    }

    private static func isAliveNoReap(_ pid: Int32) -> Bool {
        if kill(pid, 0) != 0 && errno == ESRCH { return false }
        return ProcessTable.info(pid).map { $0.state != "Z" } ?? false
    }
}

extension ProcessLauncher {
    /// `true` when `pid` is a (possibly exited, not yet reaped) child of this process.
    static func isOwnChild(_ pid: Int32) -> Bool {
        ProcessTable.info(pid)?.ppid == getpid()
    }
}
