import DeployCore

/// `HAProxyRouter` behind the engine's `TrafficRouter` port.
///
/// An adapter rather than a conformance on `HAProxyRouter` itself: the router's own `routes()` returns its
/// `HAProxyRoute` values and throws, and a second `routes()` differing only in its result would make every
/// existing caller ambiguous.
///
/// The port speaks in shares of 0...100; HAProxy weights run 0...256. A share maps to
/// `round(share * 256 / 100)`, kept at 1 or more for any share above 0 (a share that asked for traffic must
/// get some), and maps back with the inverse rounding, so every share 0...100 reads back as itself.
/// Backends at 0 stay configured as warm servers without traffic (nginx drops them instead).
public struct HAProxyTrafficRouter: TrafficRouter {
    /// The router doing the work.
    public let haproxy: HAProxyRouter

    /// Puts `haproxy` behind the port.
    public init(_ haproxy: HAProxyRouter) {
        self.haproxy = haproxy
    }

    /// An HAProxy router rooted at `home/router` behind the port.
    public init(home: String, haproxy: String = HAProxyRouter.defaultExecutable) {
        self.haproxy = HAProxyRouter(home: home, haproxy: haproxy)
    }

    /// The HAProxy weight for a port share (0...100, checked by the caller).
    public static func haproxyWeight(share: Int) -> Int {
        guard share > 0 else { return 0 }
        return max(1, (share * HAProxyConfig.maxWeight + 50) / 100)
    }

    /// The port share for an HAProxy weight (0...256).
    public static func share(haproxyWeight weight: Int) -> Int {
        guard weight > 0 else { return 0 }
        return max(1, min(100, (weight * 100 + HAProxyConfig.maxWeight / 2) / HAProxyConfig.maxWeight))
    }

    /// - Throws: `router_state_invalid`, `router_config_invalid`, `haproxy_failed`, `io_failed`.
    public func ensureRunning() async throws(RuntimeError) {
        try await haproxy.ensureRunning()
    }

    /// Sets the endpoint's servers to exactly the spec's backends with their shares as HAProxy weights, by
    /// runtime commands (a new endpoint gets its own process).
    /// - Throws: `invalid_weights` for a share outside 0...100 or all shares 0, `invalid_name`, `port_in_use`,
    ///   `router_state_invalid`, `router_config_invalid`, `haproxy_failed`, `io_failed`.
    public func apply(_ route: RouteSpec) async throws(RuntimeError) {
        try await apply(route, portShared: false)
    }

    /// `apply` for an endpoint whose port another listener holds with `SO_REUSEPORT` (a takeover from nginx):
    /// HAProxy binds beside it instead of asking for a free port.
    public func apply(_ route: RouteSpec, portShared: Bool) async throws(RuntimeError) {
        for b in route.backends where !(0...100).contains(b.weight) {
            throw RuntimeError(code: "invalid_weights", message: "share \(b.weight) of \(b.slot) must be 0-100")
        }
        let servers = route.backends.map { b in
            HAProxyServer(name: b.slot.rawValue, port: b.address.port, weight: Self.haproxyWeight(share: b.weight), version: b.version)
        }
        try await haproxy.setBackends(model: route.modelName, environment: route.environment, port: route.listenPort,
                                      backends: servers, portShared: portShared)
    }

    /// `commands_ms`: in the router's thread, from taking its lock to the last runtime command answered (the
    /// state read, the current servers read over the socket, the weight commands); `persist_ms`: the
    /// `routes.json` write with its fsync after them.
    public func applyLaps(modelName: String, environment: String) -> [String: Double] {
        guard let r = haproxy.lastApply(model: modelName, environment: environment) else { return [:] }
        return ["commands_ms": r.trafficMovedMs, "persist_ms": r.elapsedMs - r.trafficMovedMs]
    }

    public func verify(listenPort: Int, serving slot: SlotID, timeoutMs: Int) async -> Bool {
        await haproxy.verify(port: listenPort, expectSlot: slot.rawValue, timeoutMs: timeoutMs)
    }

    /// `show servers state` of the endpoint's backend: `slot` is the only server with a weight above 0, in
    /// service, on `address`'s port. `false` when the endpoint or its process is unknown or does not answer.
    public func readBack(listenPort: Int, serving slot: SlotID, address: SlotAddress) async -> Bool? {
        await haproxy.servesOnly(port: listenPort, server: slot.rawValue, serverPort: address.port)
    }

    /// The endpoint as last set (from `routes.json`), backends at 0 included.
    public func route(modelName: String, environment: String) async -> RouteSpec? {
        guard RuntimeNames.isValidName(modelName), RuntimeNames.isValidName(environment) else { return nil }
        return haproxy.route(model: modelName, environment: environment).map(Self.spec)
    }

    /// Every endpoint as last set; empty when `routes.json` cannot be read (the router then cannot say what
    /// it serves, and `ensureRunning` reports why).
    public func routes() async -> [RouteSpec] {
        ((try? haproxy.routes()) ?? []).map(Self.spec)
    }

    /// - Throws: `invalid_name`, `router_state_invalid`, `io_failed`.
    public func removeRoute(modelName: String, environment: String) async throws(RuntimeError) {
        try await haproxy.removeRoute(model: modelName, environment: environment)
    }

    /// Takes a weight-0 server out of the backend (disable, drain, `del server`) and out of `routes.json`.
    /// - Throws: `invalid_name`, `router_state_invalid`, `haproxy_failed`, `io_failed`.
    public func detach(modelName: String, environment: String, slot: SlotID) async throws(RuntimeError) -> Bool {
        try await haproxy.removeServer(model: modelName, environment: environment, server: slot.rawValue)
    }

    public func needsRestart() async -> Bool { haproxy.needsRepair }

    /// `preferred` when this endpoint already listens there or the port is free, else one the kernel picks.
    public func listenPort(preferred: Int, modelName: String, environment: String) async -> Int {
        let current = RuntimeNames.isValidName(modelName) && RuntimeNames.isValidName(environment)
            ? haproxy.route(model: modelName, environment: environment)?.port : nil
        if current == preferred || portIsFree(preferred) { return preferred }
        return freePort(preferred: nil)
    }

    /// Counters from HAProxy's `show stat` since the endpoint's process started: requests sent to each
    /// server; errors are its 5xx answers (HAProxy's own 503s for it included) plus responses broken on the
    /// server side. Failed connection attempts that a retry hid from the client are not errors here.
    /// `nil` when there is no such endpoint or its process does not answer.
    public func stats(modelName: String, environment: String) async -> [BackendStats]? {
        guard let rows = try? await haproxy.trafficStats(model: modelName, environment: environment) else { return nil }
        return rows.map { s in
            BackendStats(slot: SlotID(rawValue: s.backend), requests: s.requests, errors: s.responses5xx + s.responseErrors,
                         active: s.currentSessions)
        }
    }

    /// `http://127.0.0.1:<metrics port>/metrics`: the endpoint's HAProxy Prometheus exporter (servers are slot ids).
    public func metricsURL(modelName: String, environment: String) async -> String? {
        guard RuntimeNames.isValidName(modelName), RuntimeNames.isValidName(environment) else { return nil }
        return haproxy.route(model: modelName, environment: environment)?.metricsPort.map { "http://127.0.0.1:\($0)/metrics" }
    }

    /// The counters with each server's window from the request log: requests that ended in the last
    /// `windowMs`, their 5xx answers and their p95 (`Ta`, request received to response sent).
    public func stats(modelName: String, environment: String, windowMs: Int) async -> [BackendStats]? {
        guard let rows = try? await haproxy.trafficStats(model: modelName, environment: environment, latencyWindowMs: windowMs) else { return nil }
        return rows.map { s in
            BackendStats(slot: SlotID(rawValue: s.backend), requests: s.requests, errors: s.responses5xx + s.responseErrors,
                         active: s.currentSessions, window: WindowFigures(requests: s.windowRequests, errors: s.window5xx, p95Ms: s.p95Ms))
        }
    }

    /// HAProxy splits by server weight.
    public var splitsTraffic: Bool { true }

    /// Stops every HAProxy process of this home (tests and shutdown); routes are kept.
    public func stop() async { await haproxy.stop() }

    static func spec(_ r: HAProxyRoute) -> RouteSpec {
        RouteSpec(modelName: r.modelName, environment: r.environment, listenPort: r.port,
                  backends: r.backends.map { b in
                      WeightedBackend(slot: SlotID(rawValue: b.name), address: SlotAddress(port: b.port), version: b.version,
                                      weight: share(haproxyWeight: b.weight))
                  })
    }
}
