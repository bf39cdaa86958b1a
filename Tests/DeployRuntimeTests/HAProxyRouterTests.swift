import DeployCore
@testable import DeployRuntime
import Foundation
import Glibc
import Synchronization
import Testing

/// Where the HAProxy tests find haproxy, and whether a missing one may be skipped.
enum HAProxyTestEnv {
    /// `MODEL_DEPLOYER_HAPROXY`, else /usr/sbin/haproxy, else nil.
    static var haproxy: String? {
        if let h = ProcessInfo.processInfo.environment["MODEL_DEPLOYER_HAPROXY"], !h.isEmpty { return h }
        for c in ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"] where access(c, X_OK) == 0 { return c }
        return nil
    }

    /// Under CI a missing haproxy fails the suite instead of skipping it.
    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// Runs the live suite when haproxy exists, and under CI always (so a missing haproxy fails there).
    static var runLive: Bool { haproxy != nil || isCI }
}

/// The HAProxy router against real HAProxy 2.6 and real HTTP servers standing in for slots.
@Suite(.serialized, .enabled(if: HAProxyTestEnv.runLive, "haproxy not found (install it, or set MODEL_DEPLOYER_HAPROXY)"))
struct HAProxyRouterTests {
    /// A fresh home, a router on it, `count` slot servers answering `[i]`, and cleanup of all of them.
    func withRouter(_ count: Int, drainTimeoutMs: Int = 30_000,
                    _ body: (HAProxyRouter, [TestHTTPServer], TempDir) async throws -> Void) async throws {
        let haproxy = try #require(HAProxyTestEnv.haproxy, "haproxy is missing and CI=true: install haproxy (scripts/setup.sh)")
        let home = try TempDir("ha")
        let servers = try (0..<count).map { i in try TestHTTPServer(body: "[\(i)]") }
        let router = HAProxyRouter(home: home.path, haproxy: haproxy, drainTimeoutMs: drainTimeoutMs)
        try await withCleanup({ try await body(router, servers, home) }, cleanup: {
            await router.stop()
            for s in servers { s.close() }
        })
        #expect(!router.isRunning())
        #expect(router.strayProcesses().isEmpty)
        home.remove()
    }

    /// `n` sequential requests on one keep-alive connection: answers per slot, failures, connections opened.
    func sequential(_ port: Int, _ n: Int, path: String = "/predict") async -> (slots: [String: Int], failures: Int, connects: Int) {
        await Blocking.run {
            let c = KeepAliveHTTPConnection(port: port)
            var slots: [String: Int] = [:]
            var failures = 0
            for _ in 0..<n {
                do throws(RuntimeError) {
                    let r = try c.request(path: path, body: Array("{}".utf8))
                    if r.isSuccess { slots[r.headers["x-model-deployer-slot"] ?? "-", default: 0] += 1 } else { failures += 1 }
                } catch {
                    failures += 1
                }
            }
            return (slots, failures, c.connects)
        }
    }

    func backends(_ servers: [TestHTTPServer], _ weights: [Int]) -> [HAProxyServer] {
        let names = ["blue", "green", "c-3"]
        return zip(servers, weights).enumerated().map { i, sw in
            HAProxyServer(name: names[i], port: sw.0.port, weight: sw.1, version: "v\(i + 1)")
        }
    }

    @Test func theGoldenConfigPassesHAProxysOwnCheck() throws {
        let haproxy = try #require(HAProxyTestEnv.haproxy, "haproxy is missing and CI=true: install haproxy (scripts/setup.sh)")
        let route = HAProxyConfigTests().route
        let dir = try TempDir("hacfg")
        defer { dir.remove() }
        let prefix = dir.path + "/router"
        try TempDir.write(HAProxyConfig.mapPath(prefix: prefix, route: route), HAProxyConfig.renderMap(route))
        let config = HAProxyConfig.processFiles(prefix: prefix, port: route.port).config
        try TempDir.write(config, try HAProxyConfig.render(prefix: prefix, route: route, logPort: 51000))
        let r = try ProcessLauncher.runSync(executable: haproxy, arguments: ["-c", "-f", config],
                                            environment: ProcessLauncher.currentEnvironment(), timeoutMs: 10_000)
        #expect(r.status == 0, "\(r.output)")
        #expect(!r.output.contains("WARNING"), "\(r.output)")
    }

    @Test func withoutRoutesNothingRunsAndNothingNeedsRepair() async throws {
        try await withRouter(0) { router, _, home in
            try await router.ensureRunning()
            #expect(!router.isRunning())
            #expect(!router.needsRepair)
            #expect(try router.routes().isEmpty)
            // A state file that is not ours is reported, never silently replaced.
            try TempDir.write(home.path + "/router/routes.json", "{\"format\":9}")
            await #expect(throws: RuntimeError.self) { try await router.ensureRunning() }
            do {
                try await router.setBackends(model: "iris", environment: "test", port: freePort(preferred: nil), backends: [
                    HAProxyServer(name: "blue", port: 1, weight: 1, version: "v")])
                Issue.record("setBackends accepted a home whose routes.json is unreadable")
            } catch {
                #expect((error as? RuntimeError)?.code == "router_state_invalid")
            }
            #expect(FileIO.readString(home.path + "/router/routes.json") == "{\"format\":9}")
        }
    }

    @Test func weightsSplitNinetyTenOnOneKeepAliveConnection() async throws {
        try await withRouter(2) { router, servers, home in
            let port = freePort(preferred: nil)
            let first = try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [100, 0]))
            #expect(first.startedProcess)
            #expect(await router.verify(port: port, expectSlot: "blue", timeoutMs: 5000))
            let pid = router.runningPid(model: "iris", environment: "test")
            let change = try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [90, 10]))
            #expect(!change.startedProcess)
            #expect(change.steps == [.setWeight(server: "green", weight: 10), .setWeight(server: "blue", weight: 90)])
            #expect(router.runningPid(model: "iris", environment: "test") == pid, "a weight change must not restart HAProxy")
            let r = await sequential(port, 1000)
            #expect(r.failures == 0)
            #expect(r.connects == 1, "keep-alive: one TCP connection for all requests")
            let blueShare = Double(r.slots["blue", default: 0]) / 10
            #expect(abs(blueShare - 90) <= 2, "blue served \(blueShare)% at weight 90: \(r.slots)")
            #expect(r.slots["blue", default: 0] + r.slots["green", default: 0] == 1000)
            // The answer names the slot and its version.
            let one = try await HTTPClient.request(method: "GET", port: port, path: "/x", timeoutMs: 2000)
            let slot = try #require(one.headers["x-model-deployer-slot"])
            #expect(one.headers["x-model-deployer-version"] == (slot == "blue" ? "v1" : "v2"))
            #expect(router.route(model: "iris", environment: "test")?.backends.map(\.weight) == [90, 10])
            #expect(FileIO.readString(home.path + "/router/routes.json")?.contains("\"weight\":90") == true)
        }
    }

    @Test func switchZeroToHundredUnderLoadLosesNothing() async throws {
        try await withRouter(2) { router, servers, _ in
            let port = freePort(preferred: nil)
            try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [100, 0]))
            let load = KeepAliveLoad(port: port, clients: 4)
            let before = load.snapshot()
            await load.waitForRequests(400, after: before)
            let change = try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [0, 100]))
            #expect(change.steps == [.setWeight(server: "green", weight: 100), .setWeight(server: "blue", weight: 0)])
            let atSwitch = load.snapshot()
            await load.waitForRequests(400, after: atSwitch)
            let result = await load.stop()
            let after = result.subtracting(atSwitch)
            #expect(result.failures == 0, "errors: \(result.errors)")
            #expect(result.connects == 4, "every client kept its one connection: \(result.connects)")
            #expect(result.slots["blue", default: 0] > 0)
            // Requests sent after setBackends returned all went to green (at most one per client was in flight).
            #expect(after.slots["blue", default: 0] <= 4, "\(after.slots)")
            #expect(after.slots["green", default: 0] >= 396)
            let r = await sequential(port, 50)
            #expect(r.slots == ["green": 50])
            print("haproxy switch 0->100: \(String(format: "%.2f", change.elapsedMs)) ms in the router, \(result.requests) requests, \(result.failures) failed")
        }
    }

    @Test func tenWeightChangesUnderLoadKeepEveryClientConnectionAndLoseNothing() async throws {
        try await withRouter(2) { router, servers, _ in
            let port = freePort(preferred: nil)
            try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [100, 0]))
            let pid = router.runningPid(model: "iris", environment: "test")
            let load = KeepAliveLoad(port: port, clients: 4)
            await load.waitForRequests(200, after: load.snapshot())
            for w in [90, 75, 50, 0, 100, 95, 50, 10, 0, 100] {
                let change = try await router.setBackends(model: "iris", environment: "test", port: port,
                                                          backends: backends(servers, [w, 100 - w]))
                #expect(!change.startedProcess)
                await load.waitForRequests(200, after: load.snapshot())
            }
            let result = await load.stop()
            #expect(result.failures == 0, "errors: \(result.errors)")
            #expect(result.connects == 4, "each client kept its one connection: \(result.connects)")
            #expect(result.slots["blue", default: 0] > 0 && result.slots["green", default: 0] > 0)
            #expect(router.runningPid(model: "iris", environment: "test") == pid)
        }
    }

    @Test func addsAndRemovesAThirdBackendAtRunTime() async throws {
        try await withRouter(3, drainTimeoutMs: 5000) { router, servers, _ in
            let port = freePort(preferred: nil)
            try await router.setBackends(model: "iris", environment: "test", port: port,
                                         backends: backends(Array(servers.prefix(2)), [50, 50]))
            let pid = router.runningPid(model: "iris", environment: "test")
            let load = KeepAliveLoad(port: port, clients: 3)
            await load.waitForRequests(200, after: load.snapshot())
            let add = try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [50, 50, 50]))
            #expect(add.steps.first == .add(server: "c-3", port: servers[2].port, weight: 50, version: "v3"))
            #expect(add.steps.contains(.enable(server: "c-3")))
            let s1 = load.snapshot()
            await load.waitForRequests(600, after: s1)
            let withThird = load.snapshot().subtracting(s1)
            #expect(withThird.slots["c-3", default: 0] > 100, "\(withThird.slots)")
            let state1 = try await router.runtimeServers(model: "iris", environment: "test")
            #expect(state1.map(\.name).sorted() == ["blue", "c-3", "green"])
            #expect(state1.allSatisfy { $0.enabled })

            let del = try await router.setBackends(model: "iris", environment: "test", port: port,
                                                   backends: backends(Array(servers.prefix(2)), [50, 50]))
            #expect(del.steps == [.disableDrainDelete(server: "c-3")])
            let s2 = load.snapshot()
            await load.waitForRequests(300, after: s2)
            let result = await load.stop()
            #expect(result.subtracting(s2).slots["c-3", default: 0] == 0)
            #expect(result.failures == 0, "errors: \(result.errors)")
            let state2 = try await router.runtimeServers(model: "iris", environment: "test")
            #expect(state2.map(\.name).sorted() == ["blue", "green"])
            #expect(router.runningPid(model: "iris", environment: "test") == pid, "servers were added and removed without a reload")
            #expect(router.route(model: "iris", environment: "test")?.backends.map(\.name) == ["blue", "green"])
        }
    }

    @Test func aStoppedWarmServerAtWeightZeroIsTakenOutAndNoServerWithTrafficEverIs() async throws {
        try await withRouter(2, drainTimeoutMs: 5000) { router, servers, _ in
            let port = freePort(preferred: nil)
            try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [256, 0]))
            let pid = router.runningPid(model: "iris", environment: "test")
            #expect(await router.servesOnly(port: port, server: "blue", serverPort: servers[0].port))
            #expect(!(await router.servesOnly(port: port, server: "green", serverPort: servers[1].port)))
            #expect(!(await router.servesOnly(port: port, server: "blue", serverPort: servers[1].port)), "wrong port")
            #expect(!(await router.servesOnly(port: freePort(preferred: nil), server: "blue", serverPort: servers[0].port)), "no endpoint")
            let load = KeepAliveLoad(port: port, clients: 3)
            await load.waitForRequests(200, after: load.snapshot())
            // Neither the server with the traffic nor an unknown one is touched.
            #expect(try await router.removeServer(model: "iris", environment: "test", server: "blue") == false)
            #expect(try await router.removeServer(model: "iris", environment: "test", server: "teal") == false)
            #expect(try await router.removeServer(model: "other", environment: "test", server: "green") == false)
            // The warm slot stops, then its server leaves: runtime state and routes.json, no reload.
            servers[1].close()
            #expect(try await router.removeServer(model: "iris", environment: "test", server: "green"))
            let s = load.snapshot()
            await load.waitForRequests(200, after: s)
            let result = await load.stop()
            #expect(result.failures == 0, "errors: \(result.errors)")
            #expect(try await router.runtimeServers(model: "iris", environment: "test").map(\.name) == ["blue"])
            #expect(router.route(model: "iris", environment: "test")?.backends.map(\.name) == ["blue"])
            #expect(router.runningPid(model: "iris", environment: "test") == pid)
            #expect(await router.servesOnly(port: port, server: "blue", serverPort: servers[0].port))
            #expect(try await router.removeServer(model: "iris", environment: "test", server: "green") == false, "already gone")
        }
    }

    @Test func aRemovedServerFinishesItsRequestInFlightBeforeItIsDeleted() async throws {
        try await withRouter(1) { router, servers, _ in
            let slow = try SlowHTTPServer(delayMs: 1500)
            defer { slow.close() }
            let port = freePort(preferred: nil)
            try await router.setBackends(model: "iris", environment: "test", port: port, backends: [
                HAProxyServer(name: "blue", port: servers[0].port, weight: 0, version: "v1"),
                HAProxyServer(name: "c-3", port: slow.port, weight: 100, version: "v3")])
            let inFlight = Task { () -> HTTPResponse? in
                try? await HTTPClient.request(method: "POST", port: port, path: "/predict", body: Array("{}".utf8), timeoutMs: 10_000)
            }
            while slow.accepted == 0 { try await Task.sleep(for: .milliseconds(5)) }
            let change = try await router.setBackends(model: "iris", environment: "test", port: port, backends: [
                HAProxyServer(name: "blue", port: servers[0].port, weight: 100, version: "v1")])
            #expect(change.steps == [.setWeight(server: "blue", weight: 100), .disableDrainDelete(server: "c-3")])
            // Answered by c-3 itself: had c-3 been deleted (its session cut) first, the request would have been
            // resent to blue (see the next test).
            let answer = await inFlight.value
            #expect(answer?.status == 200)
            #expect(answer?.headers["x-model-deployer-slot"] == "c-3")
            #expect(slow.answered == 1)
            let state = try await router.runtimeServers(model: "iris", environment: "test")
            #expect(state.map(\.name) == ["blue"])
        }
    }

    @Test func aDrainThatOutlastsItsTimeoutCutsTheRequestWhichIsResentToAnotherServer() async throws {
        try await withRouter(1, drainTimeoutMs: 200) { router, servers, _ in
            let slow = try SlowHTTPServer(delayMs: 4000)
            defer { slow.close() }
            let port = freePort(preferred: nil)
            try await router.setBackends(model: "iris", environment: "test", port: port, backends: [
                HAProxyServer(name: "blue", port: servers[0].port, weight: 0, version: "v1"),
                HAProxyServer(name: "c-3", port: slow.port, weight: 100, version: "v3")])
            let inFlight = Task { () -> String in
                do {
                    let r = try await HTTPClient.request(method: "POST", port: port, path: "/predict", body: Array("{}".utf8), timeoutMs: 10_000)
                    return "\(r.status) \(r.headers["x-model-deployer-slot"] ?? "-")"
                } catch { return (error as? RuntimeError)?.code ?? "\(error)" }
            }
            while slow.accepted == 0 { try await Task.sleep(for: .milliseconds(5)) }
            try await router.setBackends(model: "iris", environment: "test", port: port, backends: [
                HAProxyServer(name: "blue", port: servers[0].port, weight: 100, version: "v1")])
            let state = try await router.runtimeServers(model: "iris", environment: "test")
            #expect(state.map(\.name) == ["blue"])
            #expect(slow.answered == 0, "the slow server had not answered when it was deleted")
            // The cut request met an empty response; `retry-on empty-response` with `redispatch` sent it
            // again to the server left, so even a cut drain loses nothing a retry can save.
            let outcome = await inFlight.value
            #expect(outcome == "200 blue", "\(outcome)")
        }
    }

    @Test func aRestartedHAProxyServesTheLastWeights() async throws {
        try await withRouter(2) { router, servers, home in
            let port = freePort(preferred: nil)
            try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [50, 50]))
            try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [90, 10]))
            let old = try #require(router.runningPid(model: "iris", environment: "test"))
            kill(old, SIGKILL)
            while ProcessLauncher.isAlive(pid: old) { try await Task.sleep(for: .milliseconds(5)) }
            #expect(router.needsRepair)
            try await router.ensureRunning()
            #expect(!router.needsRepair)
            let new = try #require(router.runningPid(model: "iris", environment: "test"))
            #expect(new != old)
            let state = try await router.runtimeServers(model: "iris", environment: "test")
            #expect(Dictionary(uniqueKeysWithValues: state.map { ($0.name, $0.weight) }) == ["blue": 90, "green": 10])
            let r = await sequential(port, 1000)
            #expect(r.failures == 0)
            #expect(abs(Double(r.slots["blue", default: 0]) / 10 - 90) <= 2, "\(r.slots)")
            #expect(FileIO.readString(home.path + "/router/ep-\(port).cfg")?.contains("weight 90") == true)
        }
    }

    @Test func countsTrafficPerBackend() async throws {
        try await withRouter(2) { router, servers, _ in
            let port = freePort(preferred: nil)
            try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [75, 25]))
            let ok = await sequential(port, 400)
            let bad = await sequential(port, 40, path: "/status/500")
            #expect(ok.failures == 0)
            #expect(bad.failures == 40)
            // Log datagrams are read on the collector's thread: give it a moment to catch up.
            var stats: [TrafficStats] = []
            for _ in 0..<100 {
                stats = try await router.trafficStats(model: "iris", environment: "test", latencyWindowMs: 60_000)
                if stats.map(\.windowRequests).reduce(0, +) >= 440 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            let byName = Dictionary(uniqueKeysWithValues: stats.map { ($0.backend, $0) })
            let blue = try #require(byName["blue"])
            let green = try #require(byName["green"])
            #expect(blue.responses2xx == ok.slots["blue"])
            #expect(green.responses2xx == ok.slots["green"])
            #expect(blue.responses5xx + green.responses5xx == 40)
            // Every request is counted once where it was answered; a server chosen for an attempt that failed
            // and was retried elsewhere (the test servers close every connection) has one more selection.
            for s in [blue, green] {
                #expect(s.requests == s.responses2xx + s.responses5xx, "\(s)")
                #expect(s.selections >= s.requests, "\(s)")
            }
            #expect(blue.requests + green.requests == 440)
            #expect(blue.weight == 75 && green.weight == 25)
            #expect(blue.version == "v1" && green.version == "v2")
            #expect(blue.windowRequests == blue.responses2xx + blue.responses5xx)
            #expect(green.windowRequests == green.responses2xx + green.responses5xx)
            #expect(blue.window5xx == blue.responses5xx)
            #expect(blue.p95Ms != nil && green.p95Ms != nil)
            #expect(blue.routerPid == router.runningPid(model: "iris", environment: "test"))
            await #expect(throws: RuntimeError.self) { try await router.trafficStats(model: "nope", environment: "test") }
        }
    }

    /// The samples of `name` in a Prometheus text page, by their `server` label (backend series only).
    static func serverSamples(_ page: String, _ name: String, backend: String, code: String? = nil) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in page.split(separator: "\n") where line.hasPrefix(name + "{") && line.contains("proxy=\"\(backend)\"") {
            if let code, !line.contains("code=\"\(code)\"") { continue }
            guard let open = line.range(of: "server=\""), let value = line.split(separator: " ").last.flatMap({ Double($0) }) else { continue }
            let server = line[open.upperBound...].prefix { $0 != "\"" }
            out[String(server), default: 0] += value
        }
        return out
    }

    @Test func servesPrometheusMetricsPerServerOnAPortOfItsOwn() async throws {
        try await withRouter(2) { router, servers, _ in
            let port = freePort(preferred: nil)
            try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [75, 25]))
            let route = try #require(router.route(model: "iris", environment: "test"))
            let metricsPort = try #require(route.metricsPort)
            #expect(metricsPort != port && !servers.map(\.port).contains(metricsPort))
            let ok = await sequential(port, 200)
            let bad = await sequential(port, 20, path: "/status/500")
            #expect(ok.failures == 0 && bad.failures == 20)
            let page = try await HTTPClient.request(method: "GET", port: metricsPort, path: "/metrics", timeoutMs: 5000)
            #expect(page.status == 200)
            let text = String(decoding: page.body, as: UTF8.self)
            let ok2xx = Self.serverSamples(text, "haproxy_server_http_responses_total", backend: route.backendName, code: "2xx")
            let bad5xx = Self.serverSamples(text, "haproxy_server_http_responses_total", backend: route.backendName, code: "5xx")
            #expect(ok2xx["blue"].map { Int($0) } == ok.slots["blue"] && ok2xx["green"].map { Int($0) } == ok.slots["green"], "\(ok2xx)")
            #expect(bad5xx.values.reduce(0, +) == 20, "\(bad5xx)")
            #expect(Set(Self.serverSamples(text, "haproxy_server_response_time_average_seconds", backend: route.backendName).keys) == ["blue", "green"])
            // The endpoint's own /metrics still goes to the model (here: a test server answering its body).
            let model = try await HTTPClient.request(method: "GET", port: port, path: "/metrics", timeoutMs: 5000)
            #expect(model.headers["x-model-deployer-slot"] != nil && !String(decoding: model.body, as: UTF8.self).contains("haproxy_"))
            // A weight change keeps the port (scrape configs name it), and so does a restarted HAProxy.
            try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [50, 50]))
            #expect(router.route(model: "iris", environment: "test")?.metricsPort == metricsPort)
            let old = try #require(router.runningPid(model: "iris", environment: "test"))
            kill(old, SIGKILL)
            while ProcessLauncher.isAlive(pid: old) { try await Task.sleep(for: .milliseconds(5)) }
            try await router.ensureRunning()
            let again = try await HTTPClient.request(method: "GET", port: metricsPort, path: "/metrics", timeoutMs: 5000)
            #expect(again.status == 200 && String(decoding: again.body, as: UTF8.self).contains("haproxy_server_http_responses_total"))
            // Removing the endpoint takes its exporter away too.
            try await router.removeRoute(model: "iris", environment: "test")
            await #expect(throws: RuntimeError.self) {
                try await HTTPClient.request(method: "GET", port: metricsPort, path: "/metrics", timeoutMs: 2000)
            }
        }
    }

    @Test func refusesBadNamesAndPortsBeforeTouchingAnything() async throws {
        try await withRouter(2) { router, servers, home in
            let port = freePort(preferred: nil)
            func code(_ model: String = "iris", _ env: String = "test", _ p: Int? = nil, bs: [HAProxyServer]? = nil) async -> String? {
                do {
                    try await router.setBackends(model: model, environment: env, port: p ?? port, backends: bs ?? backends(servers, [1, 1]))
                    return nil
                } catch { return error.code }
            }
            #expect(await code("Iris") == "invalid_name")
            #expect(await code("iris", "a b") == "invalid_name")
            #expect(await code("iris", "test", 0) == "invalid_name")
            #expect(await code("iris", "test", 65536) == "invalid_name")
            #expect(await code(bs: [HAProxyServer(name: "blue;x", port: servers[0].port, weight: 1, version: "v")]) == "invalid_name")
            #expect(await code(bs: [HAProxyServer(name: "blue", port: servers[0].port, weight: 1, version: "v\"1")]) == "invalid_name")
            #expect(await code(bs: [HAProxyServer(name: "blue", port: 0, weight: 1, version: "v")]) == "invalid_name")
            #expect(await code(bs: [HAProxyServer(name: "blue", port: servers[0].port, weight: 300, version: "v")]) == "invalid_weights")
            #expect(await code(bs: backends(servers, [0, 0])) == "invalid_weights")
            #expect(!router.isRunning())
            #expect(!FileIO.exists(home.path + "/router/routes.json"))

            // A port already serving another endpoint, or held by someone else, is refused.
            #expect(await code() == nil)
            #expect(await code("other", "test", port) == "port_in_use")
            let taken = servers[1].port
            #expect(await code("other", "test", taken, bs: [HAProxyServer(name: "blue", port: servers[0].port, weight: 1, version: "v")]) == "port_in_use")
            let names = try router.routes().map(\.modelName)
            #expect(names == ["iris"])
        }
    }

    @Test func killsOrphanedHAProxyOfThisHomeAndRecovers() async throws {
        try await withRouter(2) { router, servers, home in
            let port = freePort(preferred: nil)
            try await router.setBackends(model: "iris", environment: "test", port: port, backends: backends(servers, [30, 70]))
            let orphan = try #require(router.runningPid(model: "iris", environment: "test"))
            // A lost pid file: the old process still holds the port but the router no longer knows it.
            unlink(home.path + "/router/ep-\(port).pid")
            #expect(router.needsRepair)
            #expect(router.strayProcesses() == [orphan])
            try await router.ensureRunning()
            #expect(!ProcessLauncher.isAlive(pid: orphan))
            let new = try #require(router.runningPid(model: "iris", environment: "test"))
            #expect(new != orphan)
            #expect(router.strayProcesses().isEmpty)
            let state = try await router.runtimeServers(model: "iris", environment: "test")
            #expect(Dictionary(uniqueKeysWithValues: state.map { ($0.name, $0.weight) }) == ["blue": 30, "green": 70])
            #expect(await router.verify(port: port, expectSlot: "green", timeoutMs: 5000))
        }
    }

    @Test func aSecondEndpointGetsItsOwnProcessAndNeitherDisturbsTheOther() async throws {
        try await withRouter(2) { router, servers, _ in
            let p1 = freePort(preferred: nil)
            let p2 = freePort(preferred: nil)
            try await router.setBackends(model: "iris", environment: "test", port: p1, backends: backends(servers, [100, 0]))
            let pid = try #require(router.runningPid(model: "iris", environment: "test"))
            let load = KeepAliveLoad(port: p1, clients: 3)
            await load.waitForRequests(200, after: load.snapshot())
            let r = try await router.setBackends(model: "iris", environment: "prod", port: p2, backends: backends(servers, [0, 100]))
            #expect(r.startedProcess)
            #expect(await router.verify(port: p2, expectSlot: "green", timeoutMs: 5000))
            try await router.removeRoute(model: "iris", environment: "prod")
            #expect(router.route(model: "iris", environment: "prod") == nil)
            #expect(router.runningPid(model: "iris", environment: "prod") == nil)
            await load.waitForRequests(200, after: load.snapshot())
            let result = await load.stop()
            #expect(result.failures == 0, "errors: \(result.errors)")
            #expect(result.connects == 3, "the first endpoint's clients kept their connections: \(result.connects)")
            #expect(router.runningPid(model: "iris", environment: "test") == pid)
            #expect(router.strayProcesses().isEmpty)
            // Moving an endpoint to another port replaces its process; the old port stops answering.
            let p3 = freePort(preferred: nil)
            let moved = try await router.setBackends(model: "iris", environment: "test", port: p3, backends: backends(servers, [100, 0]))
            #expect(moved.startedProcess)
            #expect(await router.verify(port: p3, expectSlot: "blue", timeoutMs: 5000))
            #expect(router.strayProcesses().isEmpty)
            await #expect(throws: RuntimeError.self) {
                try await HTTPClient.request(method: "GET", port: p1, path: "/x", timeoutMs: 1000)
            }
            try await router.removeRoute(model: "iris", environment: "test")
            #expect(!router.isRunning())
            #expect(!router.needsRepair)
        }
    }
}

/// An HTTP server that answers each request after `delayMs` (one thread per connection), counting
/// connections accepted and answers sent.
final class SlowHTTPServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let counts = Mutex<(accepted: Int, answered: Int)>((0, 0))
    var accepted: Int { counts.withLock { $0.accepted } }
    var answered: Int { counts.withLock { $0.answered } }

    init(delayMs: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        guard withUnsafePointer(to: &addr, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }) == 0,
              listen(fd, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: bound.sin_port))
        Thread { [self] in
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 { if errno == EINTR { continue }; Glibc.close(fd); return }
                counts.withLock { $0.accepted += 1 }
                Thread { [self] in
                    defer { Glibc.close(c) }
                    var buf = [UInt8](repeating: 0, count: 4096)
                    guard read(c, &buf, buf.count) > 0 else { return }
                    usleep(UInt32(delayMs) * 1000)
                    let out = Array("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\n[\"s\"]".utf8)
                    if send(c, out, out.count, Int32(MSG_NOSIGNAL)) == out.count { counts.withLock { $0.answered += 1 } }
                }.start()
            }
        }.start()
    }

    func close() { shutdown(fd, Int32(SHUT_RDWR)) }
}
