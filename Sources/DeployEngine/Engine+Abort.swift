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
    // MARK: - Abort

    /// `deploy.abort`: stops a canary (or a bake) by hand.
    ///
    /// - A canary (`canary`, `awaiting_step`): the route goes back to the stable version alone (its weight
    ///   raised before the candidate's server is drained), the candidate's slot is stopped, status `aborted`
    ///   (error reason `aborted`). A request still running that canary notices at its next analysis window
    ///   and ends with the aborted deployment.
    /// - A live deployment still in its bake: one switch back to the warm previous version, as
    ///   `deploy.rollback` does; the aborted one is `rolled_back` with reason `aborted`.
    /// - Throws: `not_abortable` (data.status) for anything else; `deployment_not_found`.
    public func abort(deploymentId: String, requestedBy: String, reason: String?,
                      progress: @escaping ProgressHandler) async throws(EngineError) -> DeploymentRecord {
        await reconcileOnce()
        let r = try record(deploymentId)
        let why = "\(requestedBy) aborted it" + (reason.map { ": \($0)" } ?? "")
        switch r.status {
        case .canary, .awaitingStep:
            var runner = RolloutRunner(engine: self, record: r, plan: try decodePlan(r), actor: requestedBy, progress: progress)
            runner.step = r.status == .awaitingStep ? .stepGate : .analysis
            return try await runner.run(.abort(why))
        case .live where try inBake(r):
            guard let entry = try registryEntry(r.modelName, r.environment), entry.deploymentId == r.deploymentId else {
                throw notAbortable(r, "it is no longer what the endpoint serves")
            }
            _ = try await switchToWarm(undone: r, entry: entry, reason: why, requestedBy: requestedBy,
                                       cause: Failure(.aborted, step: .abort, why), progress: progress)
            return try record(deploymentId)
        default:
            throw notAbortable(r, r.status == .live ? "it is live and its bake is over (deploy.rollback undoes it)" : "only a canary or a bake can be aborted")
        }
    }

    /// Whether a live deployment is still in its bake (the plan's bake time since its switch has not passed).
    func inBake(_ r: DeploymentRecord) throws(EngineError) -> Bool {
        guard let plan = try? DeploymentPlan(json: r.plan), plan.config.rollback.bakeSeconds > 0, let since = r.finishedAt else { return false }
        return now() < since.addingTimeInterval(Double(plan.config.rollback.bakeSeconds))
    }

    func notAbortable(_ r: DeploymentRecord, _ why: String) -> EngineError {
        EngineError(.approval, reason: "not_abortable", message: "deployment \(r.deploymentId) is \(r.status.rawValue): \(why)",
                    extra: ["status": .string(r.status.rawValue), "deployment_id": .string(r.deploymentId)])
    }
}
