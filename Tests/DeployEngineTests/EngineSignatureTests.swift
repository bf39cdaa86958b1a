import DeployCore
@testable import DeployEngine
import DeploymentStore
import DeployRuntime
import Foundation
import JSON
import TestSupport
import Testing

/// `deploy.plan` and `deploy.approve` in a signed environment, through the engine, with real keys.
/// Plans here stop at the BentoML store (there is none): a refusal names the signature rule that failed,
/// and a request that passes every rule goes on to `model_not_found`.
@Suite struct EngineSignatureTests {
    let keys: SSHKeys
    let allowed: String
    let home: String
    /// The agent's clock in these tests: fixed, so signed_at can be set before or after it exactly.
    let now = Date(timeIntervalSince1970: 1_780_000_000)

    init() throws {
        keys = try SSHKeys()
        for k in ["alice", "bob", "mallory"] { try keys.key(k) }
        // alice's key is also listed as "alice-ops": a second name must not let one key pass four eyes.
        allowed = try keys.allowedSigners([
            ("alice@example.com", "alice", "model-deployer"), ("alice-ops@example.com", "alice", "model-deployer"),
            ("bob@example.com", "bob", "model-deployer"),
        ])
        home = keys.dir + "/home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    func engine(_ store: any DeploymentStore = InMemoryStore()) throws -> Engine {
        let policy = try ApprovalPolicy(text: #"{"environments": {"production": {"signatures": {"required": true, "allowed_signers": "\#(allowed)"}}}}"#)
        let config = EngineConfig(home: home, bentoml: "/bin/false", bentomlHome: home + "/bentoml", nginx: "/bin/false", agentID: "test:1:1")
        return Engine(config: config, store: store, policy: policy,
                      // The local runtime over an empty BentoML store: a request whose signature passes gets as far as model_not_found.
                      runtime: RuntimePorts.local(home: home, bentoml: "/bin/false", bentomlHome: home + "/bentoml", nginx: "/bin/false"),
                      clock: FixedClock(now), storedCode: Harness.codes)
    }

    func stamp(_ d: Date) -> String { d.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)) }

    /// A plan request as a client sends it, signed by `key` (params exactly as on the wire).
    func signedPlan(requestedBy: String, key: String?, signedAt: Date? = nil, environment: String = "production") throws -> PlanRequest {
        var params: [String: JSONValue] = [
            "model_name": "iris_clf", "model_version": "v1", "environment": .string(environment), "requested_by": .string(requestedBy),
        ]
        var req = PlanRequest(modelName: "iris_clf", modelVersion: "v1", environment: environment, requestedBy: requestedBy)
        if let key {
            params["signed_at"] = .string(stamp(signedAt ?? now))
            let message = SSHSignatures.planMessage(params: params)
            req.signature = RequestSignature(signature: try keys.sign(message, with: key), message: message, signedAt: params["signed_at"]?.stringValue)
        }
        return req
    }

    func planReason(_ e: Engine, _ req: PlanRequest) async -> String? {
        do { _ = try await e.plan(req); return nil } catch { return error.reason }
    }

    @Test func unsignedEnvironmentsBehaveAsBefore() async throws {
        let e = try engine()
        #expect(await planReason(e, try signedPlan(requestedBy: "anyone", key: nil, environment: "staging")) == "model_not_found")
    }

    @Test func signedRequestRules() async throws {
        let e = try engine()
        #expect(await planReason(e, try signedPlan(requestedBy: "alice@example.com", key: nil)) == "signature_required")
        #expect(await planReason(e, try signedPlan(requestedBy: "alice@example.com", key: "alice")) == "model_not_found")
        // Another name than the key's principal.
        #expect(await planReason(e, try signedPlan(requestedBy: "bob@example.com", key: "alice")) == "principal_mismatch")
        // A key nobody listed.
        #expect(await planReason(e, try signedPlan(requestedBy: "alice@example.com", key: "mallory")) == "signer_not_allowed")
        // Captured and replayed six minutes later; or stamped in the future.
        #expect(await planReason(e, try signedPlan(requestedBy: "alice@example.com", key: "alice", signedAt: now.addingTimeInterval(-360))) == "signature_expired")
        #expect(await planReason(e, try signedPlan(requestedBy: "alice@example.com", key: "alice", signedAt: now.addingTimeInterval(360))) == "signature_expired")
        // Within the window.
        #expect(await planReason(e, try signedPlan(requestedBy: "alice@example.com", key: "alice", signedAt: now.addingTimeInterval(-240))) == "model_not_found")
        // The request changed after signing (another model): the message no longer matches.
        var tampered = try signedPlan(requestedBy: "alice@example.com", key: "alice")
        let signedAt = try #require(tampered.signature?.signedAt)
        tampered.signature?.message = SSHSignatures.planMessage(params: [
            "model_name": "other", "model_version": "v1", "environment": "production", "requested_by": "alice@example.com",
            "signed_at": .string(signedAt),
        ])
        #expect(await planReason(e, tampered) == "signature_invalid")
    }

    /// A real plan for `model` in production (four eyes on both gates), made by the planner from fixed facts.
    func productionPlan(_ model: String) throws -> DeploymentPlan {
        let input = PlanInput(
            modelName: model, modelVersion: "v1", environment: "production", bentoTag: "\(model)_svc:b1", strategyRequest: .auto,
            smokeTests: [SmokeTest(api: "predict", input: ["x": [[5.1, 3.5, 1.4, 0.2]]], expect: [0])], requirements: .init(),
            requestedBy: "alice@example.com",
            model: ModelFacts(name: model, version: "v1", module: "bentoml.sklearn", sizeBytes: 20_000, labels: [:], metadata: [:],
                              creationTime: "2025-11-29T10:00:00Z"),
            bento: BentoFacts(tag: "\(model)_svc:b1", resources: nil, apis: ["predict"], models: ["\(model):v1"]),
            live: nil, host: HostFacts(freeMemoryMB: 20_000, cpuCount: 2), policy: ApprovalPolicy.defaults.environment("production")!,
            extraGates: [])
        switch Planner.plan(input) {
        case .success(let p): return p
        case .failure(let r): throw r
        }
    }

    /// A deployment waiting at its deploy gate, requested (and signed) by alice's key.
    func waitingDeployment(_ store: InMemoryStore, id: String, model: String = "iris_clf") throws -> DeploymentRecord {
        let plan = try productionPlan(model)
        let r = DeploymentRecord(
            deploymentId: id, modelName: model, modelVersion: "v1", environment: "production", strategy: plan.strategy,
            status: .awaitingApproval, slot: plan.config.slot.rawValue, plan: plan.toJSON(), planHash: plan.planHash,
            requestedBy: "alice@example.com", createdAt: now, updatedAt: now)
        let signer: JSONValue = ["principal": "alice@example.com", "key_fingerprint": .string(try keys.fingerprint("alice"))]
        try store.insert(r, event: DeploymentEvent(deploymentId: id, at: now, step: "plan", actor: "alice@example.com", message: "planned",
                                                  data: ["signature": signer]))
        return r
    }

    func approveReason(_ e: Engine, id: String, approver: String, signature: String?, decision: String = "approve") async -> String? {
        do {
            _ = try await e.approve(deploymentId: id, approver: approver, decision: decision, gate: nil, comment: nil, signature: signature, progress: { _ in })
            return nil
        } catch { return error.reason }
    }

    func approval(_ id: String, key: String, gate: GateKind = .deploy, decision: String = "approve", planHash: String) throws -> String {
        try keys.sign(SSHSignatures.approvalMessage(deploymentId: id, gate: gate, decision: decision, planHash: planHash), with: key)
    }

    @Test func signedApprovalRules() async throws {
        let store = InMemoryStore()
        let e = try engine(store)
        let d1 = "0190b5a0-0000-7000-8000-000000000001"
        let d2 = "0190b5a0-0000-7000-8000-000000000002"
        let h1 = try waitingDeployment(store, id: d1).planHash
        let h2 = try waitingDeployment(store, id: d2, model: "other_clf").planHash
        #expect(h1 != h2)
        #expect(await approveReason(e, id: d1, approver: "bob@example.com", signature: nil) == "signature_required")
        // Bob's approval of d1, replayed on d2, on the promote gate, as a rejection, or for another plan.
        #expect(await approveReason(e, id: d2, approver: "bob@example.com", signature: try approval(d1, key: "bob", planHash: h1)) == "signature_invalid")
        #expect(await approveReason(e, id: d1, approver: "bob@example.com", signature: try approval(d1, key: "bob", gate: .promote, planHash: h1)) == "signature_invalid")
        #expect(await approveReason(e, id: d1, approver: "bob@example.com", signature: try approval(d1, key: "bob", planHash: h1), decision: "reject") == "signature_invalid")
        #expect(await approveReason(e, id: d1, approver: "bob@example.com", signature: try approval(d1, key: "bob", planHash: h2)) == "signature_invalid")
        // A name that is not the key's.
        #expect(await approveReason(e, id: d1, approver: "carol@example.com", signature: try approval(d1, key: "bob", planHash: h1)) == "principal_mismatch")
        // The requesting key under its second name: four eyes compares keys, not only names.
        #expect(await approveReason(e, id: d1, approver: "alice-ops@example.com", signature: try approval(d1, key: "alice", planHash: h1)) == "self_approval_forbidden")
        #expect(try store.deployment(id: d1)?.status == .awaitingApproval)
        // Bob's own signed approval counts, and is recorded with his signature.
        #expect(await approveReason(e, id: d1, approver: "bob@example.com", signature: try approval(d1, key: "bob", planHash: h1)) == nil)
        let last = try #require(try store.events(deploymentId: d1).last)
        #expect(last.actor == "bob@example.com")
        #expect(last.data["signature"]?["key_fingerprint"]?.stringValue == (try keys.fingerprint("bob")))
        #expect(try store.deployment(id: d1)?.status == .approved)
        #expect(try store.deployment(id: d1)?.approvedBy == "bob@example.com")
        // And his signed rejection of d2.
        #expect(await approveReason(e, id: d2, approver: "bob@example.com", signature: try approval(d2, key: "bob", decision: "reject", planHash: h2), decision: "reject") == nil)
        #expect(try store.deployment(id: d2)?.status == .rejected)
    }
}


/// A clock stopped at one instant (signature freshness is checked against it).
private struct FixedClock: EngineClock {
    let instant: Date
    init(_ instant: Date) { self.instant = instant }
    func now() -> Date { instant }
    func sleep(milliseconds: Int) async throws { try Task.checkCancellation() }
}
