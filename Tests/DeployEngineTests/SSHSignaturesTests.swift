import DeployCore
@testable import DeployEngine
import Foundation
import JSON
import Testing

/// The verifier against real keys made by ssh-keygen: it must let exactly the right signatures through.
@Suite struct SSHSignaturesTests {
    let keys: SSHKeys
    let allowed: String

    init() throws {
        keys = try SSHKeys()
        try keys.key("alice")
        try keys.key("bob")
        try keys.key("mallory")
        try keys.key("gitonly")
        allowed = try keys.allowedSigners([
            ("alice@example.com", "alice", "model-deployer"), ("bob@example.com", "bob", "model-deployer"),
            ("carol@example.com", "gitonly", "git"),
        ])
    }

    func reason(_ body: () async throws(EngineError) -> VerifiedSigner) async -> String? {
        do { _ = try await body(); return nil } catch { return error.reason }
    }

    @Test func aValidSignatureNamesItsPrincipalAndKey() async throws {
        let message = SSHSignatures.approvalMessage(deploymentId: "d1", gate: .deploy, decision: "approve", planHash: "sha256:abc")
        let sig = try keys.sign(message, with: "bob")
        let signer = try await SSHSignatures.verify(message: message, signature: sig, allowedSigners: allowed, claimed: "bob@example.com")
        #expect(signer.principal == "bob@example.com")
        #expect(signer.fingerprint == (try keys.fingerprint("bob")))
        #expect(signer.message == String(decoding: message, as: UTF8.self))
    }

    @Test func forgedTruncatedOrGarbledSignaturesAreInvalid() async throws {
        let message = Array(#"{"a":1}"#.utf8)
        let sig = try keys.sign(message, with: "alice")
        // Signed over another message: the signature is sound but not for this one.
        let other = try keys.sign(Array(#"{"a":2}"#.utf8), with: "alice")
        #expect(await reason { () async throws(EngineError) in try await SSHSignatures.verify(message: message, signature: other, allowedSigners: allowed, claimed: nil) } == "signature_invalid")
        // Truncated in the middle of the armor.
        let lines = sig.split(separator: "\n")
        let truncated = (lines.prefix(3) + [lines.last!]).joined(separator: "\n") + "\n"
        #expect(await reason { () async throws(EngineError) in try await SSHSignatures.verify(message: message, signature: truncated, allowedSigners: allowed, claimed: nil) } == "signature_invalid")
        // One base64 character of the signature blob flipped.
        var bytes = Array(sig.utf8)
        let i = bytes.count - 60
        bytes[i] = bytes[i] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(await reason { () async throws(EngineError) in try await SSHSignatures.verify(message: message, signature: String(decoding: bytes, as: UTF8.self), allowedSigners: allowed, claimed: nil) } == "signature_invalid")
        #expect(await reason { () async throws(EngineError) in try await SSHSignatures.verify(message: message, signature: "not a signature", allowedSigners: allowed, claimed: nil) } == "signature_invalid")
    }

    @Test func theWrongNamespaceIsInvalid() async throws {
        let message = Array(#"{"a":1}"#.utf8)
        let gitSig = try keys.sign(message, with: "alice", namespace: "git")
        #expect(await reason { () async throws(EngineError) in try await SSHSignatures.verify(message: message, signature: gitSig, allowedSigners: allowed, claimed: nil) } == "signature_invalid")
    }

    @Test func keysOutsideAllowedSignersAreRefused() async throws {
        let message = Array(#"{"a":1}"#.utf8)
        let sig = try keys.sign(message, with: "mallory")
        #expect(await reason { () async throws(EngineError) in try await SSHSignatures.verify(message: message, signature: sig, allowedSigners: allowed, claimed: "alice@example.com") } == "signer_not_allowed")
        // Listed, but only for git signatures.
        let carol = try keys.sign(message, with: "gitonly")
        #expect(await reason { () async throws(EngineError) in try await SSHSignatures.verify(message: message, signature: carol, allowedSigners: allowed, claimed: nil) } == "signer_not_allowed")
    }

    @Test func approvalMessagesBindDeploymentGateDecisionAndPlan() async throws {
        let signed = SSHSignatures.approvalMessage(deploymentId: "d1", gate: .deploy, decision: "approve", planHash: "h1")
        let sig = try keys.sign(signed, with: "bob")
        for moved in [
            SSHSignatures.approvalMessage(deploymentId: "d2", gate: .deploy, decision: "approve", planHash: "h1"),
            SSHSignatures.approvalMessage(deploymentId: "d1", gate: .promote, decision: "approve", planHash: "h1"),
            SSHSignatures.approvalMessage(deploymentId: "d1", gate: .deploy, decision: "reject", planHash: "h1"),
            SSHSignatures.approvalMessage(deploymentId: "d1", gate: .deploy, decision: "approve", planHash: "h2"),
        ] {
            #expect(await reason { () async throws(EngineError) in try await SSHSignatures.verify(message: moved, signature: sig, allowedSigners: allowed, claimed: nil) } == "signature_invalid")
        }
        #expect(String(decoding: signed, as: UTF8.self) == #"{"decision":"approve","deployment_id":"d1","gate":"deploy","plan_hash":"h1"}"#)
    }

    @Test func planMessageIsTheParamsWithoutSignature() {
        let params: [String: JSONValue] = [
            "model_name": "iris_clf", "environment": "production", "requested_by": "alice@example.com",
            "signed_at": "2026-01-01T00:00:00Z", "signature": "-----BEGIN SSH SIGNATURE-----...", "_meta": ["progressToken": 1],
        ]
        #expect(String(decoding: SSHSignatures.planMessage(params: params), as: UTF8.self)
            == #"{"environment":"production","model_name":"iris_clf","requested_by":"alice@example.com","signed_at":"2026-01-01T00:00:00Z"}"#)
    }

    @Test func startupCheckNamesAMissingToolOrFile() throws {
        let policy = try ApprovalPolicy(text: #"{"environments": {"production": {"signatures": {"required": true, "allowed_signers": "\#(allowed)"}}}}"#)
        #expect(SSHSignatures.configurationProblem(policy, environment: ["PATH": "/usr/bin"]) == nil)
        #expect(SSHSignatures.configurationProblem(policy, environment: ["PATH": "/nonexistent"])?.contains("ssh-keygen") == true)
        #expect(SSHSignatures.configurationProblem(policy, environment: ["PATH": "/usr/bin", "MODEL_DEPLOYER_SSH_KEYGEN": "/nonexistent/ssh-keygen"])?.contains("ssh-keygen") == true)
        let missing = try ApprovalPolicy(text: #"{"environments": {"production": {"signatures": {"required": true, "allowed_signers": "/nonexistent/allowed"}}}}"#)
        #expect(SSHSignatures.configurationProblem(missing, environment: ["PATH": "/usr/bin"])?.contains("/nonexistent/allowed") == true)
        #expect(SSHSignatures.configurationProblem(.defaults, environment: ["PATH": "/nonexistent"]) == nil)
    }
}
