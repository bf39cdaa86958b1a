#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

/// Runs one rollout: asks ``Machine`` what to do with each event, performs the actions through the
/// runtime ports and the ledger, and feeds what they observed back as the next event. The same loop
/// serves execute, the promotion approval, a rollback by redeploy, gate expiry and reconciliation; it
/// decides nothing itself.
struct RolloutRunner {
    let engine: Engine
    let plan: DeploymentPlan?
    let facts: RolloutPlan
    let actor: String
    let progress: ProgressHandler
    /// The deployment as the ledger last returned it.
    var record: DeploymentRecord
    var step: Step
    var strikes = 0
    /// Where a canary is (step, pause, requests, analysis so far).
    var canary = CanaryProgress()
    var bakeEndsAt: Date?
    /// The previous version's real traffic just before the switch (the bake's baseline when the router
    /// keeps a request log), and when the switch took effect.
    var trafficBaseline: WindowFigures?
    var switchedAt = ContinuousClock.now
    /// Where the bake's next real-traffic window starts (``Analysis/settleMs`` after the switch, then
    /// where the last window ended).
    var bakeWindowFrom: Date?
    /// When a canary's weights last changed: the first analysis window of a step starts
    /// ``Analysis/settleMs`` later.
    var weightsSetAt: Date?
    /// The new version's slot once started (or found, when resuming after the promotion gate).
    var newSlot: RunningSlot?
    var readiness: ReadinessResult?
    var baseline: Metrics?
    /// What was live before the switch (read when the switch begins).
    var previous: RegistryEntry?
    var endpointPort: Int?
    var switchMs: Double = 0
    /// Where the switch's time went (`ensure_running_ms`, `apply_ms`, `verify_ms`), kept with its event.
    var switchSplit: [String: JSONValue] = [:]
    /// Set by the caller: whether the pending gate's window has closed, and the sentence for it.
    var gateExpired = false
    var expiryMessage: String?
    /// Set by the caller for `approve`/`reject`: who answered, and the event's data.
    var approval: (approver: String, comment: String?, data: JSONValue)?
    /// Set by the caller for `execute`: the event's message and data.
    var executeNote: (message: String, data: JSONValue)?
    /// Set by reconciliation: why the owner is considered gone.
    var interruptWhy: String?
    /// A switch back to the previous version: why (a failed bake), who asked and their reason, and
    /// what it recorded (the new rollback deployment, or the refusal of a failed switch).
    var rollbackCause: Failure?
    var rollbackReason = ""
    var rollbackRecord: DeploymentRecord?
    var rollbackError: EngineError?
    /// When `deploy.rollback` (or an abort) handed the switch back to the runner; nil for the bake's own.
    var rollbackStart: ContinuousClock.Instant?
    /// Where a `deploy.rollback` call's time went before the switch (checks, the warm slot's probe, history),
    /// recorded with the switch's laps; and the ledger's time once the switch took effect.
    var callSplit: [String: JSONValue] = [:]
    var ledgerMs: Double = 0
    /// Set by `deploy.rollback`: the warm slot answered its readiness probe just before the switch back.
    var warmProbed = false
    private(set) var cancelledByCaller = false

    init(engine: Engine, record: DeploymentRecord, plan: DeploymentPlan?, actor: String, progress: @escaping ProgressHandler) {
        self.engine = engine
        self.record = record
        self.plan = plan
        self.actor = actor
        self.progress = progress
        self.facts = plan.map(RolloutPlan.init) ?? RolloutPlan(
            strategy: record.strategy, version: record.modelVersion, slot: record.slot ?? "", hasSmokeTests: false, hasPromotionGate: false)
        self.step = Lifecycle.pendingGate(record.status).map(Step.gate) ?? .execute
        self.baseline = record.metricsBaseline.map(Metrics.init(dictionary:))
        if record.status == .awaitingStep { self.canary.index = Self.canaryIndex(engine, record) }
    }

    /// Feeds `first`, then whatever the actions observe, until an event changes nothing (the rollout
    /// ended, or waits at a gate). A cancelled caller interrupts the rollout cleanly, then gets `cancelled`.
    mutating func run(_ first: RolloutEvent) async throws(EngineError) -> DeploymentRecord {
        var next: RolloutEvent? = first
        while let event = next {
            let decision = Machine.next(try snapshot(), event)
            engine.log("rollout", ["deployment_id": .string(record.deploymentId), "event": .string(event.name),
                                   "status": .string(decision.status.rawValue), "message": .string(decision.message)])
            if decision.isIgnored { break }
            step = decision.step
            strikes = decision.bakeStrikes
            if let c = decision.canary { canary = c }
            rollbackCause = decision.rollbackCause
            next = nil
            for action in decision.actions {
                if let observed = try await perform(action) { next = observed }
            }
            if next != nil, Task.isCancelled, [.deploying, .validating, .canary].contains(record.status) {
                next = .cancelled
                cancelledByCaller = true
            }
        }
        if cancelledByCaller { throw EngineError.cancelled }
        return try engine.record(record.deploymentId)
    }

    /// The machine's view of the rollout now.
    func snapshot() throws(EngineError) -> Snapshot {
        let entry = try engine.registryEntry(record.modelName, record.environment)
        let namesThis = entry?.deploymentId == record.deploymentId
        let before = previous ?? (namesThis ? nil : entry)
        let newSlotID = record.slot ?? facts.slot
        return Snapshot(
            status: record.status, step: step, plan: facts,
            hasPrevious: before.map { $0.slot != newSlotID } ?? false,
            hasWarmPrevious: namesThis && entry?.previousSlot != nil,
            registryNamesThis: namesThis, baseline: baseline, bakeStrikes: strikes, bakeEndsAt: bakeEndsAt,
            now: engine.now(), gateExpired: gateExpired, rollbackCause: rollbackCause,
            stableVersion: before?.modelVersion, canary: canary)
    }

    func report(_ step: Step, _ message: String, _ percent: Double, data: JSONValue? = nil) {
        // The switch back is reported as the rollback deployment's progress.
        let subject = step == .rollback ? rollbackRecord ?? record : record
        progress(ProgressUpdate(deploymentId: subject.deploymentId, status: subject.status, step: step.wireName, message: message,
                                percent: percent, at: engine.now(), data: data))
        engine.log("progress", ["deployment_id": .string(record.deploymentId), "step": .string(step.wireName), "message": .string(message)])
    }

    func note(_ step: Step, _ message: String, data: JSONValue = .object([:])) {
        engine.note(record, step: step.wireName, message: message, data: data)
    }

    /// The slot the new version runs in.
    var newSlotRef: SlotRef { engine.slotRef(record, record.slot ?? facts.slot) }
}
