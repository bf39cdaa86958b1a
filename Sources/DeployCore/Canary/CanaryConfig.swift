import JSON

/// The limits one analysis interval is judged by: the candidate against the stable version, measured in
/// the same interval on the same traffic.
public struct AnalysisLimits: Sendable, Hashable {
    /// Seconds per interval.
    public var intervalSeconds: Int
    /// Failed intervals in a row that abort.
    public var failureLimit: Int
    /// Requests each version must have served in the interval, else the interval is inconclusive.
    public var minRequests: Int
    /// Largest allowed candidate error rate minus the stable one (0...1).
    public var maxErrorRateDelta: Double
    /// Largest allowed candidate p95 / stable p95.
    public var maxP95Ratio: Double
    /// A p95 difference below this never fails (noise floor on a shared machine), ms.
    public var minP95DeltaMs: Double

    /// Limits; the defaults are the contract's.
    public init(intervalSeconds: Int = 10, failureLimit: Int = 2, minRequests: Int = 20, maxErrorRateDelta: Double = 0.05,
                maxP95Ratio: Double = 2.0, minP95DeltaMs: Double = 50) {
        self.intervalSeconds = intervalSeconds
        self.failureLimit = failureLimit
        self.minRequests = minRequests
        self.maxErrorRateDelta = maxErrorRateDelta
        self.maxP95Ratio = maxP95Ratio
        self.minP95DeltaMs = minP95DeltaMs
    }

    /// `{"interval_seconds", "failure_limit", "min_requests", "max_error_rate_delta", "max_p95_ratio", "min_p95_delta_ms"}`.
    public func toJSON() -> JSONValue {
        .object([
            "interval_seconds": .integer(intervalSeconds), "failure_limit": .integer(failureLimit), "min_requests": .integer(minRequests),
            "max_error_rate_delta": .double(maxErrorRateDelta), "max_p95_ratio": .double(maxP95Ratio), "min_p95_delta_ms": .double(minP95DeltaMs),
        ])
    }
}

/// A canary's settings, resolved: the request's `canary` object over the environment policy's `canary:`
/// section over the built-in defaults. Echoed in the plan's config, so the plan says exactly what runs.
public struct CanaryConfig: Sendable, Hashable {
    /// Candidate weights in percent, strictly increasing, the last 100.
    public var steps: [Int]
    /// Minimum seconds at each step below 100.
    public var pauseSeconds: Int
    /// Requests the candidate must have served at a step before it may advance.
    public var minRequests: Int
    /// Seconds the canary may stay inconclusive before it is aborted (`analysis_inconclusive`).
    public var maxInconclusiveSeconds: Int
    /// Wait at `awaiting_step` for `deploy.approve` (gate `step`) before every step after the first.
    public var stepGates: Bool
    /// The analysis of each interval.
    public var analysis: AnalysisLimits

    /// Settings; the defaults are the contract's.
    public init(steps: [Int] = [5, 25, 50, 100], pauseSeconds: Int = 30, minRequests: Int = 50, maxInconclusiveSeconds: Int = 600,
                stepGates: Bool = false, analysis: AnalysisLimits = .init()) {
        self.steps = steps
        self.pauseSeconds = pauseSeconds
        self.minRequests = minRequests
        self.maxInconclusiveSeconds = maxInconclusiveSeconds
        self.stepGates = stepGates
        self.analysis = analysis
    }

    /// The built-in defaults.
    public static let defaults = CanaryConfig()

    /// The members a `canary` object may have.
    static let fields: Set<String> = ["steps", "pause_seconds", "min_requests", "max_inconclusive_seconds", "step_gates", "analysis"]
    static let analysisFields: Set<String> = ["interval_seconds", "failure_limit", "min_requests", "max_error_rate_delta", "max_p95_ratio", "min_p95_delta_ms"]

    /// `self` with the members of `json` (a `canary` object, every member optional) applied and checked.
    /// - Throws: `JSONShapeError` naming the member at fault (unknown member, wrong type, out of range,
    ///   steps not strictly increasing or not ending at 100).
    public func applying(_ json: JSONValue, path: String = "canary") throws(JSONShapeError) -> CanaryConfig {
        let r = try ObjectReader(json, path: path)
        try r.rejectUnknown(Self.fields)
        var c = self
        if let list = try r.optionalArray("steps") {
            var steps: [Int] = []
            for (i, v) in list.enumerated() {
                guard let n = v.intValue.flatMap({ Int(exactly: $0) }) else {
                    throw JSONShapeError(path: "\(r.at("steps"))[\(i)]", message: "must be an integer")
                }
                steps.append(n)
            }
            c.steps = steps
        }
        if let v = try r.optionalInt("pause_seconds") { c.pauseSeconds = v }
        if let v = try r.optionalInt("min_requests") { c.minRequests = v }
        if let v = try r.optionalInt("max_inconclusive_seconds") { c.maxInconclusiveSeconds = v }
        if let v = try r.optionalBool("step_gates") { c.stepGates = v }
        if let a = try r.optionalObject("analysis") {
            try a.rejectUnknown(Self.analysisFields)
            if let v = try a.optionalInt("interval_seconds") { c.analysis.intervalSeconds = v }
            if let v = try a.optionalInt("failure_limit") { c.analysis.failureLimit = v }
            if let v = try a.optionalInt("min_requests") { c.analysis.minRequests = v }
            if let v = try a.optionalDouble("max_error_rate_delta") { c.analysis.maxErrorRateDelta = v }
            if let v = try a.optionalDouble("max_p95_ratio") { c.analysis.maxP95Ratio = v }
            if let v = try a.optionalDouble("min_p95_delta_ms") { c.analysis.minP95DeltaMs = v }
        }
        try c.check(path: path)
        return c
    }

    /// Checks every figure against the contract's ranges (the same as protocol/openrpc.json's, which a
    /// policy file does not go through).
    /// - Throws: `JSONShapeError` naming the member at fault.
    public func check(path: String = "canary") throws(JSONShapeError) {
        func at(_ k: String) -> String { path.isEmpty ? k : "\(path).\(k)" }
        func range<T: Comparable>(_ v: T, _ r: ClosedRange<T>, _ k: String) throws(JSONShapeError) {
            guard r.contains(v) else { throw JSONShapeError(path: at(k), message: "must be between \(r.lowerBound) and \(r.upperBound)") }
        }
        guard (1...10).contains(steps.count) else { throw JSONShapeError(path: at("steps"), message: "must have 1 to 10 weights") }
        for (i, w) in steps.enumerated() {
            guard (1...100).contains(w) else { throw JSONShapeError(path: "\(at("steps"))[\(i)]", message: "must be between 1 and 100") }
            if i > 0, w <= steps[i - 1] { throw JSONShapeError(path: at("steps"), message: "weights must be strictly increasing") }
        }
        guard steps.last == 100 else { throw JSONShapeError(path: at("steps"), message: "the last weight must be 100") }
        try range(pauseSeconds, 1...3600, "pause_seconds")
        try range(minRequests, 0...1_000_000, "min_requests")
        try range(maxInconclusiveSeconds, 0...86_400, "max_inconclusive_seconds")
        try range(analysis.intervalSeconds, 1...600, "analysis.interval_seconds")
        try range(analysis.failureLimit, 1...100, "analysis.failure_limit")
        try range(analysis.minRequests, 1...1_000_000, "analysis.min_requests")
        try range(analysis.maxErrorRateDelta, 0...1, "analysis.max_error_rate_delta")
        try range(analysis.maxP95Ratio, 1...100, "analysis.max_p95_ratio")
        try range(analysis.minP95DeltaMs, 0...60_000, "analysis.min_p95_delta_ms")
    }

    /// The resolved settings as the plan's `config.canary` echoes them (every member present).
    public func toJSON() -> JSONValue {
        .object([
            "steps": .array(steps.map { .integer($0) }), "pause_seconds": .integer(pauseSeconds), "min_requests": .integer(minRequests),
            "max_inconclusive_seconds": .integer(maxInconclusiveSeconds), "step_gates": .bool(stepGates), "analysis": analysis.toJSON(),
        ])
    }

    /// Parses the plan's `config.canary` (every member required, as ``toJSON()`` writes it).
    /// - Throws: `JSONShapeError` for a member missing, of the wrong type or out of range.
    public init(json: JSONValue, path: String = "canary") throws(JSONShapeError) {
        let r = try ObjectReader(json, path: path)
        for k in Self.fields where !r.has(k) { throw JSONShapeError(path: r.at(k), message: "is required") }
        let a = try r.object("analysis")
        for k in Self.analysisFields where !a.has(k) { throw JSONShapeError(path: a.at(k), message: "is required") }
        self = try CanaryConfig.defaults.applying(json, path: path)
    }
}
