import DeployCore
import Foundation
import JSON
import Testing

@Suite struct PolicyTests {
    @Test func defaults() throws {
        let p = ApprovalPolicy.defaults
        let prod = try #require(p.environment("production"))
        #expect(prod.gates == [.deploy, .promote])
        #expect(prod.fourEyes)
        let staging = try #require(p.environment("staging"))
        #expect(staging.gates == [.deploy])
        #expect(!staging.fourEyes)
        let dev = try #require(p.environment("development"))
        #expect(dev.gates == [])
        #expect(p.environment("qa") == nil)
        #expect(p.gates(for: dev, extra: []).isEmpty)
    }

    @Test func extraGatesAddButNeverRemove() throws {
        let p = ApprovalPolicy.defaults
        let dev = try #require(p.environment("development"))
        #expect(p.gates(for: dev, extra: [.promote]).map(\.kind) == [.promote])
        let staging = try #require(p.environment("staging"))
        #expect(p.gates(for: staging, extra: [.promote, .deploy, .promote]).map(\.kind) == [.deploy, .promote])
        let prod = try #require(p.environment("production"))
        #expect(p.gates(for: prod, extra: []).map(\.kind) == [.deploy, .promote])
        #expect(p.gates(for: prod, extra: []).allSatisfy { $0.fourEyes && $0.timeoutSeconds == 259_200 })
    }

    @Test func fileOverridesAndAddsEnvironments() throws {
        let json = try JSONValue.parse("""
            {"version": 1, "environments": {
              "production": {"approvers": ["carol", "dave"], "bake_seconds": 5, "approval_timeout": 600},
              "qa": {"gates": ["promote"], "four_eyes": true, "latency_factor": 3},
              "development": {"approval_timeout": null}
            }}
            """)
        let p = try ApprovalPolicy(json: json)
        let prod = try #require(p.environment("production"))
        #expect(prod.approvers == ["carol", "dave"])
        #expect(prod.bakeSeconds == 5)
        #expect(prod.approvalTimeoutSeconds == 600)
        #expect(prod.gates == [.deploy, .promote])  // untouched fields keep their defaults
        #expect(prod.fourEyes)
        let qa = try #require(p.environment("qa"))
        #expect(qa.gates == [.promote])
        #expect(qa.fourEyes)
        #expect(qa.latencyFactor == 3)
        #expect(qa.keepWarmSeconds == 600)  // staging defaults for a new environment
        #expect(p.environment("staging") != nil)
        #expect(try ApprovalPolicy(json: .object([:])) == .defaults)
    }

    @Test(arguments: [
        (#"{"environments": {"production": {"four_eys": true}}}"#, "environments.production.four_eys"),
        (#"{"environments": {"production": {"gates": ["deploy", "launch"]}}}"#, "environments.production.gates[1]"),
        (#"{"environments": {"production": {"bake_seconds": "ten"}}}"#, "environments.production.bake_seconds"),
        (#"{"environments": {"production": {"approvers": []}}}"#, "environments.production.approvers"),
        (#"{"environments": {"Prod!": {}}}"#, "environments.Prod!"),
        (#"{"environments": {"staging": {"error_rate_factor": 0.5}}}"#, "environments.staging.error_rate_factor"),
        (#"{"envs": {}}"#, "envs"),
        (#"[1]"#, "expected an object"),
    ])
    func parseErrorsNameTheField(text: String, mentions: String) throws {
        let json = try JSONValue.parse(text)
        do {
            _ = try ApprovalPolicy(json: json)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.message.contains(mentions), "\(error.message)")
        }
    }

    @Test func selfApprovalAndApproverLists() {
        let fourEyes = Gate(kind: .deploy, approvers: nil, fourEyes: true)
        #expect(ApprovalPolicy.checkApproval(gate: fourEyes, approver: "bob", requestedBy: "alice") == .allowed)
        guard case .forbidden(let reason, let message) = ApprovalPolicy.checkApproval(gate: fourEyes, approver: "alice", requestedBy: "alice") else {
            Issue.record("self-approval allowed")
            return
        }
        #expect(reason == "self_approval_forbidden")
        #expect(message.contains("alice"))
        let noFourEyes = Gate(kind: .deploy, approvers: nil, fourEyes: false)
        #expect(ApprovalPolicy.checkApproval(gate: noFourEyes, approver: "alice", requestedBy: "alice") == .allowed)
        let listed = Gate(kind: .promote, approvers: ["carol", "alice"], fourEyes: true)
        if case .forbidden(let reason, _) = ApprovalPolicy.checkApproval(gate: listed, approver: "bob", requestedBy: "alice") {
            #expect(reason == "approver_not_allowed")
        } else {
            Issue.record("unlisted approver allowed")
        }
        // Being on the list does not lift four eyes.
        if case .forbidden(let reason, _) = ApprovalPolicy.checkApproval(gate: listed, approver: "alice", requestedBy: "alice") {
            #expect(reason == "self_approval_forbidden")
        } else {
            Issue.record("listed requester allowed to self-approve")
        }
        #expect(ApprovalPolicy.checkApproval(gate: listed, approver: "carol", requestedBy: "alice") == .allowed)
    }

    @Test func gatesExpireWithTheInjectedClock() {
        let opened = Date(timeIntervalSince1970: 1_000_000)
        let gate = Gate(kind: .deploy, timeoutSeconds: 600)
        let p = ApprovalPolicy.defaults
        #expect(!p.isExpired(gateOpenedAt: opened, now: opened.addingTimeInterval(599), gate: gate))
        #expect(p.isExpired(gateOpenedAt: opened, now: opened.addingTimeInterval(600), gate: gate))
        #expect(!p.isExpired(gateOpenedAt: opened, now: opened.addingTimeInterval(1e9), gate: Gate(kind: .deploy, timeoutSeconds: nil)))
    }

    @Test func wireNames() {
        #expect(GateKind(rawValue: "deploy") == .deploy)
        #expect(GateKind(rawValue: "promote") == .promote)
        #expect(StrategyRequest(rawValue: "blue_green") == .blueGreen)
        #expect(StrategyRequest.allCases.map(\.rawValue) == ["auto", "direct", "blue_green", "canary"])
    }
}

@Suite struct PolicyFileTests {
    @Test func textAndRoundTrip() throws {
        let p = try ApprovalPolicy(text: #"{"environments": {"qa": {"gates": [], "approval_timeout": null}}}"#)
        #expect(p.environment("qa")?.gates == [])
        #expect(p.environment("qa")?.approvalTimeoutSeconds == nil)
        // What toJSON writes parses back to the same policy.
        #expect(try ApprovalPolicy(json: p.toJSON()) == p)
        #expect(try ApprovalPolicy(json: ApprovalPolicy.defaults.toJSON()) == .defaults)
    }

    @Test func invalidJSONIsAPolicyError() {
        #expect(throws: PolicyError.self) { try ApprovalPolicy(text: "{nope") }
    }
}
