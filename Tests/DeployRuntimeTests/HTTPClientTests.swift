@testable import DeployRuntime
import JSON
import Testing

@Suite struct HTTPClientTests {
    @Test func contentLengthAndHeaders() async throws {
        let server = try TestHTTPServer(body: "[1,2]", headers: ["X-Model-Deployer-Slot": "blue"])
        defer { server.close() }
        let r = try await HTTPClient.request(method: "GET", port: server.port, path: "/x", timeoutMs: 2000)
        #expect(r.status == 200)
        #expect(r.headers["x-model-deployer-slot"] == "blue")
        #expect(r.headers["content-type"] == "application/json")
        #expect(String(decoding: r.body, as: UTF8.self) == "[1,2]")
        #expect(r.latencyMs > 0)
    }

    @Test func chunkedBodyIsDecoded() async throws {
        let server = try TestHTTPServer()
        defer { server.close() }
        let r = try await HTTPClient.request(method: "GET", port: server.port, path: "/chunked", timeoutMs: 2000)
        #expect(String(decoding: r.body, as: UTF8.self) == "Wikipedia in chunks.!!")
        #expect(r.headers["x-test"] == "yes")
    }

    @Test func postBodyIsSent() async throws {
        let server = try TestHTTPServer()
        defer { server.close() }
        let payload: JSONValue = ["input": [[5.1, 3.5, 1.4, 0.2]]]
        let r = try await HTTPClient.request(method: "POST", port: server.port, path: "/echo",
                                             headers: ["Content-Type": "application/json"], body: payload.jsonBytes, timeoutMs: 2000)
        #expect(try JSONValue.parse(r.body) == payload)
    }

    @Test func refusedConnection() async throws {
        let port = freePort(preferred: nil)
        await #expect(throws: RuntimeError(code: "connection_refused", message: "connection refused on port \(port)")) {
            try await HTTPClient.request(method: "GET", port: port, path: "/", timeoutMs: 1000)
        }
    }

    @Test func unixSocketWithoutListenerIsRefused() async throws {
        let dir = try TempDir("http-unix")
        defer { dir.remove() }
        do {
            _ = try await HTTPClient.request(method: "GET", unixSocket: dir.path + "/absent.sock", path: "/", timeoutMs: 1000)
            Issue.record("expected an error")
        } catch {
            #expect(error.code == "connection_refused" && error.message.contains("absent.sock"), "\(error)")
        }
        do {
            _ = try await HTTPClient.request(method: "GET", unixSocket: "/" + String(repeating: "x", count: 200), path: "/", timeoutMs: 100)
            Issue.record("expected an error")
        } catch {
            #expect(error.code == "http_failed" && error.message.contains("too long"))
        }
    }

    @Test func hangingServerTimesOut() async throws {
        let server = try TestHTTPServer()
        defer { server.close() }
        do {
            _ = try await HTTPClient.request(method: "GET", port: server.port, path: "/hang", timeoutMs: 200)
            Issue.record("expected a timeout")
        } catch {
            #expect(error.code == "http_timeout")
        }
    }

    @Test func rejectsHeaderInjection() async {
        do {
            _ = try await HTTPClient.request(method: "GET", port: 1, path: "/", headers: ["X": "a\r\nB: c"], timeoutMs: 100)
            Issue.record("expected an error")
        } catch {
            #expect(error.code == "http_failed")
        }
    }

    @Test func parserHandlesSplitReads() throws {
        var p = ResponseParser()
        let text = Array("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello".utf8)
        for b in text.dropLast() {
            p.append([b][...])
            #expect(try p.finished() == nil)
        }
        p.append([text.last!][...])
        let done = try #require(try p.finished())
        #expect(done.status == 201)
        #expect(done.body == Array("hello".utf8))
    }
}

@Suite struct ProbesTests {
    @Test func smokePassesAndFailsOnAnswerAndStatus() async throws {
        let server = try TestHTTPServer(body: "[0, 2, 1]")
        defer { server.close() }
        let input: JSONValue = ["input": [[1.0, 2.0, 3.0, 4.0]]]
        let results = await Probes.smoke(port: server.port, checks: [
            SmokeCheck(api: "predict", input: input, expect: [0, 2, 1]),
            SmokeCheck(api: "predict", input: input, expect: [0.0, 2.0, 1.0]),
            SmokeCheck(api: "predict", input: input, expect: [10, 12, 11]),
            SmokeCheck(api: "status/500", input: input),
            SmokeCheck(api: "predict", input: input),
        ], timeoutMs: 2000)
        #expect(results.map(\.passed) == [true, true, false, false, true])
        #expect(results[0].answer == [0, 2, 1])
        #expect(results[3].status == 500)
        #expect(results[2].message.contains("expected"))
    }

    @Test func smokeAgainstNothingFails() async {
        let results = await Probes.smoke(port: freePort(preferred: nil), checks: [SmokeCheck(api: "predict", input: [:])], timeoutMs: 500)
        #expect(results.count == 1 && !results[0].passed && results[0].status == nil)
    }

    @Test func loadReportsMetrics() async throws {
        let server = try TestHTTPServer(body: "[1]", headers: ["X-Model-Deployer-Slot": "blue"])
        defer { server.close() }
        let r = await Probes.load(port: server.port, api: "predict", input: ["input": [[1, 2, 3, 4]]], requests: 40,
                                  concurrency: 4, timeoutMs: 2000)
        #expect(r.requests == 40)
        #expect(r.failures == 0)
        #expect(r.answers == ["[1]": 40])
        #expect(r.slots == ["blue": 40])
        #expect(r.latencyP50Ms > 0 && r.latencyP50Ms <= r.latencyP95Ms && r.latencyP95Ms <= r.latencyP99Ms)
        #expect(Set(r.metrics.keys) == ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "error_rate", "requests_per_second", "requests"])
        #expect(r.metrics["error_rate"] == 0)
    }

    @Test func percentilesUseNearestRank() {
        let v = (1...100).map(Double.init)
        #expect(Probes.percentile(v, 0.5) == 50)
        #expect(Probes.percentile(v, 0.95) == 95)
        #expect(Probes.percentile(v, 0.99) == 99)
        #expect(Probes.percentile([], 0.5) == 0)
    }

    @Test func hostFacts() {
        let f = readHostFacts()
        #expect(f.cpuCount >= 1)
        #expect(f.freeMemoryMB > 0)
    }
}
