#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

extension Engine {
    /// Reconciles once per agent process, on the first call that touches the ledger (not at start-up, so
    /// the first answer stays fast).
    /// Also repairs a router found down, on every call.
    func reconcileOnce() async {
        if reconciledOnce() { await reconcile() }
        await repairRouterIfDown()
    }

    /// After a crash: in-flight work whose owner is gone is interrupted and cleaned up (staging slot stopped,
    /// live untouched); the router is pointed back at what the registry says is live; warm slots past their
    /// time and orphaned slot processes are stopped. The ledger records each action.
    public func reconcile() async {
        let active: [DeploymentRecord] = (try? store.deployments(withStatuses: [.deploying, .validating, .switching])) ?? []
        for r in active where !ownerIsAlive(r.owner) {
            await reconcileInterrupted(r)
        }
        let entries = (try? store.allRegistryEntries()) ?? []
        for entry in entries {
            await reconcileRoute(entry)
        }
        await stopOrphans(entries)
    }

    func reconcileInterrupted(_ r: DeploymentRecord) async {
        let entry = try? store.registry(modelName: r.modelName, environment: r.environment)
        if r.status == .switching, let entry, entry.deploymentId == r.deploymentId {
            // The switch and the registry update were done; only the status change was lost. Finish it.
            _ = try? move(r, .switched, step: "reconcile", actor: "model-deployer",
                          message: "the agent stopped after the switch; the registry already names this deployment live",
                          changes: DeploymentChanges(finishedAt: now(), owner: .some(nil)))
            return
        }
        await cleanUpAfterInterruption(r.deploymentId, why: "its agent (\(r.owner ?? "unknown")) stopped while it was \(r.status.rawValue)")
    }

    /// Marks an in-flight deployment interrupted, stops its staging slot, and points the router at the live slot.
    func cleanUpAfterInterruption(_ id: String, why: String) async {
        guard let r = try? store.deployment(id: id), [.deploying, .validating, .switching].contains(r.status) else { return }
        await stopSlot(r)
        _ = try? move(r, .interrupt, step: "reconcile", actor: "model-deployer", message: "interrupted: \(why); staging slot stopped, live untouched",
                      changes: DeploymentChanges(finishedAt: now(), error: Self.errorJSON(code: Engine.deploymentFailedCode, reason: "interrupted", message: why, step: r.status.rawValue), owner: .some(nil)))
        if let entry = try? store.registry(modelName: r.modelName, environment: r.environment) {
            await reconcileRoute(entry)
        } else {
            try? await router.removeRoute(modelName: r.modelName, environment: r.environment)
        }
    }

    /// Makes the router agree with the registry, and retires a warm slot past its keep-warm time.
    func reconcileRoute(_ entry: RegistryEntry) async {
        guard let slot = Slot(rawValue: entry.slot) else { return }
        let state = slots.state(modelName: entry.modelName, environment: entry.environment, slot: slot)
        if let state, state.alive {
            let route = router.currentRoute(modelName: entry.modelName, environment: entry.environment)
            if route?.upstreamPort != state.spec.port || route?.slot != slot {
                try? await router.ensureRunning()
                await restoreRoute(entry)
                if let r = try? store.deployment(id: entry.deploymentId) {
                    note(r, step: "reconcile", message: "router pointed back at the live slot \(slot.rawValue) (port \(state.spec.port))")
                }
            } else {
                try? await router.ensureRunning()
            }
        } else if let r = try? store.deployment(id: entry.deploymentId) {
            note(r, step: "reconcile", message: "the live slot \(slot.rawValue) is not running; deploy.status reports slot_alive false")
        }
        // A warm previous slot past its keep-warm time is stopped.
        if let prev = entry.previousSlot.flatMap(Slot.init(rawValue:)), prev != slot,
            let r = try? store.deployment(id: entry.deploymentId)
        {
            let keep = (try? DeploymentPlan(json: r.plan))?.config.rollback.keepWarmSeconds ?? 600
            if now().timeIntervalSince(entry.updatedAt) > Double(keep) {
                _ = await slots.stop(modelName: entry.modelName, environment: entry.environment, slot: prev)
                try? await retireFromRegistry(r, slot: prev)
                note(r, step: "retire_previous", message: "stopped the previous slot \(prev.rawValue): keep-warm time over")
            } else {
                scheduleRetirement(r, slot: prev, after: max(1, keep - Int(now().timeIntervalSince(entry.updatedAt))))
            }
        }
    }

    /// Stops slot processes that nothing in the ledger accounts for.
    func stopOrphans(_ entries: [RegistryEntry]) async {
        var wanted = Set<String>()
        for e in entries {
            wanted.insert("\(e.modelName)/\(e.environment)/\(e.slot)")
            if let p = e.previousSlot { wanted.insert("\(e.modelName)/\(e.environment)/\(p)") }
        }
        let waiting = (try? store.deployments(withStatuses: [.awaitingPromotion, .deploying, .validating, .switching])) ?? []
        for r in waiting where r.status == .awaitingPromotion || ownerIsAlive(r.owner) {
            if let s = r.slot { wanted.insert("\(r.modelName)/\(r.environment)/\(s)") }
        }
        for s in slots.allSlots() {
            let key = "\(s.spec.modelName)/\(s.spec.environment)/\(s.spec.slot.rawValue)"
            if !wanted.contains(key) {
                log("stopping an orphaned slot", ["slot": .string(key), "pid": .int(Int64(s.pid))])
                _ = await slots.stop(modelName: s.spec.modelName, environment: s.spec.environment, slot: s.spec.slot)
            }
        }
    }

    /// Whether the agent process named by `owner` (`host:pid:start`) still runs. Other hosts count as alive.
    func ownerIsAlive(_ owner: String?) -> Bool {
        guard let owner else { return false }
        if owner == config.agentID { return true }
        let parts = owner.split(separator: ":")
        guard parts.count == 3, let pid = Int32(parts[1]) else { return false }
        guard String(parts[0]) == Engine.hostName() else { return true }
        return Engine.processStartTime(pid) == String(parts[2])
    }

    /// This agent's owner tag.
    public static func makeAgentID() -> String {
        let pid = getpid()
        return "\(hostName()):\(pid):\(processStartTime(pid) ?? "0")"
    }

    static func hostName() -> String {
        var buf = [UInt8](repeating: 0, count: 256)
        buf.withUnsafeMutableBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { _ = gethostname($0.baseAddress!, 255) }
        }
        return String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Field 22 of /proc/PID/stat: the start time, which tells a live process from a reused pid.
    static func processStartTime(_ pid: Int32) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command name: field 3 is state, so start time (field 22) is index 19.
        return fields.count > 19 ? String(fields[19]) : nil
    }

}
