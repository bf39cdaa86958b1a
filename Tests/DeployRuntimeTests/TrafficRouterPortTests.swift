import DeployCore
@testable import DeployRuntime
import Glibc
import JSON
import Testing

/// The `TrafficRouter` port as the engine uses it, against the nginx router: a route is a desired set of
/// weighted backends; nginx takes one backend at 100 and refuses a split without touching what is live.
@Suite(.serialized, .enabled(if: TestEnv.hasNginx, "nginx not found (set MODEL_DEPLOYER_NGINX)"))
struct TrafficRouterPortTests {
    @Test func applyVerifyReadBackAndRefuseASplit() async throws {
        let home = try TempDir("router-port")
        let blue = try TestHTTPServer(body: "[1]")
        let green = try TestHTTPServer(body: "[2]")
        let router: any TrafficRouter = NginxRouter(home: home.path, nginx: TestEnv.nginx!)
        let nginx = router as! NginxRouter
        try await withCleanup({
            let port = await router.listenPort(preferred: freePort(preferred: nil), modelName: "iris", environment: "port")
            let toBlue = RouteSpec(modelName: "iris", environment: "port", listenPort: port,
                                   backends: [WeightedBackend(slot: "blue", address: SlotAddress(port: blue.port), version: "v1")])
            try await router.ensureRunning()
            try await router.apply(toBlue)
            #expect(await router.verify(listenPort: port, serving: "blue", timeoutMs: 5000))
            #expect(await router.verify(listenPort: port, serving: "green", timeoutMs: 200) == false)
            #expect(await router.route(modelName: "iris", environment: "port") == toBlue)
            #expect(await router.routes() == [toBlue])
            #expect(await router.stats(modelName: "iris", environment: "port") == nil)
            // The endpoint keeps its port once it has one.
            #expect(await router.listenPort(preferred: port, modelName: "iris", environment: "port") == port)

            // A split is refused and leaves the live route as it was.
            var split = toBlue
            split.backends = [WeightedBackend(slot: "blue", address: SlotAddress(port: blue.port), version: "v1", weight: 90),
                              WeightedBackend(slot: "green", address: SlotAddress(port: green.port), version: "v2", weight: 10)]
            do throws(RuntimeError) {
                try await router.apply(split)
                Issue.record("a split was accepted")
            } catch {
                #expect(error.code == "weights_unsupported")
            }
            #expect(await router.route(modelName: "iris", environment: "port") == toBlue)

            // A drained backend at 0 is dropped: the route is the one that takes the traffic.
            var switched = split
            switched.backends[0].weight = 0
            switched.backends[1].weight = 100
            try await router.apply(switched)
            #expect(await router.verify(listenPort: port, serving: "green", timeoutMs: 5000))
            #expect(await router.route(modelName: "iris", environment: "port")?.primary?.slot == "green")

            #expect(await router.needsRestart() == false)
            try await router.removeRoute(modelName: "iris", environment: "port")
            #expect(await router.route(modelName: "iris", environment: "port") == nil)
        }, cleanup: {
            await nginx.stop()
            blue.close()
            green.close()
        })
        home.remove()
    }
}
