#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import Glibc
import JSON
import Synchronization

/// What to run in a slot: one BentoML bento for (model, environment, slot) on a loopback port.
public struct SlotSpec: Sendable, Hashable {
    /// Model name (validated: `^[a-z0-9][a-z0-9_.-]{0,62}$`).
    public var modelName: String
    /// Environment name (same pattern).
    public var environment: String
    /// Blue, green or teal.
    public var slot: Slot
    /// The bento to serve, `name:version`.
    public var bentoTag: String
    /// The loopback port to listen on.
    public var port: Int

    /// Creates a spec.
    public init(modelName: String, environment: String, slot: Slot, bentoTag: String, port: Int) {
        self.modelName = modelName
        self.environment = environment
        self.slot = slot
        self.bentoTag = bentoTag
        self.port = port
    }
}

/// A slot's process as recorded in its pid file, with liveness checked now.
public struct SlotState: Sendable, Hashable {
    /// What runs there.
    public var spec: SlotSpec
    /// The `bentoml serve` process.
    public var pid: Int32
    /// Its process group (it leads its own session).
    public var pgid: Int32
    /// `true` while that process exists (and is ours).
    public var alive: Bool
    /// The slot's log file.
    public var logPath: String
    /// When it was started.
    public var startedAt: Date

    /// Creates a state value.
    public init(spec: SlotSpec, pid: Int32, pgid: Int32, alive: Bool, logPath: String, startedAt: Date) {
        self.spec = spec
        self.pid = pid
        self.pgid = pgid
        self.alive = alive
        self.logPath = logPath
        self.startedAt = startedAt
    }
}

/// The outcome of waiting for `/readyz` (an expected outcome, not an error).
public struct ReadinessResult: Sendable, Hashable {
    /// `/readyz` answered 200 before the deadline.
    public var ready: Bool
    /// Time spent waiting, ms.
    public var elapsedMs: Double
    /// Probes sent.
    public var attempts: Int
    /// The last failure (or why waiting stopped), nil when ready.
    public var lastError: String?

    /// Creates a result value.
    public init(ready: Bool, elapsedMs: Double, attempts: Int, lastError: String?) {
        self.ready = ready
        self.elapsedMs = elapsedMs
        self.attempts = attempts
        self.lastError = lastError
    }
}

/// Starts, watches and stops BentoML slots: detached `bentoml serve` process trees that outlive the agent,
/// each under `home/slots/<model>/<env>/<slot>/` with its own BENTOML_HOME (models/ and bentos/ linked to the
/// shared store), TMPDIR, `serve.log` and `slot.json` pid file.
public final class SlotManager: Sendable {
    /// The agent home (`$MODEL_DEPLOYER_HOME`).
    public let home: String
    /// The `bentoml` executable (absolute, or found on PATH).
    public let bentoml: String
    /// The shared BentoML store (`BENTOML_HOME` as the user set it).
    public let sharedBentoMLHome: String

    /// Creates a manager; nothing is touched until a slot is started.
    public init(home: String, bentoml: String, sharedBentoMLHome: String) {
        self.home = home
        self.bentoml = bentoml
        self.sharedBentoMLHome = sharedBentoMLHome
    }

    /// The slot's directory.
    public func directory(modelName: String, environment: String, slot: Slot) -> String {
        "\(home)/slots/\(modelName)/\(environment)/\(slot.rawValue)"
    }

    /// Starts `bentoml serve <bentoTag> --host 127.0.0.1 --port <port>` in the slot, detached.
    /// - Throws: `invalid_name`, `slot_busy` (a live process holds the slot), `port_in_use`, `spawn_failed`, `io_failed`.
    public func start(_ spec: SlotSpec) throws(RuntimeError) -> SlotState {
        try RuntimeNames.check(spec.modelName, "model name")
        try RuntimeNames.check(spec.environment, "environment")
        guard RuntimeNames.isValidTag(spec.bentoTag) else { throw .invalidName("bento tag '\(spec.bentoTag)' is not valid") }
        guard (1024...65535).contains(spec.port) else { throw .invalidName("port \(spec.port) is out of range") }
        let dir = directory(modelName: spec.modelName, environment: spec.environment, slot: spec.slot)
        let marker = markerEntry(dir)
        if let existing = state(modelName: spec.modelName, environment: spec.environment, slot: spec.slot), existing.alive {
            throw RuntimeError(code: "slot_busy", message: "\(spec.slot.rawValue) slot of \(spec.modelName)/\(spec.environment) is running (pid \(existing.pid))")
        }
        let stray = ProcessTable.pids(withEnvironmentEntry: marker, in: ProcessTable.snapshot())
        if !stray.isEmpty {
            throw RuntimeError(code: "slot_busy", message: "processes \(stray.sorted()) still hold \(dir); stop the slot first")
        }
        guard portIsFree(spec.port) else { throw RuntimeError(code: "port_in_use", message: "port \(spec.port) is in use") }

        let bentoHome = "\(dir)/bentoml"
        let tmp = "\(dir)/tmp"
        try FileIO.makeDirectories(bentoHome)
        try FileIO.makeDirectories("\(sharedBentoMLHome)/models")
        try FileIO.makeDirectories("\(sharedBentoMLHome)/bentos")
        try FileIO.ensureSymlink("\(bentoHome)/models", to: "\(sharedBentoMLHome)/models")
        try FileIO.ensureSymlink("\(bentoHome)/bentos", to: "\(sharedBentoMLHome)/bentos")
        FileIO.removeTree(tmp)
        try FileIO.makeDirectories(tmp)
        let logPath = "\(dir)/serve.log"
        rotate(logPath)

        let executable = try ProcessLauncher.resolve(bentoml)
        var env = ProcessLauncher.currentEnvironment().filter { !$0.key.hasPrefix("MODEL_DEPLOYER_") && !$0.key.hasPrefix("PG") }
        env["BENTOML_HOME"] = bentoHome
        env["TMPDIR"] = tmp
        env["BENTOML_DO_NOT_TRACK"] = "true"
        env["PYTHONUNBUFFERED"] = "1"
        env["MODEL_DEPLOYER_SLOT"] = dir
        if let slash = executable.lastIndex(of: "/") {
            let bin = String(executable[..<slash])
            env["PATH"] = bin + ":" + (env["PATH"] ?? "/usr/local/bin:/usr/bin:/bin")
        }
        let startedAt = Date()
        appendLine(logPath, "=== model-deployer: \(rfc3339(startedAt)) serve \(spec.bentoTag) on 127.0.0.1:\(spec.port)")
        let proc = try ProcessLauncher.spawnDetached(
            executable: executable,
            arguments: ["serve", spec.bentoTag, "--host", "127.0.0.1", "--port", String(spec.port)],
            environment: env, workingDirectory: dir, logPath: logPath)
        let record: JSONValue = .object([
            "pid": .int(Int64(proc.pid)), "pgid": .int(Int64(proc.pgid)), "port": .int(Int64(spec.port)),
            "bento_tag": .string(spec.bentoTag), "model": .string(spec.modelName),
            "environment": .string(spec.environment), "slot": .string(spec.slot.rawValue),
            "started_at": .string(rfc3339(startedAt)), "started_at_unix": .double(startedAt.timeIntervalSince1970),
            "log_path": .string(logPath),
        ])
        do {
            try FileIO.writeAtomically("\(dir)/slot.json", record.jsonBytes)
        } catch {
            kill(-proc.pgid, SIGKILL)
            throw error
        }
        return SlotState(spec: spec, pid: proc.pid, pgid: proc.pgid, alive: true, logPath: logPath, startedAt: startedAt)
    }

    /// Polls `GET /readyz` until it answers 200, the deadline passes, the process dies or the task is cancelled.
    public func waitReady(_ state: SlotState, deadlineSeconds: Double, probeTimeoutMs: Int, intervalMs: Int) async -> ReadinessResult {
        let start = monotonicMs()
        let deadline = start + deadlineSeconds * 1000
        var attempts = 0
        var lastError: String? = "not probed"
        while true {
            if Task.isCancelled {
                return ReadinessResult(ready: false, elapsedMs: monotonicMs() - start, attempts: attempts, lastError: "cancelled")
            }
            if !ProcessLauncher.isAlive(pid: state.pid) {
                return ReadinessResult(ready: false, elapsedMs: monotonicMs() - start, attempts: attempts,
                                       lastError: "bentoml process \(state.pid) exited: " + lastLogLine(state))
            }
            let remaining = deadline - monotonicMs()
            if remaining <= 0 { break }
            attempts += 1
            do throws(RuntimeError) {
                let r = try await HTTPClient.request(method: "GET", port: state.spec.port, path: "/readyz",
                                                     timeoutMs: max(1, min(probeTimeoutMs, Int(remaining))))
                if r.status == 200 {
                    return ReadinessResult(ready: true, elapsedMs: monotonicMs() - start, attempts: attempts, lastError: nil)
                }
                lastError = "GET /readyz answered \(r.status)"
            } catch {
                lastError = error.description
            }
            let wait = min(Double(intervalMs), deadline - monotonicMs())
            if wait > 0 { await pause(milliseconds: Int(wait)) }
        }
        return ReadinessResult(ready: false, elapsedMs: monotonicMs() - start, attempts: attempts,
                               lastError: "not ready after \(deadlineSeconds) s: \(lastError ?? "")")
    }

    /// Stops the slot's whole process tree (the `bentoml serve` group and every process carrying the slot's
    /// marker, orphans included), then removes the pid file.
    /// - Returns: `true` when no process of the slot is left.
    public func stop(modelName: String, environment: String, slot: Slot, graceSeconds: Double = 5) async -> Bool {
        guard RuntimeNames.isValidName(modelName), RuntimeNames.isValidName(environment) else { return false }
        let dir = directory(modelName: modelName, environment: environment, slot: slot)
        let marker = markerEntry(dir)
        var pgid: Int32 = 0
        if let rec = readRecord(dir), let pid = rec["pid"]?.intValue, let g = rec["pgid"]?.intValue {
            // Only signal the recorded group if its leader is still ours (guards against pid reuse).
            if ProcessTable.hasEnvironmentEntry(Int32(pid), marker) == true || ProcessLauncher.isOwnChild(Int32(pid)) {
                pgid = Int32(g)
            } else {
                _ = ProcessLauncher.isAlive(pid: Int32(pid))  // reap a zombie child
            }
        }
        let members = ProcessTable.pids(withEnvironmentEntry: marker, in: ProcessTable.snapshot())
        let done = await ProcessLauncher.terminateTree(pgid: pgid, members: members, grace: .milliseconds(Int(graceSeconds * 1000)))
        if done { unlink("\(dir)/slot.json") }
        return done
    }

    /// The slot as recorded in its pid file, `alive` checked now; nil when there is no pid file.
    public func state(modelName: String, environment: String, slot: Slot) -> SlotState? {
        guard RuntimeNames.isValidName(modelName), RuntimeNames.isValidName(environment) else { return nil }
        return state(dir: directory(modelName: modelName, environment: environment, slot: slot))
    }

    /// Every slot with a pid file (for reconciliation after a restart).
    public func allSlots() -> [SlotState] {
        let base = "\(home)/slots"
        var out: [SlotState] = []
        for model in FileIO.list(base) where RuntimeNames.isValidName(model) {
            for env in FileIO.list("\(base)/\(model)") where RuntimeNames.isValidName(env) {
                for slot in Slot.allCases {
                    if let s = state(dir: "\(base)/\(model)/\(env)/\(slot.rawValue)") { out.append(s) }
                }
            }
        }
        return out
    }

    /// The last `bytes` bytes of the slot's log.
    public func logTail(_ state: SlotState, bytes: Int) -> String {
        FileIO.tail(state.logPath, bytes: bytes)
    }

    /// A free loopback port (see the global `freePort(preferred:)`).
    public func freePort(preferred: Int?) -> Int { DeployRuntime.freePort(preferred: preferred) }

    // MARK: - internals

    private func markerEntry(_ dir: String) -> String { "MODEL_DEPLOYER_SLOT=\(dir)" }

    private func readRecord(_ dir: String) -> JSONValue? {
        guard let bytes = FileIO.readBytes("\(dir)/slot.json") else { return nil }
        return try? JSONValue.parse(bytes)
    }

    private func state(dir: String) -> SlotState? {
        // slot.json is store input: a figure out of range makes the record unreadable, it must not trap.
        guard let rec = readRecord(dir), let pid = rec["pid"]?.intValue.flatMap({ Int32(exactly: $0) }),
              let pgid = rec["pgid"]?.intValue.flatMap({ Int32(exactly: $0) }),
              let port = rec["port"]?.intValue.flatMap({ Int(exactly: $0) }), let tag = rec["bento_tag"]?.stringValue,
              let model = rec["model"]?.stringValue, let env = rec["environment"]?.stringValue,
              let slot = rec["slot"]?.stringValue.flatMap(Slot.init(rawValue:)) else { return nil }
        let p = pid
        let alive = ProcessLauncher.isAlive(pid: p) && ProcessTable.hasEnvironmentEntry(p, markerEntry(dir)) != false
        let startedUnix = rec["started_at_unix"]?.doubleValue ?? 0
        let started = Date(timeIntervalSince1970: startedUnix.isFinite && abs(startedUnix) < 1e11 ? startedUnix : 0)
        return SlotState(spec: SlotSpec(modelName: model, environment: env, slot: slot, bentoTag: tag, port: port),
                         pid: p, pgid: pgid, alive: alive,
                         logPath: rec["log_path"]?.stringValue ?? "\(dir)/serve.log", startedAt: started)
    }

    private func lastLogLine(_ state: SlotState) -> String {
        let tail = FileIO.tail(state.logPath, bytes: 2048)
        return tail.split(separator: "\n").last.map(String.init) ?? ""
    }

    private func rotate(_ logPath: String) {
        var st = stat()
        if stat(logPath, &st) == 0 && st.st_size > 10 << 20 { rename(logPath, logPath + ".1") }
    }

    private func appendLine(_ path: String, _ line: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }
}

// MARK: - ports

private let recentlyIssuedPorts = Mutex<[Int: Double]>([:])

/// A free loopback port: `preferred` when it can be bound now, else one the kernel picks. A port handed out in
/// the last 30 s by this process is not handed out again.
public func freePort(preferred: Int?) -> Int {
    recentlyIssuedPorts.withLock { issued in
        let now = monotonicMs()
        issued = issued.filter { now - $0.value < 30_000 }
        if let p = preferred, (1024...65535).contains(p), issued[p] == nil, portIsFree(p) {
            issued[p] = now
            return p
        }
        for _ in 0..<50 {
            let p = kernelPort()
            if p > 0, issued[p] == nil {
                issued[p] = now
                return p
            }
        }
        return kernelPort()
    }
}

/// `true` when 127.0.0.1:`port` can be bound right now.
public func portIsFree(_ port: Int) -> Bool {
    bindLoopback(port) != nil
}

private func kernelPort() -> Int {
    bindLoopback(0) ?? 0
}

/// Binds a TCP socket to 127.0.0.1:port (with SO_REUSEADDR, like servers do) and returns the bound port.
private func bindLoopback(_ port: Int) -> Int? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port)).bigEndian
    addr.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
    let ok = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard ok == 0 else { return nil }
    var bound = sockaddr_in()
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &bound) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return Int(UInt16(bigEndian: bound.sin_port))
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-29T11:56:23.959Z`.
func rfc3339(_ date: Date) -> String {
    let t = date.timeIntervalSince1970
    let secs = Int(t.rounded(.down))
    let ms = Int(((t - Double(secs)) * 1000).rounded(.down))
    let days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400
    let rem = secs - days * 86400
    // Civil from days (Howard Hinnant).
    let z = days + 719468
    let era = (z >= 0 ? z : z - 146096) / 146097
    let doe = z - era * 146097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
    func pad(_ v: Int, _ n: Int) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, n - s.count)) + s
    }
    return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(rem / 3600, 2)):\(pad(rem % 3600 / 60, 2)):\(pad(rem % 60, 2)).\(pad(ms, 3))Z"
}

// MARK: - SlotRuntime

extension SlotManager: SlotRuntime {
    /// Starts `launch` on its preferred port, or on another free one when that is taken.
    /// - Throws: `invalid_name` for a slot other than blue, green or teal, and what ``start(_:)-(SlotSpec)`` throws.
    public func start(_ launch: SlotLaunch) async throws(RuntimeError) -> RunningSlot {
        guard let slot = launch.ref.id.slot else { throw .invalidName("the local runtime has slots blue, green and teal, not \(launch.ref.id)") }
        let port = freePort(preferred: launch.preferredPort)
        let spec = SlotSpec(modelName: launch.ref.modelName, environment: launch.ref.environment, slot: slot,
                            bentoTag: launch.bentoTag, port: port)
        let state = try await Blocking.run { () throws(RuntimeError) in try self.start(spec) }
        return state.running
    }

    public func waitReady(_ slot: RunningSlot, deadlineSeconds: Double, probeTimeoutMs: Int, intervalMs: Int) async -> ReadinessResult {
        guard let id = slot.ref.id.slot, let pid = slot.processID else {
            return ReadinessResult(ready: false, elapsedMs: 0, attempts: 0, lastError: "slot \(slot.ref.id) is not a local slot")
        }
        let spec = SlotSpec(modelName: slot.ref.modelName, environment: slot.ref.environment, slot: id, bentoTag: slot.bentoTag,
                            port: slot.address.port)
        let state = SlotState(spec: spec, pid: pid, pgid: pid, alive: slot.alive, logPath: slot.logPath ?? "", startedAt: Date())
        return await waitReady(state, deadlineSeconds: deadlineSeconds, probeTimeoutMs: probeTimeoutMs, intervalMs: intervalMs)
    }

    public func stop(_ ref: SlotRef, graceSeconds: Double) async -> Bool {
        guard let slot = ref.id.slot else { return true }
        return await stop(modelName: ref.modelName, environment: ref.environment, slot: slot, graceSeconds: graceSeconds)
    }

    public func state(_ ref: SlotRef) async -> RunningSlot? {
        guard let slot = ref.id.slot else { return nil }
        return state(modelName: ref.modelName, environment: ref.environment, slot: slot)?.running
    }

    public func listSlots() async -> [RunningSlot] { allSlots().map(\.running) }

    public func logTail(_ slot: RunningSlot, bytes: Int) async -> String {
        guard let path = slot.logPath else { return "" }
        return FileIO.tail(path, bytes: bytes)
    }
}

extension SlotState {
    /// The port's view of this slot.
    public var running: RunningSlot {
        RunningSlot(ref: SlotRef(modelName: spec.modelName, environment: spec.environment, id: SlotID(spec.slot)),
                    bentoTag: spec.bentoTag, address: SlotAddress(port: spec.port), alive: alive, processID: pid, logPath: logPath)
    }
}
