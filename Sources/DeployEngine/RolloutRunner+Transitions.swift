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
    /// Persists a status change with the event the step calls for.
    mutating func transition(_ event: LifecycleEvent) throws(EngineError) {
        let (step, who, message, changes, data) = describe(event)
        record = try engine.move(record, event, step: step, actor: who, message: message, changes: changes, data: data)
    }

    /// The event's step, actor, sentence, the record's changes and the data kept with it.
    func describe(_ event: LifecycleEvent) -> (String, String, String, DeploymentChanges, JSONValue) {
        let t = engine.now()
        let none = JSONValue.object([:])
        switch event {
        case .execute:
            return ("execute", actor, executeNote?.message ?? "execution started by \(actor)",
                    DeploymentChanges(startedAt: t, owner: .some(engine.config.agentID)), executeNote?.data ?? none)
        case .slotReady:
            let r = readiness
            return ("readiness", "model-deployer", "ready after \(fixed(r?.elapsedMs ?? 0, 0)) ms (\(r?.attempts ?? 0) probes)",
                    DeploymentChanges(slot: newSlot?.ref.id.rawValue ?? facts.slot),
                    ["elapsed_ms": .double(r?.elapsedMs ?? 0), "port": .int(Int64(newSlot?.address.port ?? 0))])
        case .validated(let gate):
            let validated = DeploymentChanges(healthCheckPassed: true, metricsBaseline: baseline?.dictionary)
            return gate ? ("gate:promote", "model-deployer", "validated; waiting for approval at gate promote before the traffic switch", validated, none)
                        : ("validate", "model-deployer", "validated; switching traffic", validated, none)
        case .approve(let gate), .reject(let gate):
            return describeAnswer(event, gate: gate, at: t)
        case .startCanary where approval != nil:
            // The promotion gate's approval starts the canary: one event says both.
            let (step, who, message, changes, data) = describeAnswer(.approve(gate: .promote), gate: .promote, at: t)
            return (step, who, message + "; the canary begins", changes, data)
        case .startCanary:
            return ("validate", "model-deployer", "validated; the canary begins",
                    DeploymentChanges(healthCheckPassed: true, metricsBaseline: baseline?.dictionary, owner: .some(engine.config.agentID)), none)
        case .awaitStep:
            return ("gate:step", "model-deployer", "waiting for approval at gate step before the next weight step", DeploymentChanges(), none)
        case .switched where step == .reconcile:
            return ("reconcile", "model-deployer", "the agent stopped after the switch; the registry already names this deployment live",
                    DeploymentChanges(finishedAt: t, owner: .some(nil)), none)
        case .switched:
            let slot = newSlot?.ref.id.rawValue ?? facts.slot
            return ("switch", actor, "traffic switched to slot \(slot) in \(fixed(switchMs, 0)) ms",
                    DeploymentChanges(endpointURL: ports.router.endpointURL(listenPort: endpointPort ?? 0, modelName: record.modelName,
                                                                             environment: record.environment), finishedAt: t),
                    .object(switchSplit.merging(["switch_ms": .double(switchMs)]) { _, b in b }))
        default:
            return (step.wireName, actor, event.name, DeploymentChanges(), none)
        }
    }

    func describeAnswer(_ event: LifecycleEvent, gate: GateKind, at t: Date) -> (String, String, String, DeploymentChanges, JSONValue) {
        let who = approval?.approver ?? actor
        let comment = approval?.comment.map { ": \($0)" } ?? ""
        let data = approval?.data ?? .object([:])
        if case .reject = event {
            return ("gate:\(gate.rawValue)", who, "\(who) rejected at gate \(gate.rawValue)\(comment)", DeploymentChanges(finishedAt: t), data)
        }
        // Approving the promotion resumes the rollout here: this agent owns it now.
        let owner: String?? = gate == .promote ? .some(engine.config.agentID) : nil
        return ("gate:\(gate.rawValue)", who, "\(who) approved gate \(gate.rawValue)\(comment)",
                DeploymentChanges(approvedBy: who, approvedAt: t, owner: owner), data)
    }

    /// Records a failure: the new slot is torn down, the live version stays untouched.
    mutating func fail(_ f: Failure) async throws(EngineError) {
        await engine.stopSlot(record, slot: record.slot ?? facts.slot)
        let current = try engine.record(record.deploymentId)
        record = try engine.move(
            current, .fail, step: f.step.wireName, actor: "model-deployer", message: "failed at \(f.step.wireName): \(f.message)",
            changes: DeploymentChanges(healthCheckPassed: f.step == .readiness ? false : nil, finishedAt: engine.now(), error: engine.failureJSON(f)),
            data: ["reason": .string(f.reason.wireName)])
    }

    /// Records an interruption: staging slot stopped, router pointed back at what is live.
    mutating func interrupt(_ why: String) async throws(EngineError) {
        let reason = interruptWhy ?? why
        let current = try engine.record(record.deploymentId)
        guard [.deploying, .validating, .switching, .canary].contains(current.status) else { record = current; return }
        await engine.stopSlot(current)
        record = try engine.move(
            current, .interrupt, step: "reconcile", actor: "model-deployer", message: "interrupted: \(reason); staging slot stopped, live untouched",
            changes: DeploymentChanges(finishedAt: engine.now(),
                                       error: engine.failureJSON(reason: FailureReason.interrupted.wireName, message: reason,
                                                                 step: current.status.rawValue, refusal: nil),
                                       owner: .some(nil)))
        if let entry = try engine.registryEntry(record.modelName, record.environment) {
            await engine.reconcileRoute(entry)
        } else {
            await engine.attempt("remove the route") { () throws(RuntimeError) in
                try await ports.router.removeRoute(modelName: record.modelName, environment: record.environment)
            }
        }
    }

    /// Records the expiry of the pending gate.
    mutating func expire(_ f: Failure) throws(EngineError) {
        record = try engine.move(
            record, .expire, step: "expire", actor: "model-deployer", message: expiryMessage ?? "gate expired without an answer",
            changes: DeploymentChanges(finishedAt: engine.now(), error: engine.failureJSON(f)))
    }
}
