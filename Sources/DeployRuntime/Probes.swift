import JSON
import Synchronization

import DeployCore

/// One smoke test: POST `/<api>` with `input` as the JSON body; when `expect` is set the answer must equal it.
/// The planner's `SmokeTest` is exactly that, so the runtime takes it as it is.
public typealias SmokeCheck = SmokeTest

/// The outcome of one smoke check (an expected outcome, not an error).
public struct SmokeResult: Sendable, Hashable {
    /// API that was called.
    public var api: String
    /// 2xx and (no expectation or the answer equals it).
    public var passed: Bool
    /// HTTP status, nil when no response arrived.
    public var status: Int?
    /// Request latency in ms (time until the failure when none arrived).
    public var latencyMs: Double
    /// The parsed answer, when it was JSON.
    public var answer: JSONValue?
    /// Why it passed or failed, for a person.
    public var message: String

    /// Creates a result value.
    public init(api: String, passed: Bool, status: Int?, latencyMs: Double, answer: JSONValue?, message: String) {
        self.api = api
        self.passed = passed
        self.status = status
        self.latencyMs = latencyMs
        self.answer = answer
        self.message = message
    }
}

/// Latency and error figures of a probe load.
public struct LoadResult: Sendable, Hashable {
    /// Requests sent.
    public var requests: Int
    /// Requests that got no 2xx answer (transport errors included).
    public var failures: Int
    /// Median latency of all answered requests, ms.
    public var latencyP50Ms: Double
    /// 95th percentile latency, ms.
    public var latencyP95Ms: Double
    /// 99th percentile latency, ms.
    public var latencyP99Ms: Double
    /// Wall time of the whole load, seconds.
    public var durationSeconds: Double
    /// How many times each distinct answer body (compact JSON, or raw text) was seen for 2xx responses.
    public var answers: [String: Int]
    /// Failure reasons (status or error code) with counts.
    public var errors: [String: Int]
    /// How many 2xx responses carried each `X-Model-Deployer-Slot` value (empty when not behind the router).
    public var slots: [String: Int]

    /// `failures / requests` (0 when nothing was sent).
    public var errorRate: Double { requests == 0 ? 0 : Double(failures) / Double(requests) }
    /// Requests per second over the wall time.
    public var requestsPerSecond: Double { durationSeconds > 0 ? Double(requests) / durationSeconds : 0 }

    /// The metrics baseline: `latency_p50_ms`, `latency_p95_ms`, `latency_p99_ms`, `error_rate`,
    /// `requests_per_second`, `requests`.
    public var metrics: [String: Double] {
        ["latency_p50_ms": latencyP50Ms, "latency_p95_ms": latencyP95Ms, "latency_p99_ms": latencyP99Ms,
         "error_rate": errorRate, "requests_per_second": requestsPerSecond, "requests": Double(requests)]
    }
}

/// A flag a running `Probes.steadyLoad` polls between requests.
public final class LoadStopper: Sendable {
    private let flag = Atomic<Bool>(false)
    /// Creates a flag in the running state.
    public init() {}
    /// Asks the load to stop after the requests in flight.
    public func stop() { flag.store(true, ordering: .relaxed) }
    /// `true` once `stop()` was called.
    public var isStopped: Bool { flag.load(ordering: .relaxed) }
}

/// Smoke tests and probe loads against a BentoML service or the router.
public enum Probes {
    /// Runs each check in order: POST `/<api>` with the JSON input.
    public static func smoke(port: Int, checks: [SmokeCheck], timeoutMs: Int) async -> [SmokeResult] {
        var results: [SmokeResult] = []
        for check in checks {
            let path = "/" + check.api.drop(while: { $0 == "/" })
            let start = monotonicMs()
            do throws(RuntimeError) {
                let r = try await HTTPClient.request(method: "POST", port: port, path: path,
                                                     headers: ["Content-Type": "application/json", "Accept": "application/json"],
                                                     body: check.input.jsonBytes, timeoutMs: timeoutMs)
                let answer = try? JSONValue.parse(r.body)
                let text = String(decoding: r.body.prefix(300), as: UTF8.self)
                if !r.isSuccess {
                    results.append(SmokeResult(api: check.api, passed: false, status: r.status, latencyMs: r.latencyMs,
                                               answer: answer, message: "HTTP \(r.status): \(text)"))
                } else if let expect = check.expect {
                    let ok = answer.map { jsonEquivalent($0, expect) } ?? false
                    results.append(SmokeResult(api: check.api, passed: ok, status: r.status, latencyMs: r.latencyMs, answer: answer,
                                               message: ok ? "answer matches" : "expected \(expect.jsonString), got \(text)"))
                } else {
                    results.append(SmokeResult(api: check.api, passed: true, status: r.status, latencyMs: r.latencyMs,
                                               answer: answer, message: "HTTP \(r.status)"))
                }
            } catch {
                results.append(SmokeResult(api: check.api, passed: false, status: nil, latencyMs: monotonicMs() - start,
                                           answer: nil, message: error.description))
            }
        }
        return results
    }

    /// Sends `requests` POSTs of `input` to `/<api>` from `concurrency` parallel clients.
    public static func load(port: Int, api: String, input: JSONValue, requests: Int, concurrency: Int,
                            timeoutMs: Int) async -> LoadResult {
        let counter = Atomic<Int>(0)
        return await run(port: port, api: api, input: input, concurrency: concurrency, timeoutMs: timeoutMs) {
            counter.add(1, ordering: .relaxed).oldValue < requests
        }
    }

    /// Sends POSTs of `input` to `/<api>` from `concurrency` parallel clients until `stopper` is stopped
    /// (or the task is cancelled). Used to prove a switch loses no request.
    public static func steadyLoad(port: Int, api: String, input: JSONValue, concurrency: Int, timeoutMs: Int,
                                  until stopper: LoadStopper) async -> LoadResult {
        await run(port: port, api: api, input: input, concurrency: concurrency, timeoutMs: timeoutMs) {
            !stopper.isStopped && !Task.isCancelled
        }
    }

    private struct Sample: Sendable {
        var latencies: [Double] = []
        var failures = 0
        var requests = 0
        var answers: [String: Int] = [:]
        var errors: [String: Int] = [:]
        var slots: [String: Int] = [:]
    }

    private static func run(port: Int, api: String, input: JSONValue, concurrency: Int, timeoutMs: Int,
                            next: @escaping @Sendable () -> Bool) async -> LoadResult {
        let path = "/" + api.drop(while: { $0 == "/" })
        let body = input.jsonBytes
        let start = monotonicMs()
        let merged = await withTaskGroup(of: Sample.self) { group in
            for _ in 0..<max(1, concurrency) {
                group.addTask {
                    var s = Sample()
                    while next() {
                        s.requests += 1
                        do throws(RuntimeError) {
                            let r = try await HTTPClient.request(method: "POST", port: port, path: path,
                                                                 headers: ["Content-Type": "application/json"],
                                                                 body: body, timeoutMs: timeoutMs)
                            s.latencies.append(r.latencyMs)
                            if r.isSuccess {
                                let key = (try? JSONValue.parse(r.body))?.jsonString ?? String(decoding: r.body.prefix(200), as: UTF8.self)
                                s.answers[key, default: 0] += 1
                                if let slot = r.headers["x-model-deployer-slot"] { s.slots[slot, default: 0] += 1 }
                            } else {
                                s.failures += 1
                                s.errors["HTTP \(r.status)", default: 0] += 1
                            }
                        } catch {
                            s.failures += 1
                            s.errors[error.code, default: 0] += 1
                        }
                    }
                    return s
                }
            }
            var all = Sample()
            for await s in group {
                all.latencies += s.latencies
                all.failures += s.failures
                all.requests += s.requests
                all.answers.merge(s.answers, uniquingKeysWith: +)
                all.errors.merge(s.errors, uniquingKeysWith: +)
                all.slots.merge(s.slots, uniquingKeysWith: +)
            }
            return all
        }
        let sorted = merged.latencies.sorted()
        return LoadResult(requests: merged.requests, failures: merged.failures,
                          latencyP50Ms: percentile(sorted, 0.50), latencyP95Ms: percentile(sorted, 0.95),
                          latencyP99Ms: percentile(sorted, 0.99), durationSeconds: (monotonicMs() - start) / 1000,
                          answers: merged.answers, errors: merged.errors, slots: merged.slots)
    }

    /// Nearest-rank percentile of sorted values (0 when empty): the one formula, kept in DeployCore.
    static func percentile(_ sorted: [Double], _ p: Double) -> Double { Metrics.percentile(sorted, p) }
}

/// JSON equality where numbers compare by value (`2` equals `2.0`).
public func jsonEquivalent(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case let (.array(x), .array(y)):
        return x.count == y.count && zip(x, y).allSatisfy { jsonEquivalent($0, $1) }
    case let (.object(x), .object(y)):
        return x.count == y.count && x.allSatisfy { k, v in y[k].map { jsonEquivalent(v, $0) } ?? false }
    default:
        if let p = a.doubleValue, let q = b.doubleValue { return p == q }
        return a == b
    }
}

// MARK: - Prober

/// Probes over HTTP on the loopback interface (the local runtime's slots and router).
public struct HTTPProber: Prober {
    /// A prober.
    public init() {}

    public func smoke(_ address: SlotAddress, checks: [SmokeTest], timeoutMs: Int) async -> [SmokeResult] {
        await Probes.smoke(port: address.port, checks: checks, timeoutMs: timeoutMs)
    }

    public func measure(_ address: SlotAddress, load: ProbeLoad) async -> Metrics {
        if let api = load.api, let input = load.input {
            let l = await Probes.load(port: address.port, api: api, input: input, requests: load.requests,
                                      concurrency: load.concurrency, timeoutMs: 5000)
            return Metrics(dictionary: l.metrics)
        }
        // Without an API to call, the readiness endpoint is the signal (half the requests: it is cheap and serial).
        let n = max(1, load.requests / 2)
        var latencies: [Double] = []
        var failures = 0
        let start = monotonicMs()
        for _ in 0..<n {
            do throws(RuntimeError) {
                let resp = try await HTTPClient.request(method: "GET", port: address.port, path: load.healthPath, timeoutMs: 2000)
                latencies.append(resp.latencyMs)
                if resp.status >= 500 { failures += 1 }
            } catch {
                failures += 1
            }
        }
        let elapsed = max((monotonicMs() - start) / 1000, 0.001)
        latencies.sort()
        return Metrics(p50Ms: Metrics.percentile(latencies, 0.5), p95Ms: Metrics.percentile(latencies, 0.95),
                       p99Ms: Metrics.percentile(latencies, 0.99), errorRate: Double(failures) / Double(n), rps: Double(n) / elapsed)
    }

    public func isReady(_ address: SlotAddress, path: String, timeoutMs: Int) async -> Bool {
        guard let resp = try? await HTTPClient.request(method: "GET", port: address.port, path: path, timeoutMs: timeoutMs) else { return false }
        return resp.status == 200
    }
}
