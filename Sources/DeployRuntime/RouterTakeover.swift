import DeployCore

/// The router that served a home before: what the takeover needs of it (the home's nginx).
public protocol TakeoverSource: Sendable {
    /// Its process is running (its endpoints are being served).
    func isServing() -> Bool
    /// The endpoints it serves.
    func routes() async -> [RouteSpec]
    /// Lets another process bind the endpoint's port beside it (`SO_REUSEPORT`), still serving.
    func shareListener(modelName: String, environment: String) async throws(RuntimeError)
    /// Stops serving one endpoint (its port is free of it once this returns).
    func removeRoute(modelName: String, environment: String) async throws(RuntimeError)
    /// Serves an endpoint again (a takeover that failed after the route was dropped gives it back).
    func apply(_ route: RouteSpec) async throws(RuntimeError)
    /// Stops its process.
    func stop() async
}

/// The router taking a home's endpoints over (HAProxy).
public protocol TakeoverTarget: Sendable {
    /// The endpoints it serves.
    func routes() async -> [RouteSpec]
    /// Serves `route`; with `portShared`, binds beside the listener already on its port.
    func apply(_ route: RouteSpec, portShared: Bool) async throws(RuntimeError)
    /// Answers on `listenPort` from `slot`.
    func verify(listenPort: Int, serving slot: SlotID, timeoutMs: Int) async -> Bool
    /// Stops serving an endpoint.
    func removeRoute(modelName: String, environment: String) async throws(RuntimeError)
}

extension NginxRouter: TakeoverSource {
    public func isServing() -> Bool { isRunning() }
}

extension HAProxyTrafficRouter: TakeoverTarget {}

/// The one-time move of a home's endpoints from the nginx of the release before to HAProxy, when `serve`
/// starts with the HAProxy router and finds that nginx running with routes.
///
/// Each endpoint in turn, with no moment where its port refuses connections: nginx reloads its route with
/// `reuseport` (the same socket gets `SO_REUSEPORT`), HAProxy starts on the same port beside it (HAProxy
/// binds with `SO_REUSEPORT`) with the same live slot and is checked, then nginx drops the route. Until then
/// both answer from the same slot. If nginx cannot share its socket, the fallback is the plain order: nginx
/// drops the route, HAProxy binds the freed port (it refuses connections meanwhile; measured and logged).
/// An endpoint HAProxy cannot take stays with (or goes back to) nginx; nginx is stopped only when it serves
/// nothing more.
public enum RouterTakeover {
    /// What the takeover did.
    public struct Outcome: Sendable, Equatable {
        /// Endpoints moved, in order.
        public var moved: [RouteSpec] = []
        /// By port of a moved endpoint: how long its port refused connections, ms (0 when HAProxy bound beside nginx).
        public var refusedMs: [Int: Double] = [:]
        /// Endpoints left with nginx, each with why HAProxy could not take it.
        public var kept: [(route: RouteSpec, reason: String)] = []
        /// Endpoints neither router serves now (HAProxy failed and nginx could not take it back).
        public var lost: [(route: RouteSpec, reason: String)] = []
        /// nginx was stopped (it served nothing more).
        public var nginxStopped = false

        public init() {}

        public static func == (a: Outcome, b: Outcome) -> Bool {
            a.moved == b.moved && a.refusedMs == b.refusedMs && a.kept.map(\.route) == b.kept.map(\.route)
                && a.lost.map(\.route) == b.lost.map(\.route) && a.nginxStopped == b.nginxStopped
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
    public static func run(nginx: any TakeoverSource, haproxy: any TakeoverTarget, now: (@Sendable () -> Double)? = nil,
                           log: @Sendable (String, [String: String]) -> Void) async -> Outcome {
        let now = now ?? { monotonicMs() }
        var out = Outcome()
        let todo = pending(nginxServing: nginx.isServing(), nginxRoutes: await nginx.routes(), haproxyRoutes: await haproxy.routes())
        for route in todo {
            guard let live = route.primary else { continue }
            var fields = ["model": route.modelName, "environment": route.environment, "port": String(route.listenPort),
                          "slot": live.slot.rawValue, "version": live.version]
            let shared: Bool
            do throws(RuntimeError) {
                try await nginx.shareListener(modelName: route.modelName, environment: route.environment)
                shared = true
            } catch {
                log("router takeover: nginx cannot share the port; HAProxy will bind it once nginx lets go",
                    fields.merging(["reason": error.message]) { a, _ in a })
                shared = false
            }
            if shared {
                // Both listen from here; nginx lets go only once HAProxy answers from the same slot.
                do throws(RuntimeError) {
                    try await haproxy.apply(route, portShared: true)
                    guard await haproxy.verify(listenPort: route.listenPort, serving: live.slot, timeoutMs: 5000) else {
                        throw RuntimeError(code: "switch_failed", message: "HAProxy on port \(route.listenPort) does not answer from \(live.slot)")
                    }
                } catch {
                    do throws(RuntimeError) {
                        try await haproxy.removeRoute(modelName: route.modelName, environment: route.environment)
                        out.kept.append((route, error.message))
                    } catch let cleanup {
                        out.kept.append((route, "\(error.message); HAProxy's half could not be removed either: \(cleanup.message)"))
                    }
                    continue
                }
                do throws(RuntimeError) {
                    try await nginx.removeRoute(modelName: route.modelName, environment: route.environment)
                } catch {
                    // nginx keeps it; HAProxy lets go of it so one router serves the home, as before.
                    do throws(RuntimeError) {
                        try await haproxy.removeRoute(modelName: route.modelName, environment: route.environment)
                        out.kept.append((route, "nginx could not drop the route: \(error.message)"))
                    } catch let cleanup {
                        out.kept.append((route, "nginx could not drop the route (\(error.message)) and HAProxy, serving it beside nginx from the same slot, could not let go of it: \(cleanup.message)"))
                    }
                    continue
                }
                out.moved.append(route)
                out.refusedMs[route.listenPort] = 0
                fields["refused_ms"] = "0"
                log("router takeover: endpoint moved from nginx to HAProxy", fields)
                continue
            }
            let start = now()
            do throws(RuntimeError) {
                try await nginx.removeRoute(modelName: route.modelName, environment: route.environment)
            } catch {
                out.kept.append((route, "nginx could not drop the route: \(error.message)"))
                continue
            }
            do throws(RuntimeError) {
                try await haproxy.apply(route, portShared: false)
                let window = now() - start
                guard await haproxy.verify(listenPort: route.listenPort, serving: live.slot, timeoutMs: 5000) else {
                    throw RuntimeError(code: "switch_failed", message: "HAProxy on port \(route.listenPort) does not answer from \(live.slot)")
                }
                out.moved.append(route)
                out.refusedMs[route.listenPort] = window
                fields["refused_ms"] = String(Int(window.rounded(.up)))
                log("router takeover: endpoint moved from nginx to HAProxy; its port refused connections meanwhile", fields)
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
        if !todo.isEmpty && out.kept.isEmpty && out.lost.isEmpty && nginxLeft.isEmpty {
            await nginx.stop()
            out.nginxStopped = true
        }
        return out
    }
}
