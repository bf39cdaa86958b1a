import JSON

/// What one version served in one analysis interval, on real traffic (the router's request log).
public struct WindowFigures: Sendable, Hashable {
    /// Requests answered in the interval.
    public var requests: Int
    /// Of those, 5xx answers (or broken responses).
    public var errors: Int
    /// 95th percentile latency in the interval, ms; nil when nothing was logged.
    public var p95Ms: Double?

    /// Figures.
    public init(requests: Int, errors: Int, p95Ms: Double?) {
        self.requests = requests
        self.errors = errors
        self.p95Ms = p95Ms
    }

    /// No traffic.
    public static let none = WindowFigures(requests: 0, errors: 0, p95Ms: nil)

    /// errors / requests (0 with no requests).
    public var errorRate: Double { requests > 0 ? Double(errors) / Double(requests) : 0 }

    /// `{"requests", "errors", "error_rate", "p95_ms"}` (`p95_ms` null when unknown).
    public func toJSON() -> JSONValue {
        .object(["requests": .integer(requests), "errors": .integer(errors), "error_rate": .double(errorRate),
                 "p95_ms": p95Ms.map { .double($0) } ?? .null])
    }
}

/// The verdict on one interval. Raw values are the wire spelling.
public enum AnalysisVerdict: String, Sendable, Hashable {
    /// Within the limits on enough traffic.
    case pass
    /// Over a limit.
    case fail
    /// Too little traffic to judge: it neither passes nor fails.
    case inconclusive
}

/// One interval judged: the figures of both versions, the limits, and why.
public struct AnalysisResult: Sendable, Hashable {
    /// The verdict.
    public var verdict: AnalysisVerdict
    /// The stable version's figures.
    public var stable: WindowFigures
    /// The candidate's figures.
    public var candidate: WindowFigures
    /// The limits applied.
    public var limits: AnalysisLimits
    /// For a failure: `error_rate_regression` or `latency_regression`.
    public var regression: FailureReason?
    /// A sentence with the figures.
    public var message: String

    /// A result.
    public init(verdict: AnalysisVerdict, stable: WindowFigures, candidate: WindowFigures, limits: AnalysisLimits,
                regression: FailureReason? = nil, message: String) {
        self.verdict = verdict
        self.stable = stable
        self.candidate = candidate
        self.limits = limits
        self.regression = regression
        self.message = message
    }

    /// `{"verdict", "stable", "candidate", "limits"}` as the contract's progress and event data carry it.
    public func toJSON() -> JSONValue {
        .object(["verdict": .string(verdict.rawValue), "stable": stable.toJSON(), "candidate": candidate.toJSON(),
                 "limits": .object([
                     "min_requests": .integer(limits.minRequests), "max_error_rate_delta": .double(limits.maxErrorRateDelta),
                     "max_p95_ratio": .double(limits.maxP95Ratio), "min_p95_delta_ms": .double(limits.minP95DeltaMs),
                 ])])
    }
}

/// The comparator of canary intervals and of the blue-green bake on real traffic: the candidate against
/// the stable version in the same interval, relative limits, and a noise floor on latency. Fewer than
/// `minRequests` on either side is inconclusive: it never passes on no data.
public enum Analysis {
    /// Judges one interval.
    public static func compare(stable: WindowFigures, candidate: WindowFigures, limits: AnalysisLimits) -> AnalysisResult {
        let figures = "candidate \(describe(candidate)), stable \(describe(stable))"
        func result(_ v: AnalysisVerdict, _ r: FailureReason? = nil, _ m: String) -> AnalysisResult {
            AnalysisResult(verdict: v, stable: stable, candidate: candidate, limits: limits, regression: r, message: m)
        }
        if candidate.requests < limits.minRequests || stable.requests < limits.minRequests {
            return result(.inconclusive, nil,
                          "inconclusive: \(min(candidate.requests, stable.requests)) of \(limits.minRequests) requests per version (\(figures))")
        }
        let delta = candidate.errorRate - stable.errorRate
        if delta > limits.maxErrorRateDelta {
            return result(.fail, .errorRateRegression,
                          "error rate \(percent(candidate.errorRate)) is \(percent(delta)) above the stable version's \(percent(stable.errorRate)) (limit +\(percent(limits.maxErrorRateDelta))); \(figures)")
        }
        if let c = candidate.p95Ms, let s = stable.p95Ms, c - s >= limits.minP95DeltaMs, c > s * limits.maxP95Ratio {
            return result(.fail, .latencyRegression,
                          "p95 \(ms(c)) is over \(fmt(limits.maxP95Ratio)) x the stable version's \(ms(s)) (and \(ms(c - s)) above it, noise floor \(ms(limits.minP95DeltaMs))); \(figures)")
        }
        return result(.pass, nil, "pass: \(figures)")
    }

    static func describe(_ f: WindowFigures) -> String {
        "\(f.requests) requests, \(f.errors) errors (\(percent(f.errorRate))), p95 \(f.p95Ms.map(ms) ?? "n/a")"
    }
}
