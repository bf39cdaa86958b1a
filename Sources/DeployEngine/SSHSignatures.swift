#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import DeployCore
import DeployRuntime
import JSON

/// A key that signed a request or an approval, as OpenSSH vouched for it.
public struct VerifiedSigner: Sendable, Hashable {
    /// The principal of the `allowed_signers` line the key matched (becomes `requested_by` / `approver`).
    public var principal: String
    /// `SHA256:...`, the key's OpenSSH fingerprint: four eyes compares keys as well as names.
    public var fingerprint: String
    /// The armored `-----BEGIN SSH SIGNATURE-----` text, kept in the ledger for offline re-verification.
    public var signature: String
    /// The exact canonical message that was signed.
    public var message: String

    /// How the ledger keeps it (in the event's `data.signature`).
    public var json: JSONValue {
        [
            "principal": .string(principal), "key_fingerprint": .string(fingerprint), "namespace": .string(SSHSignatures.namespace),
            "message": .string(message), "ssh_signature": .string(signature),
        ]
    }
}

/// A signature a caller sent, not yet checked.
public struct RequestSignature: Sendable, Hashable {
    /// The armored SSH signature.
    public var signature: String
    /// The canonical message the caller should have signed (made from the params they sent).
    public var message: [UInt8]
    /// `signed_at` as sent (plan only).
    public var signedAt: String?
    /// Set by the engine once OpenSSH vouched for the signature.
    public var verified: VerifiedSigner?

    /// A signature over `message`.
    public init(signature: String, message: [UInt8], signedAt: String? = nil) {
        self.signature = signature
        self.message = message
        self.signedAt = signedAt
    }
}

/// SSH signatures made with `ssh-keygen -Y sign -n model-deployer`, checked by OpenSSH itself.
///
/// The agent holds no crypto of its own: `ssh-keygen -Y check-novalidate` proves the signature is sound
/// for this namespace and message, `-Y find-principals` names the `allowed_signers` entry of its key,
/// and `-Y verify` confirms that entry may sign in this namespace. Each runs with an argument array,
/// a short timeout, and its files in a private temporary directory removed afterwards.
public enum SSHSignatures {
    /// The OpenSSH signature namespace: a signature made for git (`-n git`) does not count here.
    public static let namespace = "model-deployer"
    /// How far `signed_at` may be from the agent's clock, in seconds, either way.
    public static let maxSkewSeconds: Double = 300
    /// The longest armored signature accepted (an RSA-4096 one is about 1.2 KB).
    public static let maxSignatureBytes = 16_384
    static let timeout: Duration = .seconds(5)

    /// The canonical message of a `deploy.plan` request: its params without `signature` and `_meta`
    /// (`signed_at` included), as RFC 8785 JSON.
    public static func planMessage(params: [String: JSONValue]) -> [UInt8] {
        var p = params
        p["signature"] = nil
        p["_meta"] = nil
        return CanonicalJSON.bytes(.object(p))
    }

    /// The canonical message of a `deploy.approve` decision: it binds the deployment, the gate, the
    /// decision and the plan, so the signature cannot be moved to another of any of them.
    public static func approvalMessage(deploymentId: String, gate: GateKind, decision: String, planHash: String) -> [UInt8] {
        CanonicalJSON.bytes([
            "deployment_id": .string(deploymentId), "gate": .string(gate.rawValue), "decision": .string(decision),
            "plan_hash": .string(planHash),
        ])
    }

    /// The `ssh-keygen` to run: `MODEL_DEPLOYER_SSH_KEYGEN`, else the one on `PATH`.
    public static func keygen(environment: [String: String] = ProcessLauncher.currentEnvironment()) throws(RuntimeError) -> String {
        if let explicit = environment["MODEL_DEPLOYER_SSH_KEYGEN"], !explicit.isEmpty {
            return try ProcessLauncher.resolve(explicit, environment: environment)
        }
        return try ProcessLauncher.resolve("ssh-keygen", environment: environment)
    }

    /// Why `serve` cannot enforce `policy`'s signature rules, or nil: a missing `ssh-keygen` or an
    /// unreadable `allowed_signers` file is an error at start, never a silent pass later.
    public static func configurationProblem(_ policy: ApprovalPolicy, environment: [String: String] = ProcessLauncher.currentEnvironment()) -> String? {
        for name in policy.environments.keys.sorted() {
            let sig = policy.environments[name]!.signatures
            guard sig.required || sig.allowedSigners != nil else { continue }
            do { _ = try keygen(environment: environment) } catch {
                return "environment \(name) checks SSH signatures but ssh-keygen cannot be run: \(error.message) (set MODEL_DEPLOYER_SSH_KEYGEN or PATH)"
            }
            if let file = sig.allowedSigners, access(file, R_OK) != 0 {
                return "environment \(name) checks SSH signatures but its allowed_signers file \(file) cannot be read"
            }
        }
        return nil
    }

    /// Checks `signature` over `message` against `allowedSigners`.
    /// - Parameter claimed: the name the caller gave; when the key is listed under several principals,
    ///   the one that matches it is chosen.
    /// - Returns: the principal and key, or a refusal: `signature_invalid` (garbled, forged, another
    ///   namespace or message) or `signer_not_allowed` (a sound signature by a key not listed for this namespace).
    /// - Throws: `runtime_unavailable` when `ssh-keygen` cannot be run.
    public static func verify(message: [UInt8], signature: String, allowedSigners: String, claimed: String?) async throws(EngineError) -> VerifiedSigner {
        guard signature.utf8.count <= maxSignatureBytes, signature.contains("-----BEGIN SSH SIGNATURE-----"),
            signature.contains("-----END SSH SIGNATURE-----")
        else {
            throw EngineError.approval("signature_invalid", "signature must be an armored SSH signature (ssh-keygen -Y sign -n \(namespace)), at most \(maxSignatureBytes) bytes")
        }
        let tool: String
        do { tool = try keygen() } catch {
            throw EngineError.runtime(RuntimeError(code: "ssh_keygen_missing", message: "SSH signatures cannot be checked: \(error.message)"))
        }
        guard access(allowedSigners, R_OK) == 0 else {
            throw EngineError.runtime(RuntimeError(code: "allowed_signers_unreadable", message: "the allowed_signers file \(allowedSigners) cannot be read"))
        }
        let dir: PrivateDirectory
        do { dir = try PrivateDirectory() } catch { throw EngineError.runtime(error) }
        defer { dir.remove() }
        let msgPath = dir.path + "/message"
        let sigPath = dir.path + "/message.sig"
        do {
            try dir.write(msgPath, message)
            try dir.write(sigPath, Array(signature.utf8))
        } catch { throw EngineError.runtime(error) }

        // 1. Is it a sound signature over this message in our namespace, and by which key?
        let check = try await run(tool, ["-Y", "check-novalidate", "-n", namespace, "-s", sigPath], stdin: msgPath)
        guard check.status == 0, let fingerprint = fingerprint(in: check.output) else {
            throw EngineError.approval("signature_invalid", "the SSH signature does not verify for this \(namespace) message: \(lastLine(check.output))")
        }
        // 2. Which allowed_signers entry is that key?
        let find = try await run(tool, ["-Y", "find-principals", "-f", allowedSigners, "-n", namespace, "-s", sigPath], stdin: "/dev/null")
        let principals = find.status == 0
            ? find.output.split(separator: "\n").map { String($0) }.filter { !$0.isEmpty && !$0.contains(" ") }
            : []
        guard !principals.isEmpty else {
            throw EngineError.approval("signer_not_allowed", "the key \(fingerprint) that made this signature is not in \(allowedSigners) for namespace \(namespace)")
        }
        // 3. The full check, with the entry's own restrictions (namespaces, validity). find-principals names
        // only the first entry of a key listed several times, so the name the caller gave is tried first.
        func verifies(as principal: String) async throws(EngineError) -> (ok: Bool, output: String) {
            let r = try await run(tool, ["-Y", "verify", "-f", allowedSigners, "-I", principal, "-n", namespace, "-s", sigPath], stdin: msgPath)
            return (r.status == 0, r.output)
        }
        var principal = principals[0]
        if let claimed, !principals.contains(claimed), Names.validateActor(claimed, field: "principal") == nil,
            try await verifies(as: claimed).ok
        {
            principal = claimed
        } else {
            let final = try await verifies(as: principal)
            guard final.ok else {
                throw EngineError.approval("signer_not_allowed", "\(allowedSigners) does not allow \(principal) to sign in namespace \(namespace): \(lastLine(final.output))")
            }
        }
        return VerifiedSigner(principal: principal, fingerprint: fingerprint, signature: signature, message: String(decoding: message, as: UTF8.self))
    }

    static func run(_ tool: String, _ args: [String], stdin: String) async throws(EngineError) -> (status: Int32, output: String) {
        do {
            return try await ProcessLauncher.run(executable: tool, arguments: args, standardInput: stdin, timeout: timeout)
        } catch {
            throw EngineError.runtime(error)
        }
    }

    /// The `SHA256:...` token of ssh-keygen's "Good ... signature ... with ED25519 key SHA256:..." line.
    static func fingerprint(in output: String) -> String? {
        for word in output.split(whereSeparator: { $0 == " " || $0 == "\n" }) where word.hasPrefix("SHA256:") {
            return String(word)
        }
        return nil
    }

    static func lastLine(_ s: String) -> String {
        let lines = s.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        return String((lines.last ?? "no output").prefix(200))
    }
}

/// A `mkdtemp` directory (mode 0700) for the message and signature files.
struct PrivateDirectory {
    let path: String

    init() throws(RuntimeError) {
        let base = ProcessLauncher.currentEnvironment()["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/model-deployer-sig-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw RuntimeError(code: "io_failed", message: "cannot create a private temporary directory under \(base)")
        }
        path = String(cString: p)
    }

    func write(_ file: String, _ bytes: [UInt8]) throws(RuntimeError) {
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw RuntimeError(code: "io_failed", message: "cannot create \(file)") }
        defer { close(fd) }
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw RuntimeError(code: "io_failed", message: "cannot write \(file)")
            }
            off += n
        }
    }

    func remove() {
        for name in ["message", "message.sig"] { unlink(path + "/" + name) }
        rmdir(path)
    }
}
