import JSON

/// Which slot of a rollout an action means; the runner resolves it to the runtime's slot id.
public enum SlotRole: String, Sendable, Hashable {
    /// The slot the new version runs in.
    case new
    /// The slot of the version live before it.
    case previous
}

/// What the runner must do, in order. Actions that observe something (start, probe, measure, route)
/// answer with the next ``RolloutEvent``; the others only take effect.
public enum RolloutAction: Sendable, Hashable {
    /// Persist the status change (compare-and-set in the ledger, with an event).
    case transition(LifecycleEvent)
    /// Start the new version in its slot (stopping what ran there first). Answers `slotStarted` or `slotStartFailed`.
    case startSlot
    /// Wait for the new slot's readiness. Answers `ready` or `notReady`.
    case probeReadiness
    /// Run the plan's smoke tests against the new slot. Answers `smoke`.
    case runSmokeTests
    /// Take the metrics baseline on the new slot. Answers `baseline`.
    case measureBaseline
    /// Send all traffic to the slot of `role` and read it back. Answers `switched` or `switchFailed`.
    case route(SlotRole)
    /// Point the router back at what the registry names live.
    case restoreRoute
    /// Name this deployment live in the registry (the previous one becomes the rollback target).
    case setRegistry
    /// Mark the deployment it replaced superseded (or rolled back, for a rollback).
    case closePrevious
    /// Stop a slot (never the one the registry serves) and forget it as a rollback target.
    case stopSlot(SlotRole)
    /// Stop the previous slot after `seconds` if it is still the warm one then.
    case scheduleRetire(seconds: Int)
    /// Wait `afterMs`, then measure a bake window through the router. Answers `bakeWindow`.
    case measureBake(afterMs: Int)
    /// Record the warm switch back as a new `rollback` deployment, live; the registry names it, and the
    /// rolled-back deployment keeps `cause` as its error (nil: a person asked for it).
    case recordRollback(cause: Failure?)
    /// Record a warm switch back that failed as a `failed` rollback deployment.
    case recordFailedRollback(Failure)
    /// Stop the rolled-back version's slot after `seconds` (roll forward stays one switch until then).
    case retireUndone(seconds: Int)
    /// Record the failure: new slot stopped, status `failed` with the stored error.
    case fail(Failure)
    /// Record the expiry of the pending gate (status `expired` with the stored error).
    case expire(Failure)
    /// Record the interruption: new slot stopped, status `interrupted`, router pointed at live.
    case interrupt(String)
    /// Set the canary's weights: the candidate at `percent`, the stable version at the rest (raised before
    /// the candidate's is lowered). Answers `weightsSet` or `weightsFailed`.
    case setWeights(Int)
    /// Wait `afterMs`, then judge the interval that just ended: the candidate's and the stable version's
    /// real traffic through the router. Answers `analysisWindow`, or nothing when the deployment left
    /// `canary` meanwhile (another request aborted it).
    case measureAnalysis(afterMs: Int)
    /// Stop the canary: weights back on the stable version first, the candidate's slot stopped, status
    /// `aborted` with the stored error.
    case abort(Failure)
    /// Append an informational event.
    case note(Step, String)
    /// Append an informational event with data (a canary step's weights, an analysis interval's figures).
    case noteData(Step, String, JSONValue)
    /// Tell the caller where the rollout is, with data (the contract's `deploy.progress` `data`).
    case reportData(Step, String, Double, JSONValue)
    /// Tell the caller where the rollout is: the step, a sentence, the percentage (the step's own, 100 at the end).
    case report(Step, String, Double)
}

/// The machine's answer to one event.
public struct Decision: Sendable, Hashable {
    /// The status after the actions (unchanged when the event changes nothing).
    public var status: DeploymentStatus
    /// What to do, in order.
    public var actions: [RolloutAction]
    /// The step the rollout is at afterwards.
    public var step: Step
    /// Progress 0...100 to report (the step's own).
    public var progress: Double
    /// A sentence for the progress notification and logs.
    public var message: String
    /// The bake's count of regressed windows in a row, after this event.
    public var bakeStrikes: Int
    /// `true` when the event does not apply in this status (nothing changes).
    public var isIgnored: Bool
    /// Why the live version is being rolled back (a failed bake), carried to the end of the switch back.
    public var rollbackCause: Failure?
    /// Where the canary is after this event; nil: unchanged.
    public var canary: CanaryProgress?

    /// A decision.
    public init(status: DeploymentStatus, actions: [RolloutAction], step: Step, progress: Double? = nil, message: String, bakeStrikes: Int = 0, ignored: Bool = false, rollbackCause: Failure? = nil) {
        self.status = status
        self.actions = actions
        self.step = step
        self.progress = progress ?? step.progress
        self.message = message
        self.bakeStrikes = bakeStrikes
        self.isIgnored = ignored
        self.rollbackCause = rollbackCause
    }
}
