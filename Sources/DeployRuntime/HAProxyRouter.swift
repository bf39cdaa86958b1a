import Glibc
import Synchronization

/// What one `setBackends` call did.
public struct HAProxyApplyResult: Sendable, Hashable {
    /// The runtime steps applied, in order (empty when the endpoint's process was started instead).
    public var steps: [HAProxyStep]
    /// `true` when the endpoint was new, moved to another port or had no working process: its own HAProxy
    /// process was (re)started with a config written from the desired state (frontends cannot be added at
    /// run time; no other endpoint's process is touched). Its counters start from 0.
    public var startedProcess: Bool
    /// From the call to the last runtime command answered (traffic follows the new weights), ms.
    public var trafficMovedMs: Double
    /// Time spent inside the router for this call, including persisting `routes.json`, ms.
    public var elapsedMs: Double
}

/// The traffic router on HAProxy: started by the agent under `home/router/`, one daemon per (model,
/// environment) endpoint (`ep-<port>.cfg`, `.pid`, `.sock` admin socket; request logs to the agent on a
/// loopback UDP port kept in `log.port`), outliving the
/// agent. Each endpoint's process has one frontend on its stable loopback port and one `roundrobin` backend
/// whose servers are the model's slots. One process per endpoint (about 7.5 MB each) means adding or
/// removing an endpoint starts or stops a process and never reloads one that carries traffic.
///
/// Traffic changes (weights, servers added or removed, enable/disable) are runtime API commands over the
/// endpoint's socket, never a reload. The desired state lives in `router/routes.json`, rewritten atomically
/// after every change; a process's config is written from it when the process starts, so a restarted
/// HAProxy serves the last weights set.
public final class HAProxyRouter: Sendable {
    /// The agent home; the router lives in `home/router`.
    public let home: String
    /// The haproxy executable.
    public let haproxy: String
    /// `home/router`.
    public let prefix: String
    /// How long a removed server may keep serving the requests it has before they are cut (a cut request
    /// is resent to another server by `retry-on empty-response` when its body fitted HAProxy's buffer).
    public let drainTimeoutMs: Int
    /// Serializes changes within this process.
    private let lock = Mutex<Void>(())
    private let collector = Mutex<HAProxyLogCollector?>(nil)
    /// The last `setBackends` result per route identifier (where a switch's time went).
    private let lastResults = Mutex<[String: HAProxyApplyResult]>([:])

    /// `haproxy` when it is on PATH, else Debian's /usr/sbin/haproxy (sbin is often not on a user's PATH).
    public static var defaultExecutable: String {
        if (try? ProcessLauncher.resolve("haproxy")) != nil { return "haproxy" }
        return access("/usr/sbin/haproxy", X_OK) == 0 ? "/usr/sbin/haproxy" : "haproxy"
    }

    /// A router rooted at `home/router`; nothing is touched until it is used.
    public init(home: String, haproxy: String = HAProxyRouter.defaultExecutable, drainTimeoutMs: Int = 30_000) {
        self.home = home
        self.haproxy = haproxy
        self.prefix = home + "/router"
        self.drainTimeoutMs = drainTimeoutMs
    }

    func files(_ route: HAProxyRoute) -> (config: String, pid: String, socket: String) {
        HAProxyConfig.processFiles(prefix: prefix, port: route.port)
    }
    var logPortPath: String { prefix + "/log.port" }
    public var statePath: String { prefix + "/routes.json" }

    // MARK: - public API

    /// Starts the HAProxy of every endpoint in `routes.json` that has none running (killing stray HAProxy
    /// processes of this home first: orphans of a lost pid file, or of endpoints no longer wanted), and
    /// starts the request-log reader. With no route there is nothing to serve and nothing is started.
    /// - Throws: `router_state_invalid`, `router_config_invalid`, `haproxy_failed`, `io_failed`.
    public func ensureRunning() async throws(RuntimeError) {
        try await Blocking.run { () throws(RuntimeError) in
            try self.lock.withLock { (_: inout Void) throws(RuntimeError) in try self.ensureRunningLocked() }
        }
    }

    /// Makes (model, environment)'s endpoint on `port` serve exactly `backends` with their weights.
    ///
    /// Against the servers HAProxy has now, the changes are applied as runtime commands in a safe order (see
    /// `HAProxyPlan.steps`): new servers added and enabled and weights raised before any weight is lowered,
    /// removed servers disabled, drained and deleted last. If a command fails, the previous state is put back
    /// (best effort) and `routes.json` keeps the previous state. A new endpoint gets its own HAProxy
    /// process; one that moves to another port has its process replaced (the old port stops answering).
    /// - Throws: `invalid_name`, `invalid_weights`, `port_in_use`, `router_state_invalid`,
    ///   `router_config_invalid`, `haproxy_failed`, `io_failed`.
    @discardableResult
    /// - Parameter portShared: the port is held by a listener that lets HAProxy bind beside it (the home's nginx
    ///   with `reuseport`, at a takeover): a new endpoint does not need it free.
    public func setBackends(model: String, environment: String, port: Int,
                            backends: [HAProxyServer], portShared: Bool = false) async throws(RuntimeError) -> HAProxyApplyResult {
        let route = HAProxyRoute(modelName: model, environment: environment, port: port, backends: backends)
        try HAProxyConfig.validate(route)
        let result = try await Blocking.run { () throws(RuntimeError) -> HAProxyApplyResult in
            try self.lock.withLock { (_: inout Void) throws(RuntimeError) -> HAProxyApplyResult in
                try self.setBackendsLocked(route, portShared: portShared)
            }
        }
        lastResults.withLock { $0[route.identifier] = result }
        return result
    }

    /// What the last `setBackends` of (model, environment) by this object did, and where its time went.
    public func lastApply(model: String, environment: String) -> HAProxyApplyResult? {
        let id = RuntimeNames.routeIdentifier(modelName: model, environment: environment)
        return lastResults.withLock { $0[id] }
    }

    /// Takes `server` out of (model, environment)'s backend when it carries no traffic (weight 0): `disable`,
    /// drain, `del server`, `del map` over the runtime socket, then `routes.json` without it. Read and changed
    /// under the router's lock, so a switch made meanwhile is never undone by a stale copy of the route. A
    /// server with a weight above 0, an unknown server or no route: nothing happens.
    /// - Returns: `true` when the server was removed.
    /// - Throws: `invalid_name`, `router_state_invalid`, `haproxy_failed`, `io_failed`.
    @discardableResult
    public func removeServer(model: String, environment: String, server: String) async throws(RuntimeError) -> Bool {
        try RuntimeNames.check(model, "model name")
        try RuntimeNames.check(environment, "environment")
        let id = RuntimeNames.routeIdentifier(modelName: model, environment: environment)
        return try await Blocking.run { () throws(RuntimeError) -> Bool in
            try self.lock.withLock { (_: inout Void) throws(RuntimeError) -> Bool in
                guard var route = try self.loadState().first(where: { $0.identifier == id }),
                    let gone = route.backends.first(where: { $0.name == server }), gone.weight == 0,
                    route.backends.contains(where: { $0.name != server && $0.weight > 0 })
                else { return false }
                route.backends.removeAll { $0.name == server }
                _ = try self.setBackendsLocked(route)
                return true
            }
        }
    }

    /// Stops this object's request-log reader, processes left running, so another `HAProxyRouter` of the same
    /// home in this process (the engine's, after the start-up takeover) can bind its port: the running
    /// processes send their request log there.
    /// Returns once the port is free (the reader lets go of it within 200 ms), or after 1 s.
    public func releaseLogReader() {
        let port: Int? = collector.withLock { c in
            defer { c?.stop(); c = nil }
            return c?.port
        }
        guard let port else { return }
        let deadline = monotonicMs() + 1000
        while monotonicMs() < deadline {
            if let fd = HAProxyLogCollector.bindLoopbackUDP(port) {
                close(fd)
                return
            }
            usleep(10_000)
        }
    }

    /// The route of (model, environment) as last set (from `routes.json`); nil when there is none or the
    /// state file is unreadable.
    public func route(model: String, environment: String) -> HAProxyRoute? {
        let id = RuntimeNames.routeIdentifier(modelName: model, environment: environment)
        return (try? loadState())?.first { $0.identifier == id }
    }

    /// Every route as last set.
    /// - Throws: `router_state_invalid`, `io_failed`.
    public func routes() throws(RuntimeError) -> [HAProxyRoute] { try loadState() }

    /// The servers of (model, environment) as the running HAProxy has them now.
    /// - Throws: `invalid_name`, `route_not_found`, `haproxy_failed` (also when its process is not running).
    public func runtimeServers(model: String, environment: String) async throws(RuntimeError) -> [HAProxyServerState] {
        try RuntimeNames.check(model, "model name")
        try RuntimeNames.check(environment, "environment")
        guard let route = route(model: model, environment: environment) else {
            throw RuntimeError(code: "route_not_found", message: "no route for \(model)/\(environment)")
        }
        return try await Blocking.run { () throws(RuntimeError) -> [HAProxyServerState] in
            try self.serversState(route)
        }
    }

    /// Per-server traffic facts of (model, environment), see `TrafficStats` for where each number comes from.
    /// - Parameter latencyWindowMs: the window (ending now) for `p95Ms`, `windowRequests` and `window5xx`.
    /// - Throws: `invalid_name`, `route_not_found`, `haproxy_failed`.
    public func trafficStats(model: String, environment: String,
                             latencyWindowMs: Int = 60_000) async throws(RuntimeError) -> [TrafficStats] {
        try RuntimeNames.check(model, "model name")
        try RuntimeNames.check(environment, "environment")
        guard let route = route(model: model, environment: environment) else {
            throw RuntimeError(code: "route_not_found", message: "no route for \(model)/\(environment)")
        }
        return try await Blocking.run { () throws(RuntimeError) -> [TrafficStats] in
            // A router object made after HAProxy was started (agent restarted) begins reading the log here.
            try self.startCollectorIfNeeded()
            guard let pid = self.runningPid(route) else {
                throw RuntimeError(code: "haproxy_failed", message: "the router of \(model)/\(environment) is not running")
            }
            let servers = try self.serversState(route)
            let rows = HAProxyParse.statRows(try HAProxySocket.send(self.files(route).socket, "show stat \(route.backendName) 4 -1"),
                                             backend: route.backendName)
            let since = monotonicMs() - Double(max(0, latencyWindowMs))
            let log = self.collector.withLock { $0 }
            let versions = Dictionary(route.backends.map { ($0.name, $0.version) }, uniquingKeysWith: { a, _ in a })
            return servers.map { s in
                let row = rows.first { $0["svname"] == s.name } ?? [:]
                func n(_ k: String) -> Int { row[k].flatMap { Int($0) } ?? 0 }
                let w = log?.window(backend: route.backendName, server: s.name, sinceMs: since) ?? (count: 0, errors5xx: 0, p95: nil)
                return TrafficStats(backend: s.name, version: versions[s.name], weight: s.weight, enabled: s.enabled,
                                    requests: n("req_tot"), selections: n("lbtot"),
                                    retries: n("wretr"), redispatches: n("wredis"), responses2xx: n("hrsp_2xx"), responses4xx: n("hrsp_4xx"),
                                    responses5xx: n("hrsp_5xx"), connectionErrors: n("econ"), responseErrors: n("eresp"),
                                    currentSessions: n("scur"), averageResponseMs: n("rtime"), averageTotalMs: n("ttime"),
                                    p95Ms: w.p95, windowRequests: w.count, window5xx: w.errors5xx, routerPid: pid)
            }
        }
    }

    /// Removes (model, environment)'s endpoint: its HAProxy process finishes the requests in flight and stops
    /// (killed after 5 s); no other endpoint is touched. No route: nothing happens.
    /// - Throws: `invalid_name`, `router_state_invalid`, `io_failed`.
    public func removeRoute(model: String, environment: String) async throws(RuntimeError) {
        try RuntimeNames.check(model, "model name")
        try RuntimeNames.check(environment, "environment")
        let id = RuntimeNames.routeIdentifier(modelName: model, environment: environment)
        try await Blocking.run { () throws(RuntimeError) in
            try self.lock.withLock { (_: inout Void) throws(RuntimeError) in
                let routes = try self.loadState()
                guard let gone = routes.first(where: { $0.identifier == id }) else { return }
                try self.writeState(routes.filter { $0.identifier != id })
                self.stopProcesses([self.runningPid(gone)].compactMap { $0 })
                let f = self.files(gone)
                for path in [f.pid, f.config, HAProxyConfig.mapPath(prefix: self.prefix, route: gone)] { unlink(path) }
            }
        }
    }

    /// Polls `GET /readyz` through the router on `port` until an answer carries `X-Model-Deployer-Slot: slot`.
    /// - Returns: `true` when one did within `timeoutMs`.
    public func verify(port: Int, expectSlot slot: String, timeoutMs: Int) async -> Bool {
        let deadline = monotonicMs() + Double(timeoutMs)
        while true {
            let remaining = Int(deadline - monotonicMs())
            if remaining <= 0 { return false }
            if let r = try? await HTTPClient.request(method: "GET", port: port, path: "/readyz", timeoutMs: min(remaining, 2000)),
               r.headers["x-model-deployer-slot"] == slot {
                return true
            }
            if monotonicMs() + 10 >= deadline { return false }
            await pause(milliseconds: 10)
        }
    }

    /// Whether the HAProxy of the endpoint on `port` has `server` (on `serverPort`, in service, weight above 0)
    /// as the only server that takes traffic: its runtime state over the admin socket, one command. The
    /// runtime commands that change weights answer once HAProxy applied them, so this is what the next
    /// request meets. `false` when no endpoint listens on `port` or its process does not answer.
    public func servesOnly(port: Int, server: String, serverPort: Int) async -> Bool {
        await Blocking.run { () -> Bool in
            guard let route = (try? self.loadState())?.first(where: { $0.port == port }),
                let servers = try? self.serversState(route)
            else { return false }
            return servers.contains { $0.name == server && $0.port == serverPort && $0.enabled && $0.weight > 0 }
                && !servers.contains { $0.name != server && $0.enabled && $0.weight > 0 }
        }
    }

    /// `true` when some HAProxy process of this home is running.
    public func isRunning() -> Bool { !ourProcesses().isEmpty }

    /// Some endpoint in `routes.json` has no HAProxy serving it (crashed, killed, or a lost pid file).
    public var needsRepair: Bool {
        guard let routes = try? loadState() else { return false }
        return routes.contains { runningPid($0) == nil }
    }

    /// Stops every HAProxy process of this home (soft stop, SIGKILL after 5 s) and the log reader.
    /// `routes.json` is kept, so `ensureRunning` brings the same endpoints back.
    public func stop() async {
        await Blocking.run {
            self.lock.withLock { _ in
                self.stopProcesses(self.ourProcesses())
                for name in FileIO.list(self.prefix) where name.hasPrefix("ep-") && name.hasSuffix(".pid") {
                    unlink(self.prefix + "/" + name)
                }
            }
        }
        collector.withLock { c in
            c?.stop()
            c = nil
        }
    }

    /// The pid of the HAProxy serving (model, environment), from its pid file checked against /proc.
    public func runningPid(model: String, environment: String) -> Int32? {
        route(model: model, environment: environment).flatMap { runningPid($0) }
    }

    func runningPid(_ route: HAProxyRoute) -> Int32? {
        let f = files(route)
        guard let text = FileIO.readString(f.pid) else { return nil }
        for line in text.split(separator: "\n") {
            guard let pid = Int32(line.trimmingSpaces), pid > 0, configArgument(of: pid) == f.config else { continue }
            return pid
        }
        return nil
    }

    /// HAProxy processes of this home that serve no endpoint of `routes.json` through its pid file: orphans
    /// of a lost pid file or a crash, or processes of endpoints removed or moved. They may hold ports a
    /// wanted endpoint needs; `ensureRunning` kills them before it starts anything.
    public func strayProcesses() -> [Int32] {
        let wanted = Set(((try? loadState()) ?? []).compactMap { runningPid($0) })
        return ourProcesses().filter { !wanted.contains($0) }
    }

    // MARK: - internals

    /// The `ep-*.cfg` of this home that a live haproxy process was started with; nil for any other process.
    private func configArgument(of pid: Int32) -> String? {
        guard ProcessLauncher.isAlive(pid: pid), let cmd = FileIO.readBytes("/proc/\(pid)/cmdline", limit: 8192) else { return nil }
        let args = cmd.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let argv0 = args.first, argv0.split(separator: "/").last?.hasPrefix("haproxy") == true else { return nil }
        return args.first { $0.hasPrefix(prefix + "/ep-") && $0.hasSuffix(".cfg") && !$0.dropFirst(prefix.count + 1).contains("/") }
    }

    /// Every live HAProxy process started with a config of this home.
    private func ourProcesses() -> [Int32] {
        ProcessTable.snapshot().compactMap { p in
            guard p.state != "Z", p.pid != getpid(), configArgument(of: p.pid) != nil else { return nil }
            return p.pid
        }
    }

    func loadState() throws(RuntimeError) -> [HAProxyRoute] {
        guard FileIO.exists(statePath) else { return [] }
        guard let bytes = FileIO.readBytes(statePath) else { throw .io("cannot read \(statePath): \(errnoString())") }
        return try HAProxyConfig.decodeState(bytes)
    }

    private func writeState(_ routes: [HAProxyRoute]) throws(RuntimeError) {
        try FileIO.writeAtomically(statePath, HAProxyConfig.encodeState(routes), mode: 0o600)
    }

    /// Writes `route`'s config and map file (atomically, each).
    private func writeConfig(_ route: HAProxyRoute, logPort: Int) throws(RuntimeError) {
        try FileIO.makeDirectories(prefix + "/maps")
        let text = try HAProxyConfig.render(prefix: prefix, route: route, logPort: logPort)
        try FileIO.writeAtomically(HAProxyConfig.mapPath(prefix: prefix, route: route), Array(HAProxyConfig.renderMap(route).utf8))
        try FileIO.writeAtomically(files(route).config, Array(text.utf8), mode: 0o600)
    }

    private func run(_ args: [String]) throws(RuntimeError) -> (status: Int32, output: String) {
        do {
            return try ProcessLauncher.runSync(executable: haproxy, arguments: args,
                                               environment: ProcessLauncher.currentEnvironment(), timeoutMs: 15_000)
        } catch {
            throw RuntimeError(code: "haproxy_failed", message: error.message)
        }
    }

    /// Writes `route`'s config, checks it with `haproxy -c` and starts its daemon; returns once the process
    /// named in its pid file answers on its runtime socket.
    private func startProcess(_ route: HAProxyRoute) throws(RuntimeError) {
        guard let logPort = collector.withLock({ $0?.port }) else {
            throw RuntimeError(code: "haproxy_failed", message: "the request-log reader is not running")
        }
        try writeConfig(route, logPort: logPort)
        let f = files(route)
        unlink(f.pid)
        let check = try run(["-c", "-q", "-f", f.config])
        guard check.status == 0 else {
            throw RuntimeError(code: "router_config_invalid", message: "haproxy -c failed: \(check.output.trimmingSpaces)")
        }
        let r = try run(["-D", "-f", f.config])
        guard r.status == 0 else {
            throw RuntimeError(code: "haproxy_failed", message: "haproxy did not start: \(r.output.trimmingSpaces)")
        }
        let deadline = monotonicMs() + 5000
        while monotonicMs() < deadline {
            if let pid = runningPid(route),
               (try? HAProxySocket.send(f.socket, "show info", timeoutMs: 500))?.contains("Pid: \(pid)") == true {
                return
            }
            usleep(5000)
        }
        throw RuntimeError(code: "haproxy_failed", message: "haproxy started but its runtime socket did not answer within 5 s")
    }

    private func startCollectorIfNeeded() throws(RuntimeError) {
        try collector.withLock { (c: inout HAProxyLogCollector?) throws(RuntimeError) in
            guard c == nil else { return }
            // The same port as before when it is free: running HAProxy processes keep sending there.
            let previous = FileIO.readString(logPortPath).flatMap { Int($0.trimmingSpaces) }
            let started = try HAProxyLogCollector(preferredPort: previous)
            if started.port != previous {
                do throws(RuntimeError) {
                    try FileIO.writeAtomically(logPortPath, Array("\(started.port)\n".utf8))
                } catch {
                    started.stop()
                    throw error
                }
            }
            c = started
        }
    }

    private func ensureRunningLocked() throws(RuntimeError) {
        try FileIO.makeDirectories(prefix + "/maps")
        let routes = try loadState()
        let down = routes.filter { runningPid($0) == nil }
        guard !down.isEmpty || routes.isEmpty else { return }
        if !routes.isEmpty { try startCollectorIfNeeded() }
        let strays = strayProcesses()
        if !strays.isEmpty {
            for pid in strays { kill(pid, SIGKILL) }
            let deadline = monotonicMs() + 2000
            while strays.contains(where: { ProcessLauncher.isAlive(pid: $0) }) && monotonicMs() < deadline { usleep(5000) }
        }
        for route in down { try startProcess(route) }
    }

    private func serversState(_ route: HAProxyRoute) throws(RuntimeError) -> [HAProxyServerState] {
        let text = try HAProxySocket.send(files(route).socket, "show servers state \(route.backendName)")
        guard text.contains("# be_id") else {
            throw RuntimeError(code: "haproxy_failed", message: "show servers state \(route.backendName): \(text.trimmingSpaces)")
        }
        return HAProxyParse.serversState(text, backend: route.backendName)
    }

    private func setBackendsLocked(_ wanted: HAProxyRoute, portShared: Bool = false) throws(RuntimeError) -> HAProxyApplyResult {
        let start = monotonicMs()
        let routes = try loadState()
        let previous = routes.first { $0.identifier == wanted.identifier }
        // The metrics port stays what it was (scrape configs name it); a new process gets one if it has none.
        var route = wanted
        route.metricsPort = previous?.metricsPort
        if route.metricsPort == nil && !(previous?.port == route.port) {
            let taken = Set(routes.flatMap { [$0.port] + ($0.metricsPort.map { [$0] } ?? []) } + [route.port] + route.backends.map(\.port))
            var candidate = freePort(preferred: nil)
            while taken.contains(candidate) { candidate = freePort(preferred: nil) }
            route.metricsPort = candidate
        }
        if let other = routes.first(where: { $0.port == route.port && $0.identifier != route.identifier }) {
            throw RuntimeError(code: "port_in_use", message: "router port \(route.port) already serves \(other.modelName)/\(other.environment)")
        }
        if previous?.port != route.port && !portShared && !portIsFree(route.port) {
            throw RuntimeError(code: "port_in_use", message: "router port \(route.port) is in use")
        }
        let next = routes.filter { $0.identifier != route.identifier } + [route]
        try ensureRunningLocked()
        func replaceProcess(_ old: HAProxyRoute?) throws(RuntimeError) -> HAProxyApplyResult {
            try startCollectorIfNeeded()
            if let old {
                stopProcesses([runningPid(old)].compactMap { $0 })
                if old.port != route.port { for path in [files(old).pid, files(old).config] { unlink(path) } }
            }
            do throws(RuntimeError) {
                try startProcess(route)
            } catch {
                if let old { try? startProcess(old) }
                throw error
            }
            let applied = monotonicMs()
            try writeState(next)
            return HAProxyApplyResult(steps: [], startedProcess: true, trafficMovedMs: applied - start, elapsedMs: monotonicMs() - start)
        }
        // A frontend cannot be added or moved at run time: the endpoint gets a process of its own.
        guard let previous, previous.port == route.port else { return try replaceProcess(previous) }
        let current: [HAProxyServerState]
        do throws(RuntimeError) {
            current = try serversState(previous)
        } catch {
            // Its process does not answer or lacks the backend: replace it.
            return try replaceProcess(previous)
        }
        let versions = Dictionary(previous.backends.map { ($0.name, $0.version) }, uniquingKeysWith: { a, _ in a })
        let steps = HAProxyPlan.steps(current: current, currentVersions: versions, desired: route.backends)
        do throws(RuntimeError) {
            for step in steps { try apply(step, route: route) }
        } catch {
            restore(previous)
            throw error
        }
        let applied = monotonicMs()
        // Only the state is persisted here (one fsync): a process start writes its config and map from it,
        // so a restarted HAProxy serves these weights.
        try writeState(next)
        return HAProxyApplyResult(steps: steps, startedProcess: false, trafficMovedMs: applied - start,
                                  elapsedMs: monotonicMs() - start)
    }

    /// Puts `previous`'s servers back after a failed change (best effort: the caller reports the first error).
    private func restore(_ previous: HAProxyRoute) {
        guard let current = try? serversState(previous) else { return }
        let steps = HAProxyPlan.steps(current: current, currentVersions: [:], desired: previous.backends)
        for step in steps { try? apply(step, route: previous) }
    }

    private func apply(_ step: HAProxyStep, route: HAProxyRoute) throws(RuntimeError) {
        let be = route.backendName
        let map = HAProxyConfig.mapPath(prefix: prefix, route: route)
        let socketPath = files(route).socket
        switch step {
        case .add(let server, let port, let weight, let version):
            try HAProxySocket.expect(socketPath, "add server \(be)/\(server) 127.0.0.1:\(port) weight \(weight)",
                                     okAnswers: ["New server registered."])
            try setMap(socketPath, map, server, version)
        case .setVersion(let server, let version):
            try setMap(socketPath, map, server, version)
        case .setAddress(let server, let port):
            let answer = try HAProxySocket.send(socketPath, "set server \(be)/\(server) addr 127.0.0.1 port \(port)")
            guard answer.contains("changed") || answer.contains("no need to change") else {
                throw RuntimeError(code: "haproxy_failed", message: "set server \(be)/\(server) addr was refused: \(answer.trimmingSpaces)")
            }
        case .setWeight(let server, let weight):
            try HAProxySocket.expect(socketPath, "set server \(be)/\(server) weight \(weight)")
        case .enable(let server):
            try HAProxySocket.expect(socketPath, "enable server \(be)/\(server)")
        case .disableDrainDelete(let server):
            try HAProxySocket.expect(socketPath, "disable server \(be)/\(server)")
            try drainAndDelete(socketPath, be, server)
            _ = try HAProxySocket.send(socketPath, "del map \(map) \(server)")
        }
    }

    /// Points `server`'s key in the runtime map at `version` (adding the key when the map lacks it).
    private func setMap(_ socketPath: String, _ map: String, _ server: String, _ version: String) throws(RuntimeError) {
        let answer = try HAProxySocket.send(socketPath, "set map \(map) \(server) \(version)").trimmingSpaces
        if answer.isEmpty { return }
        try HAProxySocket.expect(socketPath, "add map \(map) \(server) \(version)")
    }

    /// Waits until the disabled `server` has no session left (cutting what is left after `drainTimeoutMs`),
    /// then deletes it. `del server` refuses while connections (idle ones too) remain, so it is retried.
    private func drainAndDelete(_ socketPath: String, _ be: String, _ server: String) throws(RuntimeError) {
        let deadline = monotonicMs() + Double(drainTimeoutMs)
        var cut = false
        var lastAnswer = ""
        while true {
            let rows = HAProxyParse.statRows(try HAProxySocket.send(socketPath, "show stat \(be) 4 -1"), backend: be)
            let sessions = rows.first { $0["svname"] == server }.flatMap { $0["scur"] }.flatMap { Int($0) } ?? 0
            if sessions == 0 {
                lastAnswer = try HAProxySocket.send(socketPath, "del server \(be)/\(server)").trimmingSpaces
                if lastAnswer == "Server deleted." || lastAnswer == "No such server." { return }
            }
            if monotonicMs() >= deadline {
                if cut {
                    throw RuntimeError(code: "haproxy_failed", message: "del server \(be)/\(server) was refused: \(lastAnswer)")
                }
                _ = try HAProxySocket.send(socketPath, "shutdown sessions server \(be)/\(server)")
                cut = true
                continue
            }
            usleep(10_000)
        }
    }

    /// Soft-stops `pids` (SIGUSR1: stop accepting, finish what is in flight), SIGKILLs what is left after 5 s.
    private func stopProcesses(_ pids: [Int32]) {
        guard !pids.isEmpty else { return }
        for pid in pids { kill(pid, SIGUSR1) }
        var deadline = monotonicMs() + 5000
        while pids.contains(where: { ProcessLauncher.isAlive(pid: $0) }) && monotonicMs() < deadline { usleep(10_000) }
        for pid in pids where ProcessLauncher.isAlive(pid: pid) { kill(pid, SIGKILL) }
        deadline = monotonicMs() + 2000
        while pids.contains(where: { ProcessLauncher.isAlive(pid: $0) }) && monotonicMs() < deadline { usleep(5000) }
    }
}
