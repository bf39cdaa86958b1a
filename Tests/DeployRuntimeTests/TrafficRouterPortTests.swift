import DeployCore
@testable import DeployRuntime
import Glibc
import JSON
import Testing

/// The `TrafficRouter` port as the engine uses it, run against every router that implements it: the same
/// cases, with each router's declared capabilities (a weighted split, per-backend counters) asserted both
/// ways, so a router that claims less than it does fails as surely as one that does less than it claims.
@Suite("TrafficRouter conformance: nginx", .serialized, .enabled(if: TestEnv.hasNginx, "nginx not found (set MODEL_DEPLOYER_NGINX)"))
struct NginxTrafficRouterConformanceTests {
    @Test func applyVerifyAndReadBack() async throws { try await RouterConformance.applyVerifyReadBack(.nginx) }
    @Test func switchToAnotherBackend() async throws { try await RouterConformance.switchBackend(.nginx) }
    @Test func weightedSplit() async throws { try await RouterConformance.weightedSplit(.nginx) }
    @Test func portHeldByAnotherEndpoint() async throws { try await RouterConformance.portInUse(.nginx) }
    @Test func countersOrNone() async throws { try await RouterConformance.counters(.nginx) }
    @Test func restartAfterTheRouterIsKilled() async throws { try await RouterConformance.restartAfterKill(.nginx) }
    @Test func removeRoute() async throws { try await RouterConformance.remove(.nginx) }
}

@Suite("TrafficRouter conformance: HAProxy", .serialized,
       .enabled(if: HAProxyTestEnv.runLive, "haproxy not found (install it, or set MODEL_DEPLOYER_HAPROXY)"))
struct HAProxyTrafficRouterConformanceTests {
    @Test func applyVerifyAndReadBack() async throws { try await RouterConformance.applyVerifyReadBack(.haproxy) }
    @Test func switchToAnotherBackend() async throws { try await RouterConformance.switchBackend(.haproxy) }
    @Test func weightedSplit() async throws { try await RouterConformance.weightedSplit(.haproxy) }
    @Test func portHeldByAnotherEndpoint() async throws { try await RouterConformance.portInUse(.haproxy) }
    @Test func countersOrNone() async throws { try await RouterConformance.counters(.haproxy) }
    @Test func restartAfterTheRouterIsKilled() async throws { try await RouterConformance.restartAfterKill(.haproxy) }
    @Test func removeRoute() async throws { try await RouterConformance.remove(.haproxy) }

    @Test func sharesMapToHAProxyWeightsAndBack() {
        #expect(HAProxyTrafficRouter.haproxyWeight(share: 0) == 0)
        #expect(HAProxyTrafficRouter.haproxyWeight(share: 1) == 3)
        #expect(HAProxyTrafficRouter.haproxyWeight(share: 50) == 128)
        #expect(HAProxyTrafficRouter.haproxyWeight(share: 100) == 256)
        for share in 0...100 {
            #expect(HAProxyTrafficRouter.share(haproxyWeight: HAProxyTrafficRouter.haproxyWeight(share: share)) == share)
        }
        // A weight set outside the port (by hand, say) still reads as a share with traffic.
        #expect(HAProxyTrafficRouter.share(haproxyWeight: 1) == 1)
    }
}

/// One router under test, with what it claims to support.
struct RouterUnderTest {
    let router: any TrafficRouter
    /// Splits traffic by weight (else it refuses a split with `weights_unsupported`).
    let splits: Bool
    /// Keeps per-backend counters (else `stats` is nil).
    let counts: Bool
    /// Kills the router's process(es) the way a crash would.
    let kill: @Sendable () -> Void
    let stop: @Sendable () async -> Void
}

enum RouterConformance {
    static let model = "iris"
    static let env = "conf"

    /// A fresh home, the router of `kind` on it, two slot stand-ins (blue answers `[1]`, green `[2]`),
    /// and cleanup of all of them whatever happens.
    static func with(_ kind: RouterKind,
                     _ body: (RouterUnderTest, _ blue: TestHTTPServer, _ green: TestHTTPServer, _ port: Int) async throws -> Void) async throws {
        let home = try TempDir("router-conf")
        let blue = try TestHTTPServer(body: "[1]")
        let green = try TestHTTPServer(body: "[2]")
        let under: RouterUnderTest
        switch kind {
        case .nginx:
            let nginx = NginxRouter(home: home.path, nginx: try #require(TestEnv.nginx))
            under = RouterUnderTest(router: nginx, splits: false, counts: false,
                                    kill: { if let pid = nginx.runningPid() { Glibc.kill(pid, SIGKILL) } },
                                    stop: { await nginx.stop() })
        case .haproxy:
            let exe = try #require(HAProxyTestEnv.haproxy, "haproxy is missing and CI=true: install haproxy (scripts/setup.sh)")
            let ha = HAProxyTrafficRouter(HAProxyRouter(home: home.path, haproxy: exe))
            under = RouterUnderTest(router: ha, splits: true, counts: true,
                                    kill: { if let pid = ha.haproxy.runningPid(model: model, environment: env) { Glibc.kill(pid, SIGKILL) } },
                                    stop: { await ha.stop() })
        }
        try await withCleanup({
            let port = await under.router.listenPort(preferred: freePort(preferred: nil), modelName: model, environment: env)
            try await under.router.ensureRunning()
            try await body(under, blue, green, port)
        }, cleanup: {
            await under.stop()
            blue.close()
            green.close()
        })
        home.remove()
    }

    static func spec(_ port: Int, _ backends: [(TestHTTPServer, SlotID, Int)]) -> RouteSpec {
        RouteSpec(modelName: model, environment: env, listenPort: port,
                  backends: backends.enumerated().map { i, b in
                      WeightedBackend(slot: b.1, address: SlotAddress(port: b.0.port), version: "v\(i + 1)", weight: b.2)
                  })
    }

    /// Which slot answered each of `n` requests sent through the endpoint (one connection each).
    static func answers(_ port: Int, _ n: Int) async -> [String: Int] {
        var seen: [String: Int] = [:]
        for _ in 0..<n {
            let r = try? await HTTPClient.request(method: "POST", port: port, path: "/predict", body: Array("{}".utf8), timeoutMs: 5000)
            seen[r.flatMap { $0.isSuccess ? $0.headers["x-model-deployer-slot"] : nil } ?? "failed", default: 0] += 1
        }
        return seen
    }

    static func applyVerifyReadBack(_ kind: RouterKind) async throws {
        try await with(kind) { r, blue, _, port in
            let toBlue = spec(port, [(blue, "blue", 100)])
            try await r.router.apply(toBlue)
            #expect(await r.router.verify(listenPort: port, serving: "blue", timeoutMs: 5000))
            #expect(await r.router.verify(listenPort: port, serving: "green", timeoutMs: 200) == false)
            #expect(await r.router.route(modelName: model, environment: env) == toBlue)
            #expect(await r.router.routes() == [toBlue])
            #expect(await r.router.route(modelName: model, environment: "other") == nil)
            #expect(await answers(port, 10) == ["blue": 10])
            // The endpoint keeps its port once it has one.
            #expect(await r.router.listenPort(preferred: port, modelName: model, environment: env) == port)
            #expect(await r.router.needsRestart() == false)
            // Applying the same route again changes nothing.
            try await r.router.apply(toBlue)
            #expect(await r.router.route(modelName: model, environment: env) == toBlue)
        }
    }

    /// A blue-green switch: the new backend at 100, the old one at 0 (drained). A router either keeps the
    /// old one warm at 0 or drops it; either way only the new one takes traffic, and switching back works.
    static func switchBackend(_ kind: RouterKind) async throws {
        try await with(kind) { r, blue, green, port in
            try await r.router.apply(spec(port, [(blue, "blue", 100)]))
            try await r.router.apply(spec(port, [(blue, "blue", 0), (green, "green", 100)]))
            #expect(await r.router.verify(listenPort: port, serving: "green", timeoutMs: 5000))
            let read = try #require(await r.router.route(modelName: model, environment: env))
            #expect(read.primary?.slot == "green")
            #expect(read.backends.filter { $0.weight > 0 }.map(\.slot) == ["green"])
            #expect(await answers(port, 10) == ["green": 10])
            try await r.router.apply(spec(port, [(blue, "blue", 100)]))
            #expect(await r.router.verify(listenPort: port, serving: "blue", timeoutMs: 5000))
            #expect(await answers(port, 10) == ["blue": 10])
        }
    }

    /// 75/25: a router that splits serves it (read back exactly, and counted at the endpoint); one that
    /// does not refuses it with `weights_unsupported` and leaves the live route as it was.
    static func weightedSplit(_ kind: RouterKind) async throws {
        try await with(kind) { r, blue, green, port in
            let toBlue = spec(port, [(blue, "blue", 100)])
            try await r.router.apply(toBlue)
            let split = spec(port, [(blue, "blue", 75), (green, "green", 25)])
            if r.splits {
                try await r.router.apply(split)
                #expect(await r.router.route(modelName: model, environment: env) == split)
                let seen = await answers(port, 200)
                #expect(seen["failed"] == nil)
                // Weighted round robin: 150/50 give or take the position the previous requests left it in.
                #expect(abs((seen["blue"] ?? 0) - 150) <= 2, "answers: \(seen)")
                #expect(abs((seen["green"] ?? 0) - 50) <= 2, "answers: \(seen)")
                // Out of the port's range, or nobody taking traffic: refused, the split stays.
                for bad in [spec(port, [(blue, "blue", 101)]), spec(port, [(blue, "blue", 0), (green, "green", 0)])] {
                    do throws(RuntimeError) {
                        try await r.router.apply(bad)
                        Issue.record("weights \(bad.backends.map(\.weight)) were accepted")
                    } catch {
                        #expect(error.code == "invalid_weights")
                    }
                }
                #expect(await r.router.route(modelName: model, environment: env) == split)
            } else {
                do throws(RuntimeError) {
                    try await r.router.apply(split)
                    Issue.record("a split was accepted")
                } catch {
                    #expect(error.code == "weights_unsupported")
                }
                #expect(await r.router.route(modelName: model, environment: env) == toBlue)
                #expect(await answers(port, 10) == ["blue": 10])
            }
        }
    }

    /// A second endpoint cannot take a port the first one listens on; the first keeps serving.
    static func portInUse(_ kind: RouterKind) async throws {
        try await with(kind) { r, blue, green, port in
            try await r.router.apply(spec(port, [(blue, "blue", 100)]))
            var other = spec(port, [(green, "green", 100)])
            other.environment = "other"
            do throws(RuntimeError) {
                try await r.router.apply(other)
                Issue.record("two endpoints on one port")
            } catch {
                #expect(error.code == "port_in_use")
            }
            #expect(await r.router.route(modelName: model, environment: "other") == nil)
            // Asked for that port, the other endpoint is offered a different one.
            #expect(await r.router.listenPort(preferred: port, modelName: model, environment: "other") != port)
            #expect(await answers(port, 5) == ["blue": 5])
        }
    }

    /// Counters per backend (requests sent through the endpoint, no errors), or nil for a router without.
    static func counters(_ kind: RouterKind) async throws {
        try await with(kind) { r, blue, green, port in
            try await r.router.apply(spec(port, [(blue, "blue", 0), (green, "green", 100)]))
            #expect(await r.router.verify(listenPort: port, serving: "green", timeoutMs: 5000))
            let before = await r.router.stats(modelName: model, environment: env)
            #expect(await answers(port, 20) == ["green": 20])
            let after = await r.router.stats(modelName: model, environment: env)
            if r.counts {
                let b = try #require(before), a = try #require(after)
                func row(_ rows: [BackendStats], _ slot: SlotID) -> BackendStats? { rows.first { $0.slot == slot } }
                #expect(Set(a.map(\.slot)) == ["blue", "green"])
                #expect((row(a, "green")?.requests ?? 0) - (row(b, "green")?.requests ?? 0) == 20)
                #expect(row(a, "blue")?.requests == row(b, "blue")?.requests)
                #expect(a.allSatisfy { $0.errors == 0 })
                #expect(await r.router.stats(modelName: model, environment: "other") == nil)
            } else {
                #expect(before == nil)
                #expect(after == nil)
            }
        }
    }

    /// A killed router is reported by `needsRestart`, and `ensureRunning` brings back the same route.
    static func restartAfterKill(_ kind: RouterKind) async throws {
        try await with(kind) { r, blue, green, port in
            let route = spec(port, [(blue, "blue", 0), (green, "green", 100)])
            try await r.router.apply(route)
            #expect(await r.router.verify(listenPort: port, serving: "green", timeoutMs: 5000))
            r.kill()
            var down = false
            for _ in 0..<200 where !down {
                down = await r.router.needsRestart()
                if !down { await pause(milliseconds: 10) }
            }
            #expect(down)
            try await r.router.ensureRunning()
            #expect(await r.router.needsRestart() == false)
            #expect(await r.router.verify(listenPort: port, serving: "green", timeoutMs: 5000))
            #expect(await r.router.route(modelName: model, environment: env)?.primary?.slot == "green")
            #expect(await answers(port, 5) == ["green": 5])
        }
    }

    static func remove(_ kind: RouterKind) async throws {
        try await with(kind) { r, blue, _, port in
            try await r.router.apply(spec(port, [(blue, "blue", 100)]))
            try await r.router.removeRoute(modelName: model, environment: env)
            #expect(await r.router.route(modelName: model, environment: env) == nil)
            #expect(await r.router.routes().isEmpty)
            #expect(await r.router.needsRestart() == false)
            #expect(await answers(port, 1)["failed"] == 1)
            // Removing what is not there does nothing.
            try await r.router.removeRoute(modelName: model, environment: env)
            do throws(RuntimeError) {
                try await r.router.removeRoute(modelName: "bad name", environment: env)
                Issue.record("an invalid name was accepted")
            } catch {
                #expect(error.code == "invalid_name")
            }
        }
    }
}
