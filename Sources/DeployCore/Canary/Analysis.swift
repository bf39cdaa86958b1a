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
///
/// A p95 is only compared when both versions served ``minLatencySamples`` requests in the interval. The
/// nearest-rank p95 of fewer than 20 requests is their slowest one, and a candidate at 5 % of the traffic
/// serves few: at 5 % under heavy load on a 2-core machine it served 7 to 31 requests per 2 s interval, so
/// one pause of its process (BentoML's pause 220-320 ms about every 620 requests) is its p95. On fewer
/// requests a p95 over the limits proves nothing either way, so the interval is inconclusive (it neither
/// fails nor lets the step advance; the next interval decides), while the error-rate check still fails it.
public enum Analysis {
    /// Requests each version must have served in an interval before their p95s are compared. With 40,
    /// the nearest-rank p95 has at least two requests above it, so it takes three slow requests (7.5 %
    /// of the interval) rather than one to move it.
    public static let minLatencySamples = 40

    /// No analysis or bake window starts sooner than this after a traffic change (a canary's new weights,
    /// a blue-green switch), ms. Measured under heavy load on a 2-core machine: the requests in flight at
    /// a blue-green switch (twelve keep-alive clients) were answered by the new version in about 500 ms
    /// against 200 ms from either version once settled, so a window that began at the switch judged that
    /// burst, not the version.
    public static let settleMs = 1000

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
        // A stable version that answered none of its requests is no baseline (relative to its 100 %, a
        // candidate failing everything would pass: both broken, or probes the API server refuses to both):
        // the candidate is then judged against no errors at all, so a fix still passes and nothing broken does.
        guard stable.errors < stable.requests else {
            if candidate.errorRate > limits.maxErrorRateDelta {
                return result(.fail, .errorRateRegression,
                              "error rate \(percent(candidate.errorRate)) is over the limit of \(percent(limits.maxErrorRateDelta)): the stable version answered none of its \(stable.requests) requests, so the candidate is judged against no errors; \(figures)")
            }
            return result(.pass, nil, "pass: the stable version answered none of its \(stable.requests) requests and the candidate is within \(percent(limits.maxErrorRateDelta)) errors; \(figures)")
        }
        let delta = candidate.errorRate - stable.errorRate
        if delta > limits.maxErrorRateDelta {
            return result(.fail, .errorRateRegression,
                          "error rate \(percent(candidate.errorRate)) is \(percent(delta)) above the stable version's \(percent(stable.errorRate)) (limit +\(percent(limits.maxErrorRateDelta))); \(figures)")
        }
        if let c = candidate.p95Ms, let s = stable.p95Ms, c - s >= limits.minP95DeltaMs, c > s * limits.maxP95Ratio {
            let fewest = min(candidate.requests, stable.requests)
            guard fewest >= minLatencySamples else {
                return result(.inconclusive, nil,
                              "inconclusive: p95 \(ms(c)) over \(fmt(limits.maxP95Ratio)) x the stable version's \(ms(s)), but on \(fewest) requests (a p95 is compared from \(minLatencySamples)); \(figures)")
            }
            return result(.fail, .latencyRegression,
                          "p95 \(ms(c)) is over \(fmt(limits.maxP95Ratio)) x the stable version's \(ms(s)) (and \(ms(c - s)) above it, noise floor \(ms(limits.minP95DeltaMs))); \(figures)")
        }
        return result(.pass, nil, "pass: \(figures)")
    }

    static func describe(_ f: WindowFigures) -> String {
        "\(f.requests) requests, \(f.errors) errors (\(percent(f.errorRate))), p95 \(f.p95Ms.map(ms) ?? "n/a")"
    }
}
