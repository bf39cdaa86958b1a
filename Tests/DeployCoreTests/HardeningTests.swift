import DeployCore
import JSON
import Testing

/// Issue 9 items owned by DeployCore: identities (four eyes by case, invisible characters), numeric
/// conversions of store input (a bento's declared memory) and the smoke-test route form.
@Suite struct IdentityTests {
    @Test(arguments: [
        ("alice", "Alice"), ("alice", "ALICE"), ("alice", " alice "), ("Straße", "STRASSE"), ("café", "cafe\u{301}"),
        ("ΟΔΥΣΣΕΥΣ", "οδυσσευς"), ("alice", "al\u{200B}ice"),
    ])
    func sameIdentity(a: String, b: String) {
        #expect(Names.sameIdentity(a, b))
        #expect(Names.identityKey(a) == Names.identityKey(b))
    }

    @Test(arguments: [("alice", "bob"), ("alice", "alicia"), ("alice", "al ice")])
    func differentIdentities(a: String, b: String) {
        #expect(!Names.sameIdentity(a, b))
    }

    @Test func fourEyesIsNotBypassedByCase() {
        let gate = Gate(kind: .deploy, approvers: nil, fourEyes: true)
        for approver in ["Alice", "ALICE", " alice", "alice\u{200B}"] {
            guard case .forbidden(let reason, _) = ApprovalPolicy.checkApproval(gate: gate, approver: approver, requestedBy: "alice") else {
                Issue.record("\(approver.debugDescription) approved alice's own deployment")
                continue
            }
            #expect(reason == "self_approval_forbidden")
        }
        #expect(ApprovalPolicy.checkApproval(gate: gate, approver: "Bob", requestedBy: "alice") == .allowed)
    }

    @Test func approverListsCompareIdentities() {
        let gate = Gate(kind: .promote, approvers: ["Carol"], fourEyes: true)
        #expect(ApprovalPolicy.checkApproval(gate: gate, approver: "carol", requestedBy: "alice") == .allowed)
        if case .forbidden(let reason, _) = ApprovalPolicy.checkApproval(gate: gate, approver: "caro1", requestedBy: "alice") {
            #expect(reason == "approver_not_allowed")
        } else {
            Issue.record("an unlisted approver was allowed")
        }
    }

    @Test(arguments: [
        "\u{200B}", "\u{202E}", "al\u{202E}ice", "\u{2066}bob\u{2069}", "bob\u{200D}", "\u{FEFF}bob", "bob\u{0}", "bob\u{7F}",
        "bob\u{85}", "bob\u{2028}", "bob\u{E000}", "\u{00AD}", "bob\u{180E}",
    ])
    func invisibleControlAndBidiCharactersAreRefused(actor: String) {
        let m = Names.validateActor(actor, field: "requested_by")
        #expect(m != nil, "\(actor.unicodeScalars.map { String($0.value, radix: 16) }) accepted")
        #expect(m?.hasPrefix("requested_by") == true)
    }

    @Test func actorLengthIsBoundedInBytesAndCharacters() {
        // One grapheme of 200 KB: one character, far too many bytes.
        let oneGrapheme = "e" + String(repeating: "\u{301}", count: 100_000)
        #expect(oneGrapheme.count == 1)
        #expect(Names.validateActor(oneGrapheme, field: "requested_by")?.contains("bytes") == true)
        #expect(Names.validateActor(String(repeating: "é", count: 128), field: "approver") == nil)  // 256 bytes
        #expect(Names.validateActor(String(repeating: "é", count: 128) + "x", field: "approver") != nil)
        #expect(Names.validateActor("Zoë O'Brien-Łukasiewicz", field: "approver") == nil)
    }

    @Test(arguments: [("/classify", "classify"), ("classify", "classify"), ("//x", "/x")])
    func smokeTestRoutesBecomeAPINames(given: String, name: String) {
        #expect(Names.apiName(given) == name)
    }

    @Test func routeFormPassesValidationOnceNormalised() {
        #expect(Names.validateAPI(Names.apiName("/classify")) == nil)
        #expect(Names.validateAPI(Names.apiName("//classify")) != nil)
    }
}

@Suite struct NumericInputTests {
    @Test(arguments: [1e300, 1e19, Double.infinity, 9.3e18 * 1_048_576])
    func hugeDeclaredMemoryRefusesThePlanNamingTheBento(bytes: Double) {
        let refusal = Fixtures.refusal(Fixtures.input(resources: ["memory": .double(bytes)]))
        #expect(refusal?.reason == "insufficient_resources")
        #expect(refusal?.message.contains("bento iris_svc:bv2") == true)
    }

    @Test(arguments: ["1e300", "1e300Mi", "1e20Ti", "infGi", "99999999999999999999999Ki"])
    func hugeDeclaredMemoryTextIsOutOfRange(text: String) {
        guard case .outOfRange = Planner.declaredMemory(of: .string(text)) else {
            Issue.record("\(text) was not out of range")
            return
        }
        #expect(Planner.memoryMB(of: .string(text)) == nil)
        #expect(Fixtures.refusal(Fixtures.input(resources: ["memory": .string(text)]))?.reason == "insufficient_resources")
    }

    @Test(arguments: ["nan", "nanMi", "-5Gi", "0", "lots", ""])
    func unreadableDeclaredMemoryIsIgnored(text: String) throws {
        #expect(Planner.declaredMemory(of: .string(text)) == .unreadable)
        let plan = try Fixtures.plan(Fixtures.input(resources: ["memory": .string(text)]))
        #expect(plan.requirements.estimatedMemoryMB == Planner.slotBaseMemoryMB + 1)
    }

    @Test func declaredFiguresInRangeStillWork() {
        #expect(Planner.declaredMemory(of: "512Mi") == .mebibytes(512))
        #expect(Planner.declaredMemory(of: .double(1_048_576)) == .mebibytes(1))
        #expect(Planner.declaredMemory(of: "16Ti") == .mebibytes(Planner.maxMemoryMB))
    }

    @Test(arguments: [JSONValue.string("nan"), .double(.infinity), .double(-2), .string("-1"), .double(.nan)])
    func unusableCPUFiguresAreUndeclared(value: JSONValue) throws {
        #expect(Planner.cpus(of: value) == nil)
        let plan = try Fixtures.plan(Fixtures.input(resources: ["cpu": value, "gpu": .double(1e300)]))
        #expect(plan.requirements.cpu == nil)
        #expect(plan.requirements.gpu == 0)
    }

    @Test func requestedMemoryAboveTheMaximumIsInvalidParams() {
        let r = Fixtures.refusal(Fixtures.input(requirements: RequirementOverrides(memoryMB: Planner.maxMemoryMB + 1)))
        #expect(r?.reason == "invalid_params" && r?.field == "requirements")
        #expect(r?.message.contains("requirements.memory_mb") == true)
    }

    @Test(arguments: ["bake_seconds", "keep_warm_seconds", "approval_timeout", "startup_deadline_seconds"])
    func policyDurationsAreBounded(field: String) {
        let text = #"{"environments": {"production": {"\#(field)": 9223372036854775807}}}"#
        #expect(throws: PolicyError.self) { try ApprovalPolicy(text: text) }
        let ok = #"{"environments": {"production": {"\#(field)": 3600}}}"#
        #expect(throws: Never.self) { try ApprovalPolicy(text: ok) }
    }
}
