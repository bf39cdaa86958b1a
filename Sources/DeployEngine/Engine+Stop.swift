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

/// What `deploy.stop` did.
public struct StopOutcome: Sendable {
    /// The deployment that was live, now `stopped`; nil when the registry named one that was not live (its row
    /// was cleared all the same).
    public var record: DeploymentRecord?
    /// The slots whose processes were stopped (live, warm previous, any other of the pair), sorted.
    public var stoppedSlots: [String]
}

extension Engine {
    /// Takes (model, environment) down: removes the endpoint's route, stops every slot of the pair, then in
    /// one ledger transaction marks the live deployment `stopped` (event `stop`, with who and why) and clears
    /// its registry row, so nothing is live there and the next plan is a first deployment.
    ///
    /// The effects come before the ledger write: an agent that dies in between leaves a deployment the ledger
    /// still calls live, whose route the next agent puts back if its slot still runs (or that shows
    /// `slot_alive: false`); running `deploy.stop` again finishes it (each effect is a no-op the second time).
    /// - Throws: `nothing_deployed` when nothing is live; `rollout_in_progress` while a rollout of the pair is
    ///   running (deploying, validating, at the promotion gate, switching) or the live version's bake is;
    ///   `runtime_unavailable` when the route cannot be removed or a slot cannot be stopped (the ledger is
    ///   then left as it was); `ledger_unavailable`.
    public func stop(modelName: String, environment: String, reason: String?, requestedBy: String) async throws(EngineError) -> StopOutcome {
        await reconcileOnce()
        guard let entry = try registryEntry(modelName, environment) else {
            throw EngineError.nothingDeployed("nothing is live for \(modelName) in \(environment); there is nothing to stop")
        }
        if let blocking = try ledger({ () throws(StoreError) in try store.inFlight(modelName: modelName, environment: environment) }),
           Self.stopBlockers.contains(blocking.status)
        {
            throw EngineError.rolloutInProgress(
                blocking.deploymentId,
                "deployment \(blocking.deploymentId) is \(blocking.status.rawValue); finish, reject or cancel it before stopping \(modelName) in \(environment)")
        }
        let live = try ledger { () throws(StoreError) in try store.deployment(id: entry.deploymentId) }
        if let live, live.status == .live {
            let events = try ledger { () throws(StoreError) in try store.events(deploymentId: live.deploymentId) }
            if !followIsOver(live, events: events) {
                throw EngineError.rolloutInProgress(
                    live.deploymentId,
                    "\(live.modelVersion) is still in its bake (deployment \(live.deploymentId)); stop it once the bake is over")
            }
        }
        let why = reason ?? "stopped by \(requestedBy)"
        // The effects and the ledger write run to the end even when the caller is cancelled: a stop cut between
        // removing the route and recording it would leave the ledger saying live for an endpoint that is gone.
        let result = await detached { [self] () -> Result<StopOutcome, EngineError> in
            do throws(EngineError) {
                return .success(try await performStop(entry, live: live, reason: why, requestedBy: requestedBy))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// The statuses of an in-flight deployment that `deploy.stop` waits for: a rollout that runs (or holds a
    /// validated candidate at its promotion gate). A plan not yet executed does not block; executing it after
    /// the stop is refused as `plan_stale`.
    static let stopBlockers: Set<DeploymentStatus> = [.deploying, .validating, .awaitingPromotion, .switching]

    private func performStop(_ entry: RegistryEntry, live: DeploymentRecord?, reason: String,
                             requestedBy: String) async throws(EngineError) -> StopOutcome {
        let model = entry.modelName, env = entry.environment
        let runtime = ports(for: env), router = runtime.router, slots = runtime.slots
        // 1. The route: clients are refused at the endpoint before any slot goes away under them.
        do {
            try await router.removeRoute(modelName: model, environment: env)
        } catch {
            throw EngineError(.runtimeUnavailable, reason: "runtime_unavailable",
                              message: "the route of \(model)/\(env) could not be removed (\(error.code): \(error.message)); nothing was stopped")
        }
        // 2. Every slot of the pair: the registry's live and warm previous ones, and any other the runtime has.
        var refs = Set([slotRef(entry, entry.slot)])
        if let prev = entry.previousSlot { refs.insert(slotRef(entry, prev)) }
        for s in await slots.listSlots() where s.ref.modelName == model && s.ref.environment == env { refs.insert(s.ref) }
        var stopped: [String] = []
        var left: [String] = []
        for ref in refs.sorted(by: { $0.id < $1.id }) {
            guard await slots.state(ref) != nil else { continue }
            if await slots.stop(ref, graceSeconds: 5) { stopped.append(ref.id.rawValue) } else { left.append(ref.id.rawValue) }
        }
        if !left.isEmpty {
            throw EngineError(.runtimeUnavailable, reason: "runtime_unavailable",
                              message: "the route of \(model)/\(env) is removed but slot(s) \(left.joined(separator: ", ")) could not be stopped; "
                                  + "the ledger still says \(entry.modelVersion) is live: run deploy.stop again")
        }
        // 3. The ledger: live -> stopped and the registry row cleared, in one transaction.
        let data: JSONValue = ["reason": .string(reason), "stopped_slots": .array(stopped.map { .string($0) }),
                               "endpoint_url": .string(entry.endpointURL), "model_version": .string(entry.modelVersion)]
        let message = "stopped \(entry.modelVersion): route \(entry.endpointURL) removed, slot(s) "
            + (stopped.isEmpty ? "none running" : stopped.joined(separator: ", ")) + " stopped: \(reason)"
        guard let live, live.status == .live else {
            // The registry named a deployment that is not live (a ledger edited by hand, or a half-done write).
            try retryingLedger { () throws(StoreError) in
                _ = try store.clearRegistry(modelName: model, environment: env, deploymentId: entry.deploymentId, at: now())
            }
            if let r = live { note(r, step: "stop", actor: requestedBy, message: message + " (it was \(r.status.rawValue), not live)", data: data) }
            return StopOutcome(record: nil, stoppedSlots: stopped)
        }
        let t = now()
        let ev = event(live.deploymentId, step: "stop", actor: requestedBy, message: message, data: data)
        let final = try retryingLedger { () throws(StoreError) -> DeploymentRecord in
            do throws(StoreError) {
                return try store.transition(id: live.deploymentId, from: .live, to: .stopped,
                                            changes: DeploymentChanges(finishedAt: t, clearsRegistry: true), event: ev)
            } catch {
                // Another stop recorded it meanwhile: the outcome is the same.
                guard error.code == .statusConflict, error.actualStatus == .stopped,
                      let r = try store.deployment(id: live.deploymentId) else { throw error }
                return r
            }
        }
        log("stopped", ["model_name": .string(model), "environment": .string(env), "deployment_id": .string(live.deploymentId),
                        "stopped_slots": .array(stopped.map { .string($0) })])
        return StopOutcome(record: final, stoppedSlots: stopped)
    }

    /// A ledger write that matters, tried three times when the database fails (a restart, a dropped
    /// connection); any other refusal is final.
    func retryingLedger<T>(_ body: () throws(StoreError) -> T) throws(EngineError) -> T {
        var attempt = 0
        while true {
            do { return try body() } catch {
                attempt += 1
                guard error.code == .database, attempt < 3 else { throw EngineError.ledger(error) }
                usleep(UInt32(200_000 * attempt))
            }
        }
    }
}
