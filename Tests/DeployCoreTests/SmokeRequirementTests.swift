import DeployCore
import JSON
import Testing

/// Validation must call a model API before traffic moves: production requires smoke tests, elsewhere a
/// plan without them says loudly what it does not check.
@Suite struct SmokeRequirementTests {
    @Test func productionRefusesAPlanWithoutSmokeTests() {
        let r = Fixtures.refusal(Fixtures.input(environment: "production", smokeTests: []))
        #expect(r?.reason == "invalid_smoke_test")
        #expect(r?.message.contains("requires smoke tests") == true)
        // With one, it plans.
        #expect(Fixtures.refusal(Fixtures.input(environment: "production")) == nil)
    }

    @Test func elsewhereAPlanWithoutSmokeTestsWarns() throws {
        let plan = try Fixtures.plan(Fixtures.input(environment: "staging", smokeTests: []))
        #expect(plan.reasons.contains { $0.contains("WARNING: no smoke tests") })
        let withTests = try Fixtures.plan(Fixtures.input(environment: "staging"))
        #expect(!withTests.reasons.contains { $0.contains("WARNING") })
    }

    @Test func thePolicyFileTurnsItOnAndOff() throws {
        let policy = try ApprovalPolicy(json: ["version": 1, "environments": [
            "staging": ["require_smoke_tests": true], "production": ["require_smoke_tests": false],
        ]])
        #expect(policy.environment("staging")?.requireSmokeTests == true)
        #expect(policy.environment("production")?.requireSmokeTests == false)
        #expect(ApprovalPolicy.defaults.environment("production")?.requireSmokeTests == true)
        #expect(ApprovalPolicy.defaults.environment("development")?.requireSmokeTests == false)
        #expect(throws: PolicyError.self) { try ApprovalPolicy(json: ["environments": ["qa": ["require_smoke_tests": "yes"]]]) }
        let r = Fixtures.refusal(Fixtures.input(environment: "staging", smokeTests: [], policy: policy))
        #expect(r?.reason == "invalid_smoke_test")
    }
}
