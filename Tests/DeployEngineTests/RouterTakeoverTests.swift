import DeployCore
import DeployRuntime
import Synchronization
import Testing

/// The home's nginx of the release before, in memory.
final class FakeNginx: TakeoverSource {
    struct State {
        var running = true
        var routes: [RouteSpec] = []
        var failRemove = false
        var failApply = false
        var stopped = false
        var removed: [String] = []
    }
    let state: Mutex<State>
    init(_ routes: [RouteSpec], running: Bool = true) { state = Mutex(State(running: running, routes: routes)) }

    func isServing() -> Bool { state.withLock { $0.running } }
    func routes() async -> [RouteSpec] { state.withLock { $0.routes } }
    func removeRoute(modelName: String, environment: String) async throws(RuntimeError) {
        try state.withLock { (s: inout State) throws(RuntimeError) in
            if s.failRemove { throw RuntimeError(code: "nginx_failed", message: "reload failed") }
            s.routes.removeAll { $0.modelName == modelName && $0.environment == environment }
            s.removed.append("\(modelName)/\(environment)")
        }
    }
    func apply(_ route: RouteSpec) async throws(RuntimeError) {
        try state.withLock { (s: inout State) throws(RuntimeError) in
            if s.failApply { throw RuntimeError(code: "port_in_use", message: "router port \(route.listenPort) is in use") }
            s.routes.append(route)
        }
    }
    func stop() async { state.withLock { $0.running = false; $0.stopped = true } }
}

/// A manual clock: each read moves it on by `step` ms.
final class StepClock: Sendable {
    let t = Mutex(0.0)
    let step: Double
    init(step: Double) { self.step = step }
    func read() -> Double { t.withLock { $0 += step; return $0 } }
}

private func nginxRoute(_ env: String, port: Int, slot: String = "blue", version: String = "v1") -> RouteSpec {
    RouteSpec(modelName: "iris", environment: env, listenPort: port,
              backends: [WeightedBackend(slot: SlotID(rawValue: slot), address: SlotAddress(port: port + 100), version: version, weight: 100)])
}

@Suite("Router takeover: nginx to HAProxy at start-up")
struct RouterTakeoverTests {
    let logged = Mutex<[String]>([])
    func log(_ msg: String, _ fields: [String: String]) { logged.withLock { $0.append(msg + " " + (fields["port"] ?? "")) } }

    @Test func onlyARunningNginxsRoutesThatHAProxyDoesNotServeArePending() {
        let a = nginxRoute("qa", port: 9001), b = nginxRoute("prod", port: 9002)
        #expect(RouterTakeover.pending(nginxServing: false, nginxRoutes: [a, b], haproxyRoutes: []).isEmpty)
        #expect(RouterTakeover.pending(nginxServing: true, nginxRoutes: [], haproxyRoutes: []).isEmpty)
        #expect(RouterTakeover.pending(nginxServing: true, nginxRoutes: [a, b], haproxyRoutes: []) == [b, a])
        #expect(RouterTakeover.pending(nginxServing: true, nginxRoutes: [a, b], haproxyRoutes: [a]) == [b])
        // Same endpoint on another port: HAProxy does not serve nginx's port, so it is still to move.
        var moved = a
        moved.listenPort = 9005
        #expect(RouterTakeover.pending(nginxServing: true, nginxRoutes: [a], haproxyRoutes: [moved]) == [a])
    }

    @Test func everyEndpointMovesWithItsPortSlotAndVersionThenNginxStops() async {
        let a = nginxRoute("qa", port: 9001, slot: "green", version: "v7"), b = nginxRoute("prod", port: 9002)
        let nginx = FakeNginx([a, b])
        let haproxy = FakeRouter()
        let clock = StepClock(step: 40)
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, now: { clock.read() }, log: log)
        #expect(out.moved == [b, a])
        #expect(out.kept.isEmpty && out.lost.isEmpty)
        #expect(out.nginxStopped)
        #expect(out.movedPorts == [9001: 40, 9002: 40])
        #expect(await haproxy.route(modelName: "iris", environment: "qa") == a)
        #expect(await haproxy.route(modelName: "iris", environment: "prod") == b)
        #expect(nginx.state.withLock { $0.stopped && $0.routes.isEmpty })
        #expect(logged.withLock { $0.count } == 2)
    }

    @Test func anEndpointHAProxyCannotTakeGoesBackToNginxWhichKeepsRunning() async {
        let a = nginxRoute("qa", port: 9001)
        let nginx = FakeNginx([a])
        let haproxy = FakeRouter()
        haproxy.state.withLock { $0.failApply = true }
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, log: log)
        #expect(out.moved.isEmpty)
        #expect(out.kept.map(\.route) == [a])
        #expect(out.kept.first?.reason.contains("nginx -t failed") == true)
        #expect(!out.nginxStopped)
        #expect(nginx.state.withLock { $0.routes == [a] && !$0.stopped })
        #expect(await haproxy.routes().isEmpty)
    }

    @Test func anEndpointHAProxyTakesButDoesNotServeGoesBackToNginx() async {
        let a = nginxRoute("qa", port: 9001)
        let nginx = FakeNginx([a])
        let haproxy = FakeRouter()
        haproxy.state.withLock { $0.failVerify = true }
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, log: log)
        #expect(out.kept.map(\.route) == [a])
        #expect(await haproxy.routes().isEmpty)
        #expect(nginx.state.withLock { $0.routes == [a] && !$0.stopped })
    }

    @Test func nginxThatCannotDropARouteKeepsItAndHAProxyIsNotTouched() async {
        let a = nginxRoute("qa", port: 9001), b = nginxRoute("prod", port: 9002)
        let nginx = FakeNginx([a, b])
        nginx.state.withLock { $0.failRemove = true }
        let haproxy = FakeRouter()
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, log: log)
        #expect(out.kept.map(\.route) == [b, a])
        #expect(haproxy.state.withLock { $0.applied.isEmpty })
        #expect(!out.nginxStopped)
    }

    @Test func anEndpointNeitherRouterCanServeIsReportedLost() async {
        let a = nginxRoute("qa", port: 9001)
        let nginx = FakeNginx([a])
        nginx.state.withLock { $0.failApply = true }
        let haproxy = FakeRouter()
        haproxy.state.withLock { $0.failApply = true }
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, log: log)
        #expect(out.lost.map(\.route) == [a])
        #expect(out.lost.first?.reason.contains("could not be given back to nginx") == true)
        #expect(!out.nginxStopped)
    }

    @Test func aHomeWithoutARunningNginxIsNotTouched() async {
        let a = nginxRoute("qa", port: 9001)
        let nginx = FakeNginx([a], running: false)
        let haproxy = FakeRouter()
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, log: log)
        #expect(out == RouterTakeover.Outcome())
        #expect(nginx.state.withLock { $0.removed.isEmpty && !$0.stopped })
        #expect(haproxy.state.withLock { $0.applied.isEmpty })
    }
}
