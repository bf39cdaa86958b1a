import JSON

/// Latency, error rate and throughput of a slot or of the router, as measured by a probe load.
public struct Metrics: Sendable, Hashable {
    /// Median latency, ms.
    public var p50Ms: Double
    /// 95th percentile latency, ms.
    public var p95Ms: Double
    /// 99th percentile latency, ms.
    public var p99Ms: Double
    /// Failed requests / all requests (0...1).
    public var errorRate: Double
    /// Requests per second.
    public var rps: Double

    /// Metrics.
    public init(p50Ms: Double, p95Ms: Double, p99Ms: Double, errorRate: Double, rps: Double) {
        self.p50Ms = p50Ms
        self.p95Ms = p95Ms
        self.p99Ms = p99Ms
        self.errorRate = errorRate
        self.rps = rps
    }

    /// The wire keys of ``dictionary``.
    public static let keys = ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "error_rate", "requests_per_second"]

    /// From the `metrics_baseline` map; missing keys are 0.
    public init(dictionary d: [String: Double]) {
        self.init(
            p50Ms: d["latency_p50_ms"] ?? 0, p95Ms: d["latency_p95_ms"] ?? 0, p99Ms: d["latency_p99_ms"] ?? 0,
            errorRate: d["error_rate"] ?? 0, rps: d["requests_per_second"] ?? 0)
    }

    /// The `metrics_baseline` map (name -> number).
    public var dictionary: [String: Double] {
        [
            "latency_p50_ms": p50Ms, "latency_p95_ms": p95Ms, "latency_p99_ms": p99Ms, "error_rate": errorRate,
            "requests_per_second": rps,
        ]
    }

    /// Nearest-rank percentile `p` (0...1) of `sorted` ascending values; 0 when empty. The one formula
    /// for the probe loads and the bake windows.
    public static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((p * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }

    /// The map as a JSON object.
    public func toJSON() -> JSONValue { .object(dictionary.mapValues { .double($0) }) }

    /// From a JSON object of numbers (missing keys are 0); `nil` when it is not an object of numbers.
    public init?(json: JSONValue) {
        guard let o = json.objectValue else { return nil }
        var d: [String: Double] = [:]
        for (k, v) in o {
            guard let n = v.doubleValue else { return nil }
            d[k] = n
        }
        self.init(dictionary: d)
    }
}

/// The outcome of watching a new version during the bake period.
public enum Verdict: Sendable, Hashable {
    /// Within thresholds.
    case healthy
    /// Above a threshold: switch back. `reason` is `.errorRateRegression` or `.latencyRegression`.
    case rollback(reason: FailureReason, message: String)
}

/// Bake-period judgement: compares what the router observed after the switch with the slot's baseline.
public enum BakeVerdict {
    /// Error-rate threshold: max(baseline x factor, floor).
    public static func errorRateThreshold(baseline: Metrics, policy: RollbackPolicy) -> Double {
        max(baseline.errorRate * policy.errorRateFactor, policy.minErrorRate)
    }

    /// p95 threshold: max(baseline x factor, baseline + floor), so a 2 ms baseline does not trip on 5 ms noise.
    public static func latencyThreshold(baseline: Metrics, policy: RollbackPolicy) -> Double {
        max(baseline.p95Ms * policy.latencyFactor, baseline.p95Ms + policy.latencyFloorMs)
    }

    /// `.rollback` when the observed error rate or p95 latency is above its threshold (error rate checked first).
    public static func evaluate(baseline: Metrics, observed: Metrics, policy: RollbackPolicy) -> Verdict {
        let errorLimit = errorRateThreshold(baseline: baseline, policy: policy)
        if observed.errorRate > errorLimit {
            return .rollback(
                reason: .errorRateRegression,
                message: "error rate \(percent(observed.errorRate)) after the switch is above the limit \(percent(errorLimit)) (baseline \(percent(baseline.errorRate)) x \(fmt(policy.errorRateFactor)), floor \(percent(policy.minErrorRate)))")
        }
        let latencyLimit = latencyThreshold(baseline: baseline, policy: policy)
        if observed.p95Ms > latencyLimit {
            return .rollback(
                reason: .latencyRegression,
                message: "p95 latency \(ms(observed.p95Ms)) after the switch is above the limit \(ms(latencyLimit)) (baseline \(ms(baseline.p95Ms)) x \(fmt(policy.latencyFactor)), at least baseline + \(ms(policy.latencyFloorMs)))")
        }
        return .healthy
    }

    /// One bake window in words, against its limits: what a person watching the bake sees each window.
    public static func windowSummary(baseline: Metrics, observed: Metrics, policy: RollbackPolicy) -> String {
        "error rate \(percent(observed.errorRate)) (limit \(percent(errorRateThreshold(baseline: baseline, policy: policy)))), "
            + "p95 \(ms(observed.p95Ms)) (limit \(ms(latencyThreshold(baseline: baseline, policy: policy))))"
    }


}

extension Verdict {
    /// Same as ``BakeVerdict/evaluate(baseline:observed:policy:)``.
    public static func evaluate(baseline: Metrics, observed: Metrics, policy: RollbackPolicy) -> Verdict {
        BakeVerdict.evaluate(baseline: baseline, observed: observed, policy: policy)
    }
}

/// `12.5%` (two decimals at most): the one spelling of rates in verdict sentences.
func percent(_ x: Double) -> String { "\(fmt((x * 10000).rounded() / 100))%" }
/// `12.3 ms`: the one spelling of latencies in verdict sentences.
func ms(_ x: Double) -> String { "\(fmt((x * 10).rounded() / 10)) ms" }
