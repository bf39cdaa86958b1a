/// Why a rollout ended without reaching (or staying) live. Raw values are the wire spelling of the
/// stored `error.reason`; the engine compares cases, never strings.
public enum FailureReason: String, Sendable, Hashable, CaseIterable {
    /// The slot's process could not be started.
    case slotStartFailed = "slot_start_failed"
    /// The slot did not answer its readiness probe within the startup deadline.
    case readinessFailed = "readiness_failed"
    /// A smoke test failed.
    case smokeTestFailed = "smoke_test_failed"
    /// More than half of the baseline requests failed.
    case baselineUnhealthy = "baseline_unhealthy"
    /// The new slot's process died (before the switch or during the bake).
    case slotDied = "slot_died"
    /// The router refused the new route.
    case switchFailed = "switch_failed"
    /// The router took the route but did not answer from the new slot in time.
    case switchUnverified = "switch_unverified"
    /// The bake saw the error rate above its limit.
    case errorRateRegression = "error_rate_regression"
    /// The bake saw p95 latency above its limit.
    case latencyRegression = "latency_regression"
    /// The agent running the rollout stopped (or its request was cancelled).
    case interrupted
    /// A gate's approval window closed.
    case approvalExpired = "approval_expired"
    /// A canary's analysis failed `failure_limit` intervals in a row (the message has the figures).
    case analysisFailed = "analysis_failed"
    /// A canary stayed inconclusive (too little traffic) for `max_inconclusive_seconds`.
    case analysisInconclusive = "analysis_inconclusive"
    /// A person stopped the canary (`deploy.abort`, or a rejection at a step gate).
    case aborted

    /// The wire spelling.
    public var wireName: String { rawValue }

    /// `true` when the stored failure also ended a request with a refusal (its stored code is the refusal's);
    /// the others are failures of the deployment on its own.
    public var isRefusal: Bool { self == .approvalExpired }
}

/// A failure as the ledger keeps it: the reason, a sentence, and the step that failed.
public struct Failure: Sendable, Hashable {
    /// Why.
    public var reason: FailureReason
    /// A sentence for people.
    public var message: String
    /// The step that failed (its wire name).
    public var step: Step

    /// A failure.
    public init(_ reason: FailureReason, step: Step, _ message: String) {
        self.reason = reason
        self.message = message
        self.step = step
    }
}
