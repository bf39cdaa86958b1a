import DeployCore
import Glibc
import JSON
import Synchronization

/// One long-running `kubectl proxy --unix-socket=PATH` per (kubectl, kubeconfig, context, state directory),
/// shared by every `Kubectl` of the agent that has that configuration: each API call is then one HTTP
/// request on a Unix socket (a few ms) instead of a kubectl process (100-250 ms). kubectl still reads the
/// kubeconfig and does auth and TLS; the agent carries no credential code.
///
/// Life cycle: started on the first call; a call that finds nothing listening restarts it once; stopped by
/// `KubeProxy.stopAll()` (the agent's shutdown). Files, under the state directory (mode 0700):
/// `<hash>-<agent pid>.sock` (the socket; in `/tmp/model-deployer-<uid>/` when the state directory's path
/// is too long for a socket address), `.pid` (proxy pid and start time, owner pid and start time, socket
/// path) and `.log` (the proxy's output, quoted in errors).
///
/// An orphan: after a kill -9 of the agent its proxy keeps running. The next agent to start a proxy in that
/// state directory reads every `.pid` file there; when the owner (pid and start time) is gone and the
/// proxy is still the very process recorded (pid, start time, and a command line naming that socket), it
/// kills it and removes its files. Why kill rather than reuse: an orphan would carry the dead agent's
/// environment (kubeconfig contents, kubectl, credentials fetched then) and nothing proves it matches the
/// new agent's; a fresh proxy costs one kubectl start-up, once. A live owner's proxy is never touched (the
/// agent pid in the socket's name keeps two agents on one home apart).
public final class KubeProxy: Sendable {
    /// kubectl executable.
    let executable: String
    /// kubeconfig context, or nil for the current one.
    let context: String?
    /// The proxy's environment (KUBECONFIG and PATH matter).
    let environment: [String: String]
    /// Where the pid and log files live.
    let stateDirectory: String
    /// `<hash>-<pid>`: the hash of (kubectl, KUBECONFIG, context).
    let baseName: String
    /// Deadline for the proxy to answer after start.
    let startTimeoutMs: Double

    private struct Running: Sendable {
        var pid: Int32
        /// Its start time (/proc): a pid that names another process by then (reaped by someone else, reused)
        /// is neither trusted nor signalled.
        var startTime: String?
        var socket: String
        /// Bumped at every start, so concurrent callers that saw the same dead proxy restart it once.
        var generation: Int
    }

    private let state = Mutex<(running: Running?, generation: Int, stopped: Bool)>((nil, 0, false))

    init(executable: String, context: String?, environment: [String: String], stateDirectory: String,
         startTimeoutMs: Double = 15_000) {
        self.executable = executable
        self.context = context
        self.environment = environment
        self.stateDirectory = stateDirectory
        self.baseName = KubeProxy.configHash(executable: executable, kubeconfig: environment["KUBECONFIG"], context: context)
            + "-\(getpid())"
        self.startTimeoutMs = startTimeoutMs
    }

    /// 12 hex digits of SHA-256 over (kubectl, KUBECONFIG, context): two configurations never share a socket.
    static func configHash(executable: String, kubeconfig: String?, context: String?) -> String {
        String(SHA256.hexDigest([executable, kubeconfig ?? "", context ?? ""].joined(separator: "\u{0}")).prefix(12))
    }

    // MARK: - registry

    private static let registry = Mutex<[String: KubeProxy]>([:])

    /// The proxy of this configuration, shared by every caller of the process (not started yet if new).
    static func shared(executable: String, context: String?, environment: [String: String], stateDirectory: String) -> KubeProxy {
        let key = [executable, environment["KUBECONFIG"] ?? "", context ?? "", stateDirectory].joined(separator: "\u{0}")
        return registry.withLock { r in
            if let p = r[key] { return p }
            let p = KubeProxy(executable: executable, context: context, environment: environment, stateDirectory: stateDirectory)
            r[key] = p
            return p
        }
    }

    /// Stops every proxy this process started (the agent's shutdown). Later calls start them again.
    public static func stopAll() {
        let all = registry.withLock { Array($0.values) }
        for p in all { p.stop() }
    }

    // MARK: - use

    /// The socket of a running proxy (started now if none) and its generation.
    /// - Throws: `kube_unreachable` (it cannot be started or does not answer in time), with its output.
    func socket() throws(RuntimeError) -> (path: String, generation: Int) {
        try state.withLock { s throws(RuntimeError) -> (path: String, generation: Int) in
            if let r = s.running, ProcessLauncher.isAlive(pid: r.pid), ProcessLauncher.startTime(r.pid) == r.startTime {
                return (r.socket, r.generation)
            }
            if let r = s.running { cleanUp(r) }
            s.running = nil
            let r = try start(generation: s.generation + 1)
            s.generation = r.generation
            s.running = r
            s.stopped = false
            return (r.socket, r.generation)
        }
    }

    /// A request found nothing listening on the socket of `generation`: stops that proxy (if it is still the
    /// current one) and starts a new one. Concurrent callers restart it once.
    func restart(after generation: Int) throws(RuntimeError) -> (path: String, generation: Int) {
        state.withLock { s in
            if let r = s.running, r.generation == generation {
                KubeProxy.kill(r.pid, startTime: r.startTime)
                cleanUp(r)
                s.running = nil
            }
        }
        return try socket()
    }

    /// The pid of the running proxy, if any (tests).
    var pid: Int32? { state.withLock { $0.running?.pid } }

    /// Stops the proxy (SIGTERM, then SIGKILL after 2 s) and removes its files.
    func stop() {
        state.withLock { s in
            if let r = s.running {
                KubeProxy.kill(r.pid, startTime: r.startTime)
                cleanUp(r)
            }
            s.running = nil
            s.stopped = true
        }
    }

    // MARK: - internals

    /// One JSON log line on stderr (the agent's log format) about the proxy's life: its start, a restart, an
    /// orphan killed. At info level, unless `MODEL_DEPLOYER_LOG_LEVEL` in its environment asks for less.
    private func log(_ msg: String, _ fields: [String: JSONValue]) {
        let level = environment["MODEL_DEPLOYER_LOG_LEVEL"]?.lowercased() ?? "info"
        guard level == "info" || level == "debug" else { return }
        var o: [String: JSONValue] = ["ts": .double(wallClockSeconds()), "level": "info", "msg": .string(msg),
                                      "component": "kubectl-proxy"]
        for (k, v) in fields { o[k] = v }
        var bytes = JSONValue.object(o).jsonBytes
        bytes.append(0x0A)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    private var pidPath: String { stateDirectory + "/" + baseName + ".pid" }
    private var logPath: String { stateDirectory + "/" + baseName + ".log" }

    private func start(generation: Int) throws(RuntimeError) -> Running {
        // Under the shared /tmp, the per-user directory itself must be ours and closed too.
        if stateDirectory.hasPrefix(KubeProxy.tmpRoot + "/") { try KubeProxy.makePrivateDirectory(KubeProxy.tmpRoot) }
        try KubeProxy.makePrivateDirectory(stateDirectory)
        for pid in KubeProxy.removeOrphans(in: stateDirectory) {
            log("killed the kubectl proxy of an agent that is gone", ["pid": .int(Int64(pid)), "directory": .string(stateDirectory)])
        }
        let socketPath = try socketPathFor()
        unlink(socketPath)
        // A fresh log per start: its tail is what an error quotes.
        unlink(logPath)
        var args: [String] = []
        if let context { args += ["--context", context] }
        args += ["proxy", "--unix-socket=\(socketPath)"]
        let me = "\(getpid()) \(ProcessLauncher.startTime(getpid()) ?? "?")"
        // Recorded before the spawn (proxy pid 0: pending), so an agent killed between the spawn and the
        // record below still leaves the next agent the socket path to find its proxy by.
        do {
            try FileIO.writeAtomically(pidPath, Array("0 ? \(me) \(socketPath)\n".utf8), mode: 0o600)
        } catch {
            throw RuntimeError(code: "kube_unreachable", message: "cannot record the kubectl proxy in \(pidPath): \(error.message)")
        }
        let proc: SpawnedProcess
        do {
            proc = try ProcessLauncher.spawnDetached(executable: executable, arguments: args, environment: environment,
                                                     workingDirectory: nil, logPath: logPath)
        } catch {
            unlink(pidPath)
            throw RuntimeError(code: "kube_unreachable", message: "cannot start kubectl proxy: \(error.message)")
        }
        let started = ProcessLauncher.startTime(proc.pid)
        let record = "\(proc.pid) \(started ?? "?") \(me) \(socketPath)\n"
        do {
            try FileIO.writeAtomically(pidPath, Array(record.utf8), mode: 0o600)
        } catch {
            KubeProxy.kill(proc.pid, startTime: started)
            throw RuntimeError(code: "kube_unreachable", message: "cannot record the kubectl proxy's pid in \(pidPath): \(error.message)")
        }
        let running = Running(pid: proc.pid, startTime: started, socket: socketPath, generation: generation)
        let deadline = monotonicMs() + startTimeoutMs
        while true {
            if !ProcessLauncher.isAlive(pid: proc.pid) {
                let out = FileIO.tail(logPath, bytes: 2000)
                cleanUp(running)
                // kubectl's own words (no such context, bad kubeconfig) with the code the exec transport gives them.
                let e = Kubectl.classify(stderr: out, status: 1, arguments: ["proxy"])
                throw RuntimeError(code: e.code == "kubectl_failed" ? "kube_unreachable" : e.code,
                                   message: "kubectl proxy exited at start: \(out.trimmingSpaces)")
            }
            if let fd = try? HTTPClient.connectUnix(socketPath, deadline: monotonicMs() + 1000) {
                close(fd)
                log("kubectl proxy started", ["pid": .int(Int64(proc.pid)), "socket": .string(socketPath),
                                              "context": context.map { .string($0) } ?? .null, "restart": .bool(generation > 1),
                                              "start_ms": .double((monotonicMs() - (deadline - startTimeoutMs)).rounded())])
                return running
            }
            if monotonicMs() >= deadline {
                KubeProxy.kill(proc.pid, startTime: started)
                let out = FileIO.tail(logPath, bytes: 2000)
                cleanUp(running)
                throw RuntimeError(code: "kube_unreachable",
                                   message: "kubectl proxy did not open \(socketPath) within \(Int(startTimeoutMs)) ms: \(out.trimmingSpaces)")
            }
            usleep(10_000)
        }
    }

    /// The socket path: in the state directory, or (when that path is too long for `sun_path`) in a private
    /// directory under /tmp.
    private func socketPathFor() throws(RuntimeError) -> String {
        let name = baseName + ".sock"
        let inState = stateDirectory + "/" + name
        if inState.utf8.count < 100 { return inState }
        let dir = KubeProxy.tmpRoot
        try KubeProxy.makePrivateDirectory(dir)
        return dir + "/" + name
    }

    private func cleanUp(_ r: Running) {
        unlink(r.socket)
        unlink(pidPath)
    }

    /// SIGTERM to the proxy's group, SIGKILL after 2 s, reaped; nothing when `pid` is no longer the process
    /// that started at `startTime`.
    static func kill(_ pid: Int32, startTime: String?) {
        guard pid > 0, ProcessLauncher.startTime(pid) == startTime else { return }
        Glibc.kill(-pid, SIGTERM)
        let deadline = monotonicMs() + 2000
        while ProcessLauncher.isAlive(pid: pid) && ProcessLauncher.startTime(pid) == startTime {
            if monotonicMs() >= deadline {
                Glibc.kill(-pid, SIGKILL)
                // isAlive reaps it (a detached child of ours) once the kill has landed.
                for _ in 0..<300 where ProcessLauncher.isAlive(pid: pid) { usleep(10_000) }
                return
            }
            usleep(10_000)
        }
    }

    /// `/tmp/model-deployer-<uid>`: where sockets go when the state directory's path is too long, and the
    /// state directory of a `Kubectl` given neither one nor `MODEL_DEPLOYER_HOME`.
    static var tmpRoot: String { "/tmp/model-deployer-\(geteuid())" }

    /// Creates `path` (and parents) and makes sure it is a directory of ours that no one else can enter.
    static func makePrivateDirectory(_ path: String) throws(RuntimeError) {
        try FileIO.makeDirectories(path)
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == geteuid() else {
            throw RuntimeError(code: "kube_unreachable", message: "\(path) is not a directory owned by this user: refusing to put the kubectl proxy's socket there")
        }
        if st.st_mode & 0o077 != 0 { chmod(path, 0o700) }
    }

    /// Kills the proxies of agents that are gone (see the type's documentation). Never touches a process
    /// that is not exactly the recorded proxy.
    @discardableResult
    static func removeOrphans(in directory: String) -> [Int32] {
        var killed: [Int32] = []
        for file in FileIO.list(directory) where file.hasSuffix(".pid") {
            let path = directory + "/" + file
            guard let text = FileIO.readString(path) else { continue }
            let f = text.split(separator: " ", maxSplits: 4).map { String($0).trimmingSpaces }
            guard f.count == 5, let proxyPid = Int32(f[0]), let ownerPid = Int32(f[2]) else { continue }
            let ownerAlive = ProcessLauncher.startTime(ownerPid) == f[3] && f[3] != "?"
            if ownerAlive { continue }
            let socketPath = f[4]
            // A pending record (pid 0): its agent died between writing it and spawning or recording the
            // proxy; any proxy serving exactly that socket path is the one.
            let targets = proxyPid == 0 ? proxies(serving: socketPath)
                : (ProcessLauncher.startTime(proxyPid) == f[1] && f[1] != "?" && isProxy(pid: proxyPid, socket: socketPath) ? [proxyPid] : [])
            for pid in targets {
                Glibc.kill(-pid, SIGKILL)
                Glibc.kill(pid, SIGKILL)
                killed.append(pid)
            }
            if socketPath.hasSuffix(".sock") { unlink(socketPath) }
            unlink(path)
            unlink(directory + "/" + file.dropLast(4) + ".log")
        }
        return killed
    }

    /// The processes whose command line is `... proxy --unix-socket=<socket>`.
    static func proxies(serving socket: String) -> [Int32] {
        FileIO.list("/proc").compactMap { Int32($0) }.filter { $0 > 0 && $0 != getpid() && isProxy(pid: $0, socket: socket) }
    }

    /// `true` when `pid`'s command line is `... proxy --unix-socket=<socket>`.
    static func isProxy(pid: Int32, socket: String) -> Bool {
        guard let bytes = FileIO.readBytes("/proc/\(pid)/cmdline", limit: 65536) else { return false }
        let args = bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return args.contains("proxy") && args.contains("--unix-socket=\(socket)")
    }
}
