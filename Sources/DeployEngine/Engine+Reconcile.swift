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
    /// the first answer stays fast). Also repairs a router found down, on every call.
    func reconcileOnce() async {
        if reconciledOnce() { await reconcile() }
        await repairRouterIfDown()
    }

    /// The statuses a running agent owns: work in them stops when its agent does (a canary's weight steps
    /// and analysis too: nobody judges its traffic any more, so it goes back on the stable version).
    static let owned: [DeploymentStatus] = [.deploying, .validating, .switching, .canary]

    /// After a crash: in-flight work whose owner is gone goes through the machine as `ownerGone` (a finished
    /// switch is completed, anything else interrupted: staging slot stopped, live untouched); the router is
    /// pointed back at what the registry says is live; warm slots past their time and orphaned slot
    /// processes are stopped. The ledger records each action; a ledger that cannot be read is logged.
    public func reconcile() async {
        do throws(EngineError) {
            let active = try ledger { () throws(StoreError) in try store.deployments(withStatuses: Self.owned) }
            for r in active where !ownerIsAlive(r.owner) {
                await reconcileInterrupted(r)
            }
            let entries = try ledger { () throws(StoreError) in try store.allRegistryEntries() }
            for entry in entries {
                await reconcileRoute(entry)
            }
            try await stopOrphans(entries)
        } catch {
            log("reconciliation stopped: the ledger could not be read", ["error": .string(error.message)])
        }
    }

    func reconcileInterrupted(_ r: DeploymentRecord) async {
        var runner = RolloutRunner(engine: self, record: r, plan: try? DeploymentPlan(json: r.plan), actor: "model-deployer", progress: { _ in })
        runner.step = .reconcile
        runner.interruptWhy = "its agent (\(r.owner ?? "unknown")) stopped while it was \(r.status.rawValue)"
        do {
            _ = try await runner.run(.ownerGone)
        } catch {
            log("an interrupted deployment could not be reconciled", ["deployment_id": .string(r.deploymentId), "error": .string(error.message)])
        }
    }

    /// Makes the router agree with the registry, and retires a warm slot past its keep-warm time.
    func reconcileRoute(_ entry: RegistryEntry) async {
        let ref = slotRef(entry, entry.slot)
        let record: DeploymentRecord??
        do { record = .some(try store.deployment(id: entry.deploymentId)) } catch {
            // The route is still repaired; only its event cannot be written to a ledger that does not answer.
            log("the live deployment cannot be read while reconciling its route", ["deployment_id": .string(entry.deploymentId), "error": .string(error.message)])
            record = nil
        }
        let slots = ports(for: entry.environment).slots, router = ports(for: entry.environment).router
        if let state = await slots.state(ref), state.alive {
            let route = await router.route(modelName: entry.modelName, environment: entry.environment)
            let primary = route?.primary
            // A split no canary holds any more (one whose end could not narrow it) is repaired like a wrong primary.
            let split = (route?.backends.filter { $0.weight > 0 }.count ?? 0) > 1
            await attempt("start the router") { () throws(RuntimeError) in try await router.ensureRunning() }
            // A canary's split is not a route gone astray: above 50 % its candidate takes the larger share.
            // (The ledger is asked about canaries only when the route needs a repair.)
            if split || primary?.address.port != state.address.port || primary?.slot != ref.id, !canaryHoldsRoute(entry) {
                await restoreRoute(entry)
                if let r = record ?? nil {
                    note(r, step: Step.reconcile.wireName, message: "router pointed back at the live slot \(entry.slot) (port \(state.address.port))")
                }
            }
        } else if let r = record ?? nil {
            note(r, step: Step.reconcile.wireName, message: "the live slot \(entry.slot) is not running; deploy.status reports slot_alive false")
        }
        // A server at weight 0 whose slot no longer runs (a crash between stopping a retired slot and taking
        // its server out) leaves the router; the live slot's server is never touched here.
        for b in await router.route(modelName: entry.modelName, environment: entry.environment)?.backends ?? []
        where b.weight == 0 && b.slot != ref.id {
            guard await slots.state(slotRef(entry, b.slot.rawValue))?.alive != true else { continue }
            if await detachFromRouter(entry.modelName, entry.environment, slot: b.slot.rawValue), let r = record ?? nil {
                note(r, step: Step.reconcile.wireName, message: "took the server of the stopped slot \(b.slot) out of the router")
            }
        }
        if let r = record ?? nil { await retireWarmSlot(entry, r) }
    }

    /// Whether a canary of the entry's model and environment holds the route's split now: one running in an
    /// agent that is alive (another agent on the same ledger and cluster), or one waiting at a step gate,
    /// whose weights stay while it waits for `deploy.approve`. A ledger that does not answer: false (the
    /// route is repaired as before).
    func canaryHoldsRoute(_ entry: RegistryEntry) -> Bool {
        let found: [DeploymentRecord]
        do { found = try store.deployments(withStatuses: [.canary, .awaitingStep]) } catch {
            log("the canaries cannot be read while reconciling a route", ["error": .string(error.message)])
            return false
        }
        return found.contains {
            $0.modelName == entry.modelName && $0.environment == entry.environment && ($0.status == .awaitingStep || ownerIsAlive($0.owner))
        }
    }

    /// A warm previous slot past its keep-warm time is stopped; one within it is scheduled.
    func retireWarmSlot(_ entry: RegistryEntry, _ r: DeploymentRecord) async {
        guard let prev = entry.previousSlot, prev != entry.slot else { return }
        let keep = (try? DeploymentPlan(json: r.plan))?.config.rollback.keepWarmSeconds ?? 600
        let age = now().timeIntervalSince(entry.updatedAt)
        guard age > Double(keep) else {
            scheduleRetirement(r, slot: prev, after: max(1, keep - Int(age)))
            return
        }
        _ = await ports(for: entry.environment).slots.stop(slotRef(entry, prev), graceSeconds: 5)
        do {
            try retireFromRegistry(r, slot: prev)
            let detached = await detachFromRouter(entry.modelName, entry.environment, slot: prev)
            note(r, step: Step.retirePrevious.wireName,
                 message: "stopped the previous slot \(prev): keep-warm time over\(detached ? "; its server left the router" : "")")
        } catch {
            log("the registry still names a stopped warm slot", ["deployment_id": .string(r.deploymentId), "error": .string(error.message)])
        }
    }

    /// Stops slot processes that nothing in the ledger accounts for.
    func stopOrphans(_ entries: [RegistryEntry]) async throws(EngineError) {
        var wanted = Set<SlotRef>()
        for e in entries {
            wanted.insert(slotRef(e, e.slot))
            if let p = e.previousSlot { wanted.insert(slotRef(e, p)) }
        }
        // A candidate waiting at a gate (promote, or a canary's step gate) outlives its agent: a person may
        // answer from another process, days later.
        let gated: Set<DeploymentStatus> = [.awaitingPromotion, .awaitingStep]
        let waiting = try ledger { () throws(StoreError) in try store.deployments(withStatuses: Self.owned + Array(gated)) }
        for r in waiting where gated.contains(r.status) || ownerIsAlive(r.owner) {
            if let s = r.slot { wanted.insert(slotRef(r, s)) }
        }
        // Each runtime lists only what it made (a Kubernetes runtime: Deployments by its labels).
        for slots in allPorts.map(\.slots) {
            for s in await slots.listSlots() where !wanted.contains(s.ref) {
                log("stopping an orphaned slot", ["slot": .string("\(s.ref.modelName)/\(s.ref.environment)/\(s.ref.id)"),
                                                   "pid": .int(Int64(s.processID ?? 0))])
                _ = await slots.stop(s.ref, graceSeconds: 5)
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
        return ProcessLauncher.startTime(pid) == String(parts[2])
    }

    /// This agent's owner tag.
    public static func makeAgentID() -> String {
        let pid = getpid()
        return "\(hostName()):\(pid):\(ProcessLauncher.startTime(pid) ?? "0")"
    }

    static func hostName() -> String {
        var buf = [UInt8](repeating: 0, count: 256)
        buf.withUnsafeMutableBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { _ = gethostname($0.baseAddress!, 255) }
        }
        return String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
    }
}
