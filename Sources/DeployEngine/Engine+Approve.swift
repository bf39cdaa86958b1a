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
    // MARK: - Approve

    /// Answers the pending gate. Approving the promotion gate resumes the rollout to live.
    public func approve(
        deploymentId: String, approver: String, decision: String, gate requested: GateKind?, comment: String?,
        signature: String? = nil, progress: @escaping ProgressHandler
    ) async throws(EngineError) -> ApprovalOutcome {
        await reconcileOnce()
        // Signed approvals (Engine+Signatures.swift): the verified principal is the approver.
        let signed = try await verifyApprovalSignature(deploymentId: deploymentId, approver: approver, decision: decision, gate: requested, signature: signature)
        let approver = signed?.principal ?? approver
        let r = try record(deploymentId)
        guard let pending = Lifecycle.pendingGate(r.status) else {
            throw EngineError.approval("not_awaiting_approval", "deployment \(deploymentId) is \(r.status.rawValue), not waiting at a gate")
        }
        if let requested, requested != pending {
            throw EngineError.approval("not_awaiting_approval", "deployment \(deploymentId) waits at gate \(pending.rawValue), not \(requested.rawValue)")
        }
        let plan = try decodePlan(r)
        let gate = plan.gate(pending) ?? Gate(kind: pending)
        if try await expireIfDue(r) != nil {
            throw EngineError.approval("approval_expired", "gate \(pending.rawValue) of \(deploymentId) expired after \(gate.timeoutSeconds ?? 0) s")
        }
        var fields: [String: JSONValue] = ["gate": .string(pending.rawValue), "decision": .string(decision)]
        if let comment { fields["comment"] = .string(comment) }
        if let signed { fields["signature"] = signed.json }  // signed approvals: Engine+Signatures.swift
        var runner = RolloutRunner(engine: self, record: r, plan: plan, actor: approver, progress: progress)
        runner.approval = (approver, comment, .object(fields))
        if decision == "reject" {
            let rejected = try await runner.run(.rejected)
            return ApprovalOutcome(record: rejected, gate: pending, decision: decision, execution: nil)
        }
        try checkApproval(r, plan: plan, gate: gate, pending: pending, approver: approver)
        let answered = try await runner.run(.approved)
        return ApprovalOutcome(record: answered, gate: pending, decision: decision, execution: pending == .promote || pending == .step ? answered : nil)
    }

    /// The policy's and the plan's conditions for an approval: who may approve, and nothing changed live since.
    func checkApproval(_ r: DeploymentRecord, plan: DeploymentPlan, gate: Gate, pending: GateKind, approver: String) throws(EngineError) {
        if case .forbidden(let reason, let message) = ApprovalPolicy.checkApproval(gate: gate, approver: approver, requestedBy: r.requestedBy) {
            note(r, step: Step.gate(pending).wireName, actor: approver, message: "approval refused: \(message)", data: ["reason": .string(reason)])
            throw EngineError.approval(reason, message)
        }
        let live = liveFacts(try registryEntry(r.modelName, r.environment))
        if pending == .deploy, plan.isStale(currentLive: live) {
            throw EngineError.planStale(staleMessage(plan, live))
        }
        if pending == .promote, !sameLive(plan.recordedLive, live) {
            throw EngineError.planStale(staleMessage(plan, live))
        }
    }
}
