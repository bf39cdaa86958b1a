import Glibc

/// The outcome of one kubectl run: exit status, stdout and stderr kept apart (warnings on stderr must not
/// spoil the JSON on stdout).
public struct CommandOutput: Sendable, Hashable {
    /// Exit status (128 + signal when killed by a signal).
    public var status: Int32
    /// Standard output (last 8 MiB).
    public var stdout: [UInt8]
    /// Standard error (last 64 KiB).
    public var stderr: String
}

/// Runs a command with an argument array (never a shell), bytes on stdin, stdout and stderr captured
/// separately, and a deadline after which its process group is killed.
enum CommandRunner {
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let closeFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: AddCloseFrom.self) }

    static func run(path: String, arguments: [String], environment: [String: String], stdin: [UInt8],
                    timeoutMs: Double) async throws(RuntimeError) -> CommandOutput {
        try await Blocking.run(throwing: { () throws(RuntimeError) -> CommandOutput in
            try runSync(path: path, arguments: arguments, environment: environment, stdin: stdin, timeoutMs: timeoutMs)
        })
    }

    static func runSync(path: String, arguments: [String], environment: [String: String], stdin: [UInt8],
                        timeoutMs: Double) throws(RuntimeError) -> CommandOutput {
        var pipes: [(r: Int32, w: Int32)] = []
        defer { for p in pipes { if p.r >= 0 { close(p.r) }; if p.w >= 0 { close(p.w) } } }
        for _ in 0..<3 {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { throw .spawnFailed("pipe: \(errnoString())") }
            // Close-on-exec so concurrent spawns elsewhere never inherit these ends.
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
            pipes.append((fds[0], fds[1]))
        }
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_adddup2(&fa, pipes[0].r, 0)
        posix_spawn_file_actions_adddup2(&fa, pipes[1].w, 1)
        posix_spawn_file_actions_adddup2(&fa, pipes[2].w, 2)
        // Nothing else of ours leaks into kubectl (descriptors opened by other threads included).
        _ = closeFrom?(&fa, 3)
        // Own process group, default signal handling: the same spawn as every other process of ours.
        let pid = try ProcessLauncher.spawn(path: path, arguments: arguments, environment: environment, fileActions: &fa,
                                      flags: Int32(POSIX_SPAWN_SETPGROUP))
        // The child has its copies; closing ours lets EOF arrive.
        close(pipes[0].r); pipes[0].r = -1
        close(pipes[1].w); pipes[1].w = -1
        close(pipes[2].w); pipes[2].w = -1
        var inFD = pipes[0].w
        _ = fcntl(inFD, F_SETFL, fcntl(inFD, F_GETFL) | O_NONBLOCK)
        if stdin.isEmpty { close(inFD); pipes[0].w = -1; inFD = -1 }
        var written = 0
        var out: [UInt8] = [], err: [UInt8] = []
        var outOpen = true, errOpen = true
        var buf = [UInt8](repeating: 0, count: 65536)
        let deadline = monotonicMs() + timeoutMs
        var timedOut = false
        while outOpen || errOpen {
            let remaining = deadline - monotonicMs()
            if remaining <= 0 { timedOut = true; break }
            var fds: [pollfd] = []
            if outOpen { fds.append(pollfd(fd: pipes[1].r, events: Int16(POLLIN), revents: 0)) }
            if errOpen { fds.append(pollfd(fd: pipes[2].r, events: Int16(POLLIN), revents: 0)) }
            if inFD >= 0 { fds.append(pollfd(fd: inFD, events: Int16(POLLOUT), revents: 0)) }
            let pr = poll(&fds, nfds_t(fds.count), Int32(min(remaining, 1000)))
            if pr < 0 { if errno == EINTR { continue }; break }
            for p in fds where p.revents != 0 {
                if p.fd == inFD {
                    let n = stdin.withUnsafeBytes { write(inFD, $0.baseAddress! + written, $0.count - written) }
                    if n > 0 { written += n }
                    if n < 0 && errno != EAGAIN && errno != EINTR || written >= stdin.count {
                        close(inFD); pipes[0].w = -1; inFD = -1
                    }
                    continue
                }
                let n = buf.withUnsafeMutableBytes { read(p.fd, $0.baseAddress, $0.count) }
                if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                if n <= 0 {
                    if p.fd == pipes[1].r { outOpen = false } else { errOpen = false }
                    continue
                }
                if p.fd == pipes[1].r {
                    out.append(contentsOf: buf[0..<n])
                    if out.count > 8 << 20 { out.removeFirst(out.count - (8 << 20)) }
                } else {
                    err.append(contentsOf: buf[0..<n])
                    if err.count > 64 << 10 { err.removeFirst(err.count - (64 << 10)) }
                }
            }
        }
        if timedOut { kill(-pid, SIGKILL) }
        let status = try ProcessLauncher.waitForExit(pid, what: "kubectl")
        if timedOut {
            throw RuntimeError(code: "kubectl_timeout",
                               message: "kubectl \(arguments.joined(separator: " ")) did not finish in \(Int(timeoutMs)) ms")
        }
        return CommandOutput(status: status, stdout: out, stderr: String(decoding: err, as: UTF8.self))
    }
}
