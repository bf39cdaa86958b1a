import DeployCore
@testable import DeployRuntime
import Glibc
import JSON
import Testing

/// The router against real nginx, with tiny local HTTP servers standing in for slots.
@Suite(.serialized, .enabled(if: TestEnv.hasNginx, "nginx not found (set MODEL_DEPLOYER_NGINX)"))
struct RouterTests {
    @Test func routesSwitchesUnderLoadAndStops() async throws {
        let home = try TempDir("router")
        let blue = try TestHTTPServer(body: "[0,2,1]")
        let green = try TestHTTPServer(body: "[10,12,11]")
        let router = NginxRouter(home: home.path, nginx: TestEnv.nginx!)
        try await withCleanup({
            let port = freePort(preferred: nil)
            try await router.ensureRunning()
            #expect(router.isRunning())
            try await router.route(modelName: "iris", environment: "test", routerPort: port, upstreamPort: blue.port,
                                   slot: .blue, version: "v1")
            #expect(await router.verify(routerPort: port, expectSlot: .blue, timeoutMs: 5000))
            #expect(router.currentRoute(modelName: "iris", environment: "test")
                    == RouteInfo(modelName: "iris", environment: "test", routerPort: port, upstreamPort: blue.port, slot: .blue, version: "v1"))

            let r = try await HTTPClient.request(method: "POST", port: port, path: "/predict", body: Array("{}".utf8), timeoutMs: 2000)
            #expect(r.headers["x-model-deployer-slot"] == "blue")
            #expect(r.headers["x-model-deployer-version"] == "v1")
            #expect(String(decoding: r.body, as: UTF8.self) == "[0,2,1]")

            // Large bodies are buffered to the router's own temp directory (owned by the worker user).
            let big = [UInt8](repeating: UInt8(ascii: "x"), count: 300_000)
            let echoed = try await HTTPClient.request(method: "POST", port: port, path: "/echo", body: big, timeoutMs: 5000)
            #expect(echoed.status == 200)
            let sameBody = echoed.body == big
            #expect(sameBody, "large body came back with \(echoed.body.count) bytes")

            // A second model cannot take the same router port.
            await #expect(throws: RuntimeError.self) {
                try await router.route(modelName: "other", environment: "test", routerPort: port, upstreamPort: green.port,
                                       slot: .blue, version: "v1")
            }

            let stopper = LoadStopper()
            let load = Task { await Probes.steadyLoad(port: port, api: "predict", input: ["input": [[1, 2, 3, 4]]],
                                                      concurrency: 4, timeoutMs: 5000, until: stopper) }
            try await Task.sleep(for: .milliseconds(300))
            let t0 = ContinuousClock.now
            try await router.route(modelName: "iris", environment: "test", routerPort: port, upstreamPort: green.port,
                                   slot: .green, version: "v2")
            let switched = await router.verify(routerPort: port, expectSlot: .green, timeoutMs: 5000)
            let switchTime = ContinuousClock.now - t0
            // Once route() returns, no old worker accepts: every new connection reaches green.
            for _ in 0..<20 {
                let r = try await HTTPClient.request(method: "GET", port: port, path: "/x", timeoutMs: 2000)
                #expect(r.headers["x-model-deployer-slot"] == "green")
            }
            try await Task.sleep(for: .milliseconds(300))
            stopper.stop()
            let result = await load.value
            #expect(switched)
            #expect(result.failures == 0, "errors: \(result.errors)")
            #expect(result.answers["[0,2,1]", default: 0] > 0)
            #expect(result.answers["[10,12,11]", default: 0] > 0)
            print("router switch (test servers): \(switchTime) with \(result.requests) requests, \(result.failures) failed")

            try await router.removeRoute(modelName: "iris", environment: "test")
            #expect(router.currentRoute(modelName: "iris", environment: "test") == nil)
        }, cleanup: {
            await router.stop()
            blue.close()
            green.close()
        })
        #expect(!router.isRunning())
        home.remove()
    }
}
