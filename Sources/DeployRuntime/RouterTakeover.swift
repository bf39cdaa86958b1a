import DeployCore

/// The router that served a home before: what the takeover needs of it (the home's nginx).
public protocol TakeoverSource: Sendable {
    /// Its process is running (its endpoints are being served).
    func isServing() -> Bool
    /// The endpoints it serves.
    func routes() async -> [RouteSpec]
    /// Stops serving one endpoint (its port is free once this returns).
    func removeRoute(modelName: String, environment: String) async throws(RuntimeError)
    /// Serves an endpoint again (a takeover that failed gives it back).
    func apply(_ route: RouteSpec) async throws(RuntimeError)
    /// Stops its process.
    func stop() async
}

extension NginxRouter: TakeoverSource {
    public func isServing() -> Bool { isRunning() }
}

/// The one-time move of a home's endpoints from the nginx of the release before to HAProxy, when `serve`
/// starts with the HAProxy router and finds that nginx running with routes.
///
/// Linux lets HAProxy bind an endpoint's port only once nginx has let go of it, so each endpoint in turn:
/// nginx drops its route (reload; the port refuses connections from here), HAProxy starts on the same port
/// with the same live slot (connections are accepted again), then the endpoint is checked. An endpoint
/// HAProxy cannot take is given back to nginx at once; nginx is stopped only when it serves nothing more.
public enum RouterTakeover {
    /// What the takeover did.
    public struct Outcome: Sendable, Equatable {
        /// Endpoints HAProxy serves now, each with the time its port refused connections, ms (nginx's reload
        /// that dropped the route through HAProxy's start).
        public var movedPorts: [Int: Double] = [:]
        /// Endpoints moved, in order.
        public var moved: [RouteSpec] = []
        /// Endpoints left with nginx, each with why HAProxy could not take it.
        public var kept: [(route: RouteSpec, reason: String)] = []
        /// Endpoints neither router serves now (HAProxy failed and nginx could not take it back).
        public var lost: [(route: RouteSpec, reason: String)] = []
        /// nginx was stopped (it served nothing more).
        public var nginxStopped = false

        public init() {}

        public static func == (a: Outcome, b: Outcome) -> Bool {
            a.moved == b.moved && a.kept.map(\.route) == b.kept.map(\.route) && a.lost.map(\.route) == b.lost.map(\.route)
                && a.nginxStopped == b.nginxStopped
        }
    }

    /// The endpoints to move: nginx's routes (only while nginx runs; a stopped nginx serves nothing and holds
    /// no port) that HAProxy does not already serve on the same port.
    public static func pending(nginxServing: Bool, nginxRoutes: [RouteSpec], haproxyRoutes: [RouteSpec]) -> [RouteSpec] {
        guard nginxServing else { return [] }
        return nginxRoutes.filter { r in
            !haproxyRoutes.contains { $0.modelName == r.modelName && $0.environment == r.environment && $0.listenPort == r.listenPort }
        }.sorted { ($0.modelName, $0.environment) < ($1.modelName, $1.environment) }
    }

    /// Moves every pending endpoint from `nginx` to `haproxy`; `now` reads a monotonic clock in ms.
    public static func run(nginx: any TakeoverSource, haproxy: any TrafficRouter, now: (@Sendable () -> Double)? = nil,
                           log: @Sendable (String, [String: String]) -> Void) async -> Outcome {
        let now = now ?? { monotonicMs() }
        var out = Outcome()
        let todo = pending(nginxServing: nginx.isServing(), nginxRoutes: await nginx.routes(), haproxyRoutes: await haproxy.routes())
        guard !todo.isEmpty else { return out }
        for route in todo {
            guard let live = route.primary else { continue }
            let start = now()
            do {
                try await nginx.removeRoute(modelName: route.modelName, environment: route.environment)
            } catch {
                out.kept.append((route, "nginx could not drop the route: \(error.message)"))
                continue
            }
            do throws(RuntimeError) {
                try await haproxy.apply(route)
                let window = now() - start
                guard await haproxy.verify(listenPort: route.listenPort, serving: live.slot, timeoutMs: 5000) else {
                    throw RuntimeError(code: "switch_failed", message: "HAProxy on port \(route.listenPort) does not answer from \(live.slot)")
                }
                out.moved.append(route)
                out.movedPorts[route.listenPort] = window
                log("router takeover: endpoint moved from nginx to HAProxy",
                    ["model": route.modelName, "environment": route.environment, "port": String(route.listenPort),
                     "slot": live.slot.rawValue, "version": live.version, "refused_ms": String(Int(window.rounded()))])
            } catch {
                // Give the endpoint back to nginx: HAProxy's half (if any) first, so the port is free.
                do throws(RuntimeError) {
                    try await haproxy.removeRoute(modelName: route.modelName, environment: route.environment)
                    try await nginx.apply(route)
                    out.kept.append((route, error.message))
                } catch let back {
                    out.lost.append((route, "\(error.message); it could not be given back to nginx: \(back.message)"))
                }
            }
        }
        let nginxLeft = await nginx.routes()
        if out.kept.isEmpty && out.lost.isEmpty && nginxLeft.isEmpty {
            await nginx.stop()
            out.nginxStopped = true
        }
        return out
    }
}
