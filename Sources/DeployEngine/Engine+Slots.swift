#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

extension Engine {
    /// Runs a runtime call whose failure leaves nothing to undo; the failure goes to the log.
    func attempt(_ what: String, _ body: () async throws(RuntimeError) -> Void) async {
        do { try await body() } catch { log("could not \(what)", ["error": .string(error.description)]) }
    }

    /// Points the router back at what the registry says is live (or removes the route when nothing runs there).
    func restoreRoute(_ entry: RegistryEntry?) async {
        guard let entry else { return }
        let router = ports(for: entry.environment).router
        guard let port = Planner.port(of: entry.endpointURL), let state = await ports(for: entry.environment).slots.state(slotRef(entry, entry.slot)) else {
            await attempt("remove the route") { () throws(RuntimeError) in
                try await router.removeRoute(modelName: entry.modelName, environment: entry.environment)
            }
            return
        }
        let warm = await warmBackend(entry, slot: entry.previousSlot, version: entry.previousVersion, besides: state.ref.id)
        let spec = RouteSpec(modelName: entry.modelName, environment: entry.environment, listenPort: port,
                             backends: [WeightedBackend(slot: state.ref.id, address: state.address, version: entry.modelVersion)] + warm)
        await attempt("restore the route") { () throws(RuntimeError) in try await router.apply(spec) }
    }

    /// The warm slot as a backend at weight 0 beside the one taking the traffic, when it runs: the router keeps
    /// it (HAProxy: a server at weight 0), so a switch between the two is a weight change, not a server
    /// removed and drained of its requests, and the requests it is answering finish there. nginx drops it.
    func warmBackend(_ e: RegistryEntry, slot: String?, version: String?, besides serving: SlotID) async -> [WeightedBackend] {
        guard let slot, let version, slot != serving.rawValue, let state = await ports(for: e.environment).slots.state(slotRef(e, slot)), state.alive
        else { return [] }
        return [WeightedBackend(slot: state.ref.id, address: state.address, version: version, weight: 0)]
    }

    /// Stops the slot of a candidate (failed, interrupted, rejected or expired) unless the registry keeps it:
    /// what serves traffic and the warm previous version (the rollback target) are never stopped here.
    func stopSlot(_ r: DeploymentRecord, slot: String? = nil) async {
        guard let s = slot ?? r.slot else { return }
        do throws(EngineError) {
            if let entry = try registryEntry(r.modelName, r.environment), entry.slot == s || entry.previousSlot == s { return }
            let ref = slotRef(r, s)
            let slots = ports(for: r.environment).slots
            _ = await detached { await slots.stop(ref, graceSeconds: 5) }
            try retireFromRegistry(r, slot: s)
            await detachFromRouter(r.modelName, r.environment, slot: s)
        } catch {
            // Without the registry the slot might be the live one: leave it running, say so.
            log("a slot was left running: the ledger could not say whether it serves traffic",
                ["deployment_id": .string(r.deploymentId), "slot": .string(s), "error": .string(error.message)])
        }
    }

    /// Forgets a stopped slot as the warm rollback target (the version stays in history for a redeploy).
    func retireFromRegistry(_ r: DeploymentRecord, slot: String) throws(EngineError) {
        guard var entry = try registryEntry(r.modelName, r.environment), entry.previousSlot == slot, entry.slot != slot else { return }
        entry.previousSlot = nil
        try ledger { () throws(StoreError) in try store.setRegistry(entry) }
    }

    /// Takes a stopped slot's server out of the endpoint's router, where it stayed at weight 0 while it was the
    /// warm version (a server of a stopped slot must not stay attached until the next switch). The router
    /// removes it only when it carries no share, under its own lock. It carries no traffic, so a router that
    /// refuses costs no request: the change is tried three times, then logged (the next switch leaves the
    /// server out, and reconciliation takes it out).
    /// - Returns: `true` when the router had the server and removed it.
    @discardableResult
    func detachFromRouter(_ model: String, _ env: String, slot: String) async -> Bool {
        let router = ports(for: env).router
        var lastError = ""
        for attempt in 1...3 {
            do {
                return try await router.detach(modelName: model, environment: env, slot: SlotID(rawValue: slot))
            } catch {
                lastError = error.description
                log("the router could not take a stopped slot's server out", ["model_name": .string(model), "environment": .string(env),
                                                                             "slot": .string(slot), "attempt": .int(Int64(attempt)), "error": .string(lastError)])
            }
            if attempt < 3 { do { try await clock.sleep(milliseconds: 200) } catch { break } }
        }
        return false
    }

    /// Stops the previous slot after its keep-warm time, if it is still the warm one then.
    func scheduleRetirement(_ r: DeploymentRecord, slot: String, after seconds: Int) {
        Task.detached(executorPreference: BlockingExecutor.shared) { [self] in
            do { try await clock.sleep(milliseconds: seconds * 1000) } catch { return }
            do throws(EngineError) {
                guard let entry = try registryEntry(r.modelName, r.environment), entry.deploymentId == r.deploymentId,
                    entry.previousSlot == slot
                else { return }
                _ = await ports(for: r.environment).slots.stop(slotRef(r, slot), graceSeconds: 5)
                try retireFromRegistry(r, slot: slot)
                let detached = await detachFromRouter(r.modelName, r.environment, slot: slot)
                note(r, step: Step.retirePrevious.wireName,
                     message: "stopped the previous slot \(slot) after \(seconds) s warm\(detached ? "; its server left the router" : "")")
            } catch {
                log("the previous slot could not be retired", ["deployment_id": .string(r.deploymentId), "error": .string(error.message)])
            }
        }
    }
}
