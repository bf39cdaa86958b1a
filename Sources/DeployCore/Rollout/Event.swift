/// What the runner observed, fed to ``Machine/next(_:_:)``.
public enum RolloutEvent: Sendable, Hashable {
    /// `deploy.execute` (or a rollback redeploy) starts the rollout.
    case execute
    /// The new slot's process started.
    case slotStarted
    /// The new slot's process could not start.
    case slotStartFailed(String)
    /// The new slot answered its readiness probe.
    case ready
    /// The new slot was not ready within its deadline (or died).
    case notReady(String)
    /// The smoke tests ran: all passed, or the first failure.
    case smoke(passed: Bool, detail: String)
    /// The baseline load's figures.
    case baseline(Metrics)
    /// A person approved the pending gate.
    case approved
    /// A person rejected the pending gate.
    case rejected
    /// The router answers from the slot it was asked to route to.
    case switched
    /// The switch failed; the router was asked to keep what was live.
    case switchFailed(FailureReason, String)
    /// One bake window through the router: the figures, whether the new slot still runs, whether the
    /// registry still names this deployment live.
    /// `traffic`: the new version's real traffic since the switch against the old version's just before it
    /// (nil when the router keeps no request log).
    case bakeWindow(observed: Metrics, slotAlive: Bool, stillLive: Bool, traffic: AnalysisResult? = nil)
    /// A person asked to roll the live version back to the warm previous one.
    case rollBack
    /// The request running the rollout was cancelled.
    case cancelled
    /// Reconciliation found the agent that owned the rollout gone.
    case ownerGone
    /// A timer fired: the pending gate's window is checked against ``Snapshot/gateExpired``.
    case timerFired
    /// The router took the canary's weights: the candidate now has `weight` percent.
    case weightsSet(Int)
    /// The router refused the canary's weights (it was asked to keep the stable version's).
    case weightsFailed(String)
    /// One canary analysis interval, and whether the candidate's process still runs.
    case analysisWindow(AnalysisResult, slotAlive: Bool)
    /// A person asked to stop the canary (`deploy.abort`), with their reason.
    case abort(String)

    /// Every case with a representative payload (for exhaustive tables and docs).
    public static let all: [RolloutEvent] = [
        .execute, .slotStarted, .slotStartFailed("x"), .ready, .notReady("x"), .smoke(passed: true, detail: ""),
        .smoke(passed: false, detail: "x"), .baseline(Metrics(p50Ms: 1, p95Ms: 1, p99Ms: 1, errorRate: 0, rps: 1)),
        .baseline(Metrics(p50Ms: 1, p95Ms: 1, p99Ms: 1, errorRate: 0.9, rps: 1)), .approved, .rejected, .switched,
        .switchFailed(.switchFailed, "x"), .bakeWindow(observed: Metrics(p50Ms: 1, p95Ms: 1, p99Ms: 1, errorRate: 0, rps: 1), slotAlive: true, stillLive: true),
        .bakeWindow(observed: Metrics(p50Ms: 1, p95Ms: 1, p99Ms: 1, errorRate: 0.9, rps: 1), slotAlive: true, stillLive: true),
        .bakeWindow(observed: Metrics(p50Ms: 1, p95Ms: 1, p99Ms: 1, errorRate: 0, rps: 1), slotAlive: false, stillLive: true),
        .bakeWindow(observed: Metrics(p50Ms: 1, p95Ms: 1, p99Ms: 1, errorRate: 0, rps: 1), slotAlive: true, stillLive: false),
        .rollBack, .cancelled, .ownerGone, .timerFired, .weightsSet(5), .weightsSet(100), .weightsFailed("x"),
        .analysisWindow(AnalysisResult(verdict: .pass, stable: .none, candidate: .none, limits: .init(), message: ""), slotAlive: true),
        .analysisWindow(AnalysisResult(verdict: .fail, stable: .none, candidate: .none, limits: .init(), message: ""), slotAlive: true),
        .analysisWindow(AnalysisResult(verdict: .inconclusive, stable: .none, candidate: .none, limits: .init(), message: ""), slotAlive: true),
        .analysisWindow(AnalysisResult(verdict: .pass, stable: .none, candidate: .none, limits: .init(), message: ""), slotAlive: false),
        .abort("x"),
    ]

    /// A stable name, e.g. `slot_started`, `bake_window`.
    public var name: String {
        switch self {
        case .execute: return "execute"
        case .slotStarted: return "slot_started"
        case .slotStartFailed: return "slot_start_failed"
        case .ready: return "ready"
        case .notReady: return "not_ready"
        case .smoke: return "smoke"
        case .baseline: return "baseline"
        case .approved: return "approved"
        case .rejected: return "rejected"
        case .switched: return "switched"
        case .switchFailed: return "switch_failed"
        case .bakeWindow: return "bake_window"
        case .rollBack: return "roll_back"
        case .cancelled: return "cancelled"
        case .ownerGone: return "owner_gone"
        case .timerFired: return "timer_fired"
        case .weightsSet: return "weights_set"
        case .weightsFailed: return "weights_failed"
        case .analysisWindow: return "analysis_window"
        case .abort: return "abort"
        }
    }
}
