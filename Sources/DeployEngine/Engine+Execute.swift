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
    // MARK: - Execute

    /// Drives an approved plan to live (or to its promotion gate, or to failure with the live version untouched).
    public func execute(deploymentId: String, idempotencyKey: String?, actor: String = "model-deployer",
                        progress: @escaping ProgressHandler) async throws(EngineError) -> DeploymentRecord {
        await reconcileOnce()
        let r = try record(deploymentId)
        if r.status != .planned && r.status != .approved {
            return try repeatedExecute(r, idempotencyKey: idempotencyKey)
        }
        let plan = try decodePlan(r)
        let live = liveFacts(try registryEntry(r.modelName, r.environment))
        if plan.isStale(currentLive: live) {
            throw EngineError.planStale(staleMessage(plan, live))
        }
        var data: [String: JSONValue] = [:]
        if let idempotencyKey { data["idempotency_key"] = .string(idempotencyKey) }
        var runner = RolloutRunner(engine: self, record: r, plan: plan, actor: actor, progress: progress)
        runner.executeNote = ("execution started by \(actor)", .object(data))
        return try await runner.run(.execute)
    }

    /// A second execute of a deployment that already started: a retry with the key of the first returns
    /// that outcome (it never starts a second rollout); anything else is refused.
    func repeatedExecute(_ r: DeploymentRecord, idempotencyKey: String?) throws(EngineError) -> DeploymentRecord {
        if let key = idempotencyKey, try executedWith(key, r) {
            if r.status.isInFlight && r.status != .awaitingPromotion {
                throw EngineError.rolloutInProgress(r.deploymentId, "deployment \(r.deploymentId) is still \(r.status.rawValue)")
            }
            return r
        }
        if r.status == .awaitingApproval {
            throw EngineError.approval("approval_required", "deployment \(r.deploymentId) waits for approval at gate deploy; call deploy.approve first")
        }
        throw EngineError.approval("not_executable", "deployment \(r.deploymentId) is \(r.status.rawValue); only a planned or approved deployment can be executed")
    }

    /// Whether the execute that started `r` carried `key` (kept in the data of its transition to deploying).
    func executedWith(_ key: String, _ r: DeploymentRecord) throws(EngineError) -> Bool {
        let events = try ledger { () throws(StoreError) in try store.events(deploymentId: r.deploymentId) }
        return events.contains { $0.toStatus == .deploying && $0.data["idempotency_key"]?.stringValue == key }
    }

    func sameLive(_ a: LiveFacts?, _ b: LiveFacts?) -> Bool { a?.deploymentId == b?.deploymentId }

    func staleMessage(_ plan: DeploymentPlan, _ live: LiveFacts?) -> String {
        "the live version changed since the plan was made (planned against \(plan.recordedLive.map { "\($0.version) (\($0.deploymentId))" } ?? "nothing live"), now \(live.map { "\($0.version) (\($0.deploymentId))" } ?? "nothing live")); plan again"
    }
}
