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
        var split = SwitchSplit(engine)
        split.laps = callSplit
        if let handedOver = rollbackStart {
            // From the call handing over to here: the runner and the machine's first step.
            split.last = handedOver
            split.lap("prepare_ms")
        }
        let routeStart = ContinuousClock.now
        guard let entry = try engine.registryEntry(record.modelName, record.environment), entry.deploymentId == record.deploymentId,
            let prevSlot = entry.previousSlot, let prevVersion = entry.previousVersion,
            let state = await ports.slots.state(engine.slotRef(entry, prevSlot)), state.alive, let port = Planner.port(of: entry.endpointURL)
        else {
            return .switchFailed(.slotDied, "the previous version is not running warm any more")
        }
        previous = entry
        // The version undone stays attached at weight 0: it is the warm way forward now (Engine.warmBackend).
        let warm = await engine.warmBackend(entry, slot: entry.slot, version: entry.modelVersion, besides: state.ref.id)
        let spec = RouteSpec(modelName: entry.modelName, environment: entry.environment, listenPort: port,
                             backends: [WeightedBackend(slot: state.ref.id, address: state.address, version: prevVersion)] + warm)
        split.lap("lookup_ms")
        do {
            // Started only when it is down: the check is in this thread (measured: an ensureRunning that finds
            // HAProxy running cost about 1 ms, most of it a thread of its own; apply checks again under its lock).
            if await ports.router.needsRestart() { try await ports.router.ensureRunning() }
            split.lap("ensure_running_ms")
            try await ports.router.apply(spec)
            split.lap("apply_ms")
            for (name, ms) in ports.router.applyLaps(modelName: entry.modelName, environment: entry.environment) {
                split.laps["apply_" + name] = .double(ms)
            }
        } catch {
            return .switchFailed(.switchFailed, "\(error.code): \(error.message)")
        }
        // The read-back. When the caller has just had the warm slot answer its readiness probe (deploy.rollback),
        // a router whose runtime state is authoritative (HAProxy: the weight commands answer once applied)
        // is read back over its admin socket, without one more request to BentoML through it; otherwise a
        // request through the router must come back from the slot.
        if warmProbed, let own = await ports.router.readBack(listenPort: port, serving: state.ref.id, address: state.address) {
            guard own else {
                return .switchFailed(.switchUnverified, "the router's state, read back, does not send all traffic to slot \(prevSlot)")
            }
            split.lap("read_back_ms")
        } else {
            guard await ports.router.verify(listenPort: port, serving: state.ref.id, timeoutMs: 5000) else {
                return .switchFailed(.switchUnverified, "the router did not answer from slot \(prevSlot) within 5 s")
            }
            split.lap("verify_ms")
        }
        switchSplit = split.laps
        switchMs = engine.ms(since: routeStart)
        return .switched
    }

    /// The rollback deployment, live; the undone one leaves live (with `cause` as its error when the bake failed).
    mutating func recordRollback(_ cause: Failure?) throws(EngineError) {
        guard let entry = previous else { return }
        // A person's abort during the bake is theirs, with its own sentence; a failed bake is the agent's.
        let byPerson = cause == nil || cause?.reason == .aborted
        let who = byPerson ? actor : "model-deployer"
        let reason = cause.map { $0.reason == .aborted ? $0.message : "automatic rollback: \($0.message)" } ?? rollbackReason
        let ledgerStart = ContinuousClock.now
        defer { ledgerMs = engine.ms(since: ledgerStart) }
        let rec = try engine.recordWarmRollback(undone: record, entry: entry, reason: reason, requestedBy: who, switchMs: switchMs,
                                                switchSplit: switchSplit)
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
