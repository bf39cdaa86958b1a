import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

/// Three slots per (model, environment): the live version, the warm previous one and the candidate. A
/// candidate never takes (or stops) a slot the registry keeps; the warm previous one is replaced only when
/// a new version goes live.
extension RolloutRunner {
    /// Why the candidate's slot cannot be used, when the registry keeps it (the live or the warm previous
    /// version runs there); `nil` when it is free. A plan made before the third slot existed may name one.
    func slotIsKept() throws(EngineError) -> String? {
        guard let entry = try engine.registryEntry(record.modelName, record.environment) else { return nil }
        let id = newSlotRef.id.rawValue
        if entry.slot == id {
            return "slot \(id) serves the live version \(entry.modelVersion); plan again (the plan picks a free slot)"
        }
        if entry.previousSlot == id {
            return "slot \(id) holds the warm previous version \(entry.previousVersion ?? "?"), the rollback target; plan again (the plan picks a free slot)"
        }
        return nil
    }

    /// Once the new version is live, the version that was warm before it (in the third slot) is no rollback
    /// target any more: the registry now names the replaced live version instead. Its slot is stopped here,
    /// after the switch, so a failed attempt never costs the warm one.
    func retireOlderWarm() async {
        guard let previous, let older = previous.previousSlot, older != previous.slot, older != newSlotRef.id.rawValue else { return }
        let ref = engine.slotRef(record, older)
        let slots = engine.slots
        // It takes no traffic: the switch just made took its server out of the router (drained first), or it
        // had none; so no graceful drain here, which would hold the rollout for about a second.
        let stopped = await engine.detached { await slots.stop(ref, graceSeconds: 0) }
        // The switch normally left its server out already (it was no backend of the new route); one still
        // attached at weight 0 (a route applied by an older agent) leaves the router now.
        if stopped { await engine.detachFromRouter(record.modelName, record.environment, slot: older) }
        if stopped {
            note(.retirePrevious, "stopped slot \(older) (\(previous.previousVersion ?? "?")): \(previous.modelVersion) is the warm previous version now")
        } else {
            // Reconciliation stops slots the registry does not name (stopOrphans); say that it is left to it.
            note(.retirePrevious, "slot \(older) (\(previous.previousVersion ?? "?")) did not stop; the next reconciliation stops it")
        }
    }
}

/// Laps of a router switch (router started, change applied, read back), for the switch's event: where the
/// time of a switch or a rollback goes.
struct SwitchSplit {
    let engine: Engine
    var last = ContinuousClock.now
    var laps: [String: JSONValue] = [:]

    init(_ engine: Engine) { self.engine = engine }

    mutating func lap(_ name: String) {
        laps[name] = .double(engine.ms(since: last))
        last = ContinuousClock.now
    }
}
