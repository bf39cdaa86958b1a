import DeployCore
import DeployEngine
import DeploymentStore
import JSON
import JSONRPC

extension DeployService {
    /// The signature of a `deploy.plan` call, with the canonical message made from the params exactly as
    /// sent (the engine decides whether the environment checks it).
    static func planSignature(_ p: Params) throws(RPCError) -> RequestSignature? {
        let signedAt = try p.string("signed_at")
        guard let signature = try p.string("signature") else {
            if signedAt != nil { throw RPCError.invalidParams("signed_at goes with signature; send both or neither", field: "signed_at") }
            return nil
        }
        return RequestSignature(signature: signature, message: SSHSignatures.planMessage(params: p.members), signedAt: signedAt)
    }

    /// In an environment that requires signed approvals, a gate cannot be answered through MCP
    /// elicitation: the answer would carry no proof of who gave it. The tool result says how to approve.
    func refuseElicitationIfSigned(_ r: DeploymentRecord, gate: GateKind) throws(RPCError) {
        guard try engine().signaturesRequired(in: r.environment) else { return }
        let message = SSHSignatures.approvalMessage(deploymentId: r.deploymentId, gate: gate, decision: "approve", planHash: r.planHash)
        throw RPCError(
            code: -32004, reason: "signature_required",
            message: "\(r.environment) requires SSH-signed approvals, so gate \(gate.rawValue) of \(r.deploymentId) cannot be answered here. "
                + "An approver signs with their own key and calls deploy.approve with signature, e.g. "
                + "`deployctl approve --id \(r.deploymentId) --approver NAME --sign-key ~/.ssh/id_ed25519`; "
                + "the signed message is \(String(decoding: message, as: UTF8.self)) (ssh-keygen -Y sign -n \(SSHSignatures.namespace)). "
                + "Then call deploy_execute again.",
            extra: ["deployment_id": .string(r.deploymentId), "gate": .string(gate.rawValue), "status": .string(r.status.rawValue)])
    }
}
