#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

extension RolloutRunner {
    /// Sends all traffic back to the registry's warm previous slot and reads it back.
    mutating func routeBack() async throws(EngineError) -> RolloutEvent {
        rollbackStart = ContinuousClock.now
        guard let entry = try engine.registryEntry(record.modelName, record.environment), entry.deploymentId == record.deploymentId,
            let prevSlot = entry.previousSlot, let prevVersion = entry.previousVersion,
            let state = await ports.slots.state(engine.slotRef(entry, prevSlot)), state.alive, let port = Planner.port(of: entry.endpointURL)
        else {
            return .switchFailed(.slotDied, "the previous version is not running warm any more")
        }
        previous = entry
        let spec = RouteSpec(modelName: entry.modelName, environment: entry.environment, listenPort: port,
                             backends: [WeightedBackend(slot: state.ref.id, address: state.address, version: prevVersion)])
        do {
            try await ports.router.ensureRunning()
            try await ports.router.apply(spec)
        } catch {
            return .switchFailed(.switchFailed, "\(error.code): \(error.message)")
        }
        guard await ports.router.verify(listenPort: port, serving: state.ref.id, timeoutMs: 5000) else {
            return .switchFailed(.switchUnverified, "the router did not answer from slot \(prevSlot) within 5 s")
        }
        switchMs = engine.ms(since: rollbackStart)
        return .switched
    }

    /// The rollback deployment, live; the undone one leaves live (with `cause` as its error when the bake failed).
    mutating func recordRollback(_ cause: Failure?) throws(EngineError) {
        guard let entry = previous else { return }
        // A person's abort during the bake is theirs, with its own sentence; a failed bake is the agent's.
        let byPerson = cause == nil || cause?.reason == .aborted
        let who = byPerson ? actor : "model-deployer"
        let reason = cause.map { $0.reason == .aborted ? $0.message : "automatic rollback: \($0.message)" } ?? rollbackReason
        let rec = try engine.recordWarmRollback(undone: record, entry: entry, reason: reason, requestedBy: who, switchMs: switchMs)
        rollbackRecord = rec
        let current = try engine.record(record.deploymentId)
        guard current.status == .live else { record = current; return }
        do {
            record = try engine.move(current, .rollBack, step: Step.rollback.wireName, actor: who,
                                     message: "rolled back to \(rec.modelVersion) (deployment \(rec.deploymentId)): \(reason)",
                                     changes: DeploymentChanges(error: cause.map { engine.failureJSON($0) }))
        } catch let e where e.kind == .conflict {
            // It left live meanwhile (superseded, rolled back by another call): the registry already moved on.
        }
    }

    /// A switch back that did not take: recorded as a failed rollback deployment; a person's request gets the refusal.
    mutating func recordFailedRollback(_ f: Failure) throws(EngineError) {
        guard let entry = try engine.registryEntry(record.modelName, record.environment) else { return }
        let who = rollbackCause == nil ? actor : "model-deployer"
        let reason = rollbackCause.map { "automatic rollback: \($0.message)" } ?? rollbackReason
        let refusal: EngineError = f.reason == .slotDied
            ? .nothingToRollBack("nothing_to_roll_back", f.message)
            : EngineError(.runtimeUnavailable, reason: f.reason == .switchUnverified ? f.reason.wireName : "runtime_unavailable", message: f.message)
        guard f.reason != .slotDied else { rollbackError = refusal; return }
        rollbackError = engine.recordFailedRollback(undone: record, entry: entry, requestedBy: who, reason: reason, failure: refusal)
    }

    /// The undone version stays warm in its slot for the keep-warm time (roll forward stays one switch).
    func retireUndone(_ seconds: Int) {
        guard let rec = rollbackRecord else { return }
        engine.scheduleRetirement(rec, slot: record.slot ?? facts.slot, after: seconds)
    }
}
