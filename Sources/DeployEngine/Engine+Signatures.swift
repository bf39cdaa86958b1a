#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import JSON

// The engine side of signed requests and approvals. `plan` and `approve` call in here from one or two
// lines each, so the rules live in one file.

extension Engine {
    /// Whether requests and approvals in `environment` must be SSH-signed (false for an unknown environment).
    public func signaturesRequired(in environment: String) -> Bool {
        policy.environment(environment)?.signatures.required ?? false
    }

    /// Checks the signature of a `deploy.plan` request where the environment's policy asks for one.
    ///
    /// Returns the request with `requestedBy` replaced by the verified principal and the signer recorded,
    /// or the request unchanged where signatures are not checked. Refusals: `signature_required`,
    /// `signature_expired` (`signed_at` more than five minutes from this agent's clock),
    /// `signature_invalid`, `signer_not_allowed`, `principal_mismatch`.
    func verifyRequestSignature(_ req: PlanRequest) async throws(EngineError) -> PlanRequest {
        guard let env = policy.environment(req.environment) else { return req }
        guard let given = req.signature else {
            if env.signatures.required {
                throw EngineError.approval(
                    "signature_required",
                    "\(req.environment) requires SSH-signed requests: sign the canonical request with ssh-keygen -Y sign -n \(SSHSignatures.namespace) and send signed_at and signature (see README, Signed approvals)")
            }
            return req
        }
        guard let allowed = env.signatures.allowedSigners else {
            throw EngineError.invalidParams(field: "signature", "\(req.environment) does not check signatures (its policy names no allowed_signers); leave signature out")
        }
        guard let text = given.signedAt, let signedAt = Self.parseInstant(text) else {
            throw EngineError.invalidParams(field: "signed_at", "a signed request needs signed_at, an RFC 3339 timestamp inside the signed message")
        }
        let skew = now().timeIntervalSince(signedAt)
        guard abs(skew) <= SSHSignatures.maxSkewSeconds else {
            throw EngineError.approval(
                "signature_expired",
                "signed_at \(text) is \(Int(abs(skew))) s \(skew > 0 ? "old" : "in the future"); a signed request is accepted within \(Int(SSHSignatures.maxSkewSeconds)) s of the agent's clock, sign it again")
        }
        let signer = try await SSHSignatures.verify(message: given.message, signature: given.signature, allowedSigners: allowed, claimed: req.requestedBy)
        guard Names.sameIdentity(signer.principal, req.requestedBy) else {
            throw EngineError.approval("principal_mismatch", "requested_by is \(req.requestedBy) but the request is signed by \(signer.principal) (key \(signer.fingerprint))")
        }
        var out = req
        out.requestedBy = signer.principal
        out.signature?.verified = signer
        return out
    }

    /// Checks the signature of a `deploy.approve` decision where the deployment's environment asks for one.
    ///
    /// The signed message names the deployment, the pending gate, the decision and the plan hash. Under
    /// four eyes the approving key must differ from the key that signed the request, whatever names the
    /// keys are listed under. Returns nil where signatures are not checked and none was sent.
    func verifyApprovalSignature(
        deploymentId: String, approver: String, decision: String, gate requested: GateKind?, signature: String?
    ) async throws(EngineError) -> VerifiedSigner? {
        let r = try record(deploymentId)
        guard let env = policy.environment(r.environment) else { return nil }
        guard let signature else {
            if env.signatures.required {
                throw EngineError.approval(
                    "signature_required",
                    "\(r.environment) requires SSH-signed approvals: sign {deployment_id, gate, decision, plan_hash} with ssh-keygen -Y sign -n \(SSHSignatures.namespace) and send it as signature (see README, Signed approvals)")
            }
            return nil
        }
        guard let allowed = env.signatures.allowedSigners else {
            throw EngineError.invalidParams(field: "signature", "\(r.environment) does not check signatures (its policy names no allowed_signers); leave signature out")
        }
        // Not at a gate: approve() gives the precise refusal.
        guard let gate = requested ?? Lifecycle.pendingGate(r.status) else { return nil }
        let message = SSHSignatures.approvalMessage(deploymentId: r.deploymentId, gate: gate, decision: decision, planHash: r.planHash)
        let signer = try await SSHSignatures.verify(message: message, signature: signature, allowedSigners: allowed, claimed: approver)
        guard Names.sameIdentity(signer.principal, approver) else {
            throw EngineError.approval("principal_mismatch", "approver is \(approver) but the approval is signed by \(signer.principal) (key \(signer.fingerprint))")
        }
        let fourEyes = (try? DeploymentPlan(json: r.plan))?.gate(gate)?.fourEyes ?? env.fourEyes
        if decision == "approve", fourEyes {
            let events = try ledger { () throws(StoreError) in try store.events(deploymentId: r.deploymentId) }
            let requester = events.first { $0.step == "plan" }?.data["signature"]?["key_fingerprint"]?.stringValue
            if requester == signer.fingerprint {
                throw EngineError.approval(
                    "self_approval_forbidden",
                    "the key \(signer.fingerprint) signed the request of \(r.deploymentId) and cannot approve its \(gate.rawValue) gate (four eyes), whichever name it is listed under")
            }
        }
        return signer
    }

    static func parseInstant(_ s: String) -> Date? {
        if let d = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(s) { return d }
        return try? Date.ISO8601FormatStyle().parse(s)
    }
}

extension DeploymentEvent {
    /// Records the verified signer in the event's data (the hash chain then covers it).
    mutating func attach(_ signer: VerifiedSigner?) {
        guard let signer, case .object(var o) = data else { return }
        o["signature"] = signer.json
        data = .object(o)
    }
}
