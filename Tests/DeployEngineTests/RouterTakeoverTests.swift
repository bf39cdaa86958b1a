import DeployCore
import DeployRuntime
import Synchronization
import JSON
import DeploymentStore
@testable import DeployEngine
import Testing

/// The home's nginx of the release before, in memory.
final class FakeNginx: TakeoverSource {
    struct State {
        var running = true
        var routes: [RouteSpec] = []
        var failRemove = false
        var failApply = false
        var failShare = false
        /// Routes listening with SO_REUSEPORT.
        var shared: Set<Int> = []
        /// Everything done to it, in order.
        var events: [String] = []
        var stopped = false
        var removed: [String] = []
    }
    let state: Mutex<State>
    init(_ routes: [RouteSpec], running: Bool = true) { state = Mutex(State(running: running, routes: routes)) }

    func isServing() -> Bool { state.withLock { $0.running } }
    func routes() async -> [RouteSpec] { state.withLock { $0.routes } }
    func shareListener(modelName: String, environment: String) async throws(RuntimeError) {
        try state.withLock { (s: inout State) throws(RuntimeError) in
            if s.failShare { throw RuntimeError(code: "router_config_invalid", message: "nginx -t failed: reuseport") }
            for r in s.routes where r.modelName == modelName && r.environment == environment { s.shared.insert(r.listenPort) }
            s.events.append("share \(environment)")
        }
    }
    func removeRoute(modelName: String, environment: String) async throws(RuntimeError) {
        try state.withLock { (s: inout State) throws(RuntimeError) in
            if s.failRemove { throw RuntimeError(code: "nginx_failed", message: "reload failed") }
            s.routes.removeAll { $0.modelName == modelName && $0.environment == environment }
            s.removed.append("\(modelName)/\(environment)")
            s.events.append("drop \(environment)")
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

/// HAProxy in memory: it binds a port only when nginx no longer holds it, or holds it with SO_REUSEPORT and the
/// takeover asked to bind beside it.
final class FakeHAProxy: TakeoverTarget {
    let router = FakeRouter()
    let nginx: FakeNginx
    init(_ nginx: FakeNginx) { self.nginx = nginx }
    func routes() async -> [RouteSpec] { await router.routes() }
    func apply(_ route: RouteSpec, portShared: Bool) async throws(RuntimeError) {
        let held = nginx.state.withLock { s in s.routes.contains { $0.listenPort == route.listenPort } }
        let shared = nginx.state.withLock { $0.shared.contains(route.listenPort) }
        if held && !(portShared && shared) { throw RuntimeError(code: "port_in_use", message: "router port \(route.listenPort) is in use") }
        try await router.apply(route)
        nginx.state.withLock { $0.events.append("haproxy \(route.environment)\(portShared ? " shared" : "")") }
    }
    func verify(listenPort: Int, serving slot: SlotID, timeoutMs: Int) async -> Bool {
        await router.verify(listenPort: listenPort, serving: slot, timeoutMs: timeoutMs)
    }
    func removeRoute(modelName: String, environment: String) async throws(RuntimeError) {
        try await router.removeRoute(modelName: modelName, environment: environment)
    }
}

/// Log lines a takeover wrote.
final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
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
    let logged = LogLines()
    var log: @Sendable (String, [String: String]) -> Void {
        let lines = logged
        return { msg, fields in lines.append(msg + " " + (fields["port"] ?? "")) }
    }

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
        let haproxy = FakeHAProxy(nginx)
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, log: log)
        #expect(out.moved == [b, a])
        #expect(out.kept.isEmpty && out.lost.isEmpty)
        #expect(out.nginxStopped)
        // HAProxy binds beside nginx before nginx lets go: the port never refuses a connection.
        #expect(out.refusedMs == [9001: 0, 9002: 0])
        #expect(nginx.state.withLock { $0.events } == ["share prod", "haproxy prod shared", "drop prod", "share qa", "haproxy qa shared", "drop qa"])
        #expect(await haproxy.router.route(modelName: "iris", environment: "qa") == a)
        #expect(await haproxy.router.route(modelName: "iris", environment: "prod") == b)
        #expect(nginx.state.withLock { $0.stopped && $0.routes.isEmpty })
        #expect(logged.all.count == 2)
    }

    @Test func anEndpointHAProxyCannotTakeGoesBackToNginxWhichKeepsRunning() async {
        let a = nginxRoute("qa", port: 9001)
        let nginx = FakeNginx([a])
        let haproxy = FakeHAProxy(nginx)
        haproxy.router.state.withLock { $0.failApply = true }
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, log: log)
        #expect(out.moved.isEmpty)
        #expect(out.kept.map(\.route) == [a])
        #expect(out.kept.first?.reason.contains("nginx -t failed") == true)
        #expect(!out.nginxStopped)
        #expect(nginx.state.withLock { $0.routes == [a] && !$0.stopped })
        #expect(await haproxy.router.routes().isEmpty)
    }

    @Test func anEndpointHAProxyTakesButDoesNotServeGoesBackToNginx() async {
        let a = nginxRoute("qa", port: 9001)
        let nginx = FakeNginx([a])
        let haproxy = FakeHAProxy(nginx)
        haproxy.router.state.withLock { $0.failVerify = true }
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, log: log)
        #expect(out.kept.map(\.route) == [a])
        #expect(await haproxy.router.routes().isEmpty)
        #expect(nginx.state.withLock { $0.routes == [a] && !$0.stopped })
    }

    @Test func nginxThatCannotDropARouteKeepsItAndHAProxyLetsGoOfIt() async {
        let a = nginxRoute("qa", port: 9001), b = nginxRoute("prod", port: 9002)
        let nginx = FakeNginx([a, b])
        nginx.state.withLock { $0.failRemove = true }
        let haproxy = FakeHAProxy(nginx)
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, log: log)
        #expect(out.kept.map(\.route) == [b, a])
        #expect(await haproxy.router.routes().isEmpty)
        #expect(nginx.state.withLock { $0.routes.count == 2 && !$0.stopped })
        #expect(!out.nginxStopped)
    }

    @Test func anEndpointNeitherRouterCanServeIsReportedLost() async {
        let a = nginxRoute("qa", port: 9001)
        let nginx = FakeNginx([a])
        nginx.state.withLock { $0.failApply = true; $0.failShare = true }
        let haproxy = FakeHAProxy(nginx)
        haproxy.router.state.withLock { $0.failApply = true }
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, log: log)
        #expect(out.lost.map(\.route) == [a])
        #expect(out.lost.first?.reason.contains("could not be given back to nginx") == true)
        #expect(!out.nginxStopped)
    }

    @Test func nginxThatCannotShareItsPortHandsItOverWithARefusedMomentMeasured() async {
        let a = nginxRoute("qa", port: 9001)
        let nginx = FakeNginx([a])
        nginx.state.withLock { $0.failShare = true }
        let haproxy = FakeHAProxy(nginx)
        let clock = StepClock(step: 40)
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, now: { clock.read() }, log: log)
        #expect(out.moved == [a])
        #expect(out.refusedMs == [9001: 40])
        #expect(out.nginxStopped)
        #expect(nginx.state.withLock { $0.events } == ["drop qa", "haproxy qa"])
        #expect(logged.all.contains { $0.hasPrefix("router takeover: nginx cannot share the port") })
    }

    @Test func withoutASharedPortAFailedHAProxyGivesTheEndpointBackToNginx() async {
        let a = nginxRoute("qa", port: 9001)
        let nginx = FakeNginx([a])
        nginx.state.withLock { $0.failShare = true }
        let haproxy = FakeHAProxy(nginx)
        haproxy.router.state.withLock { $0.failApply = true }
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, log: log)
        #expect(out.kept.map(\.route) == [a])
        #expect(nginx.state.withLock { $0.routes == [a] && !$0.stopped })
        #expect(await haproxy.router.routes().isEmpty)
    }

    @Test func aHomeWithoutARunningNginxIsNotTouched() async {
        let a = nginxRoute("qa", port: 9001)
        let nginx = FakeNginx([a], running: false)
        let haproxy = FakeHAProxy(nginx)
        let out = await RouterTakeover.run(nginx: nginx, haproxy: haproxy, log: log)
        #expect(out == RouterTakeover.Outcome())
        #expect(nginx.state.withLock { $0.removed.isEmpty && !$0.stopped })
        #expect(haproxy.router.state.withLock { $0.applied.isEmpty })
    }

    /// The move is recorded in the ledger: a `router_takeover` event on the deployment live at each moved
    /// endpoint, with its port, slot and refused time; an endpoint with nothing live is only logged.
    @Test func theTakeoverIsRecordedOnTheLiveDeployment() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        h.engine.recordTakeover([
            TakeoverRecord(modelName: "iris", environment: "qa", port: 18_500, slot: v1.slot!, refusedMs: 0),
            TakeoverRecord(modelName: "iris", environment: "prod", port: 18_501, slot: "blue", refusedMs: 40),
        ])
        let events = try h.store.events(deploymentId: v1.deploymentId).filter { $0.step == "router_takeover" }
        #expect(events.count == 1)
        #expect(events.first?.data["port"] == 18_500 && events.first?.data["from"] == "nginx" && events.first?.data["to"] == "haproxy")
        #expect(events.first?.data["slot"]?.stringValue == v1.slot)
        #expect(events.first?.message.contains("no connection refused") == true)
        #expect(try h.store.deployments(withStatuses: [.live]).count == 1)
    }
}
