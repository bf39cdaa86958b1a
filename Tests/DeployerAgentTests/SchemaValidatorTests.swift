import DeployCore
@testable import DeployerAgent
import DeployRuntime
import JSON
import JSONRPC
import Testing

/// The params validator built from the contract the agent embeds (protocol/openrpc.json).
@Suite struct SchemaValidatorTests {
    static let doc = try! JSONValue.parse(openRPCDocumentText)
    static let validators = ParamValidators(openRPC: { doc }, mcpMethods: ["initialize", "tools/list", "tools/call"])

    static let plan: [String: JSONValue] = ["model_name": "iris_clf", "model_version": "v1", "environment": "staging", "requested_by": "alice"]

    /// The field the validator names, or nil when `params` pass.
    static func field(_ method: String, _ params: JSONValue?) -> String?? {
        do {
            try validators.check(method, params)
            return .none
        } catch {
            #expect(error.code == -32602)
            #expect(error.reason == "invalid_params")
            return .some(error.data?["field"]?.stringValue)
        }
    }

    static func plan(with extra: [String: JSONValue]) -> JSONValue {
        .object(plan.merging(extra) { $1 })
    }

    @Test func everyMethodOfTheContractCompiles() throws {
        let all = try Self.validators.all()
        let names = Self.doc["methods"]!.arrayValue!.compactMap { $0["name"]?.stringValue }
        #expect(Set(all.keys) == Set(names))
        #expect(all["deploy.plan"]!.params.map(\.name).contains("smoke_tests"))
    }

    @Test func validParamsPass() {
        #expect(Self.field("deploy.plan", Self.plan(with: [:])) == .none)
        #expect(Self.field("deploy.plan", Self.plan(with: [
            "smoke_tests": [["api": "/classify", "input": ["x": [1, 2]], "expect": [0]]],
            "requirements": ["memory_mb": 512, "cpu": 0.5, "gpu": 0], "gates": ["promote"], "idempotency_key": "k-1",
        ])) == .none)
        #expect(Self.field("history.query", ["status": ["live", "failed"], "limit": 10]) == .none)
        #expect(Self.field("history.query", ["status": "live"]) == .none)
        #expect(Self.field("history.query", nil) == .none)
        #expect(Self.field("deploy.approve", ["deployment_id": "01900000-0000-7000-8000-000000000000", "approver": "bob",
                                              "decision": "approve", "comment": "looks good\n\tthanks"]) == .none)
    }

    @Test(arguments: [
        // Crash inputs of issue 9 on every numeric field, and -0 / 1e400 (infinite after parsing).
        ("memory_mb", JSONValue.double(1e19)), ("memory_mb", .double(1e300)), ("memory_mb", .double(-0.0)), ("memory_mb", .double(.infinity)),
        ("gpu", .double(1e300)), ("gpu", .double(1e19)), ("gpu", .double(.infinity)), ("gpu", .double(0.5)), ("gpu", .int(-1)),
        ("cpu", .double(1e300)), ("cpu", .double(-0.0)), ("cpu", .double(.infinity)),
        ("expected_rps", .double(1e300)), ("expected_rps", .double(.infinity)), ("expected_rps", .int(-1)),
        ("latency_slo_ms", .double(1e300)), ("latency_slo_ms", .double(-0.0)), ("latency_slo_ms", "fast"),
    ])
    func numericRequirementsOutOfRangeNameTheField(key: String, value: JSONValue) {
        #expect(Self.field("deploy.plan", Self.plan(with: ["requirements": [key: value]])) == .some("requirements.\(key)"))
    }

    @Test func lengthsAreCountedInBytes() {
        // 4096 bytes pass, 4097 do not, even when the characters are fewer.
        let id = "01900000-0000-7000-8000-000000000000"
        func approve(_ comment: String) -> JSONValue { ["deployment_id": .string(id), "approver": "bob", "decision": "approve", "comment": .string(comment)] }
        #expect(Self.field("deploy.approve", approve(String(repeating: "x", count: 4096))) == .none)
        #expect(Self.field("deploy.approve", approve(String(repeating: "x", count: 4097))) == .some("comment"))
        #expect(Self.field("deploy.approve", approve(String(repeating: "é", count: 2049))) == .some("comment"))
        #expect(Self.field("deploy.approve", approve(String(repeating: "x", count: 1 << 20))) == .some("comment"))
        #expect(Self.field("deploy.execute", ["deployment_id": .string(id), "idempotency_key": .string(String(repeating: "k", count: 100_000))])
            == .some("idempotency_key"))
        let oneGrapheme = "e" + String(repeating: "\u{301}", count: 100_000)
        #expect(Self.field("deploy.plan", Self.plan(with: ["requested_by": .string(oneGrapheme)])) == .some("requested_by"))
    }

    @Test(arguments: ["comment", "idempotency_key", "requested_by", "model_name", "reason", "input"])
    func nulIsRefusedEverywhere(key: String) {
        let id = "01900000-0000-7000-8000-000000000000"
        switch key {
        case "comment":
            #expect(Self.field("deploy.approve", ["deployment_id": .string(id), "approver": "bob", "decision": "approve", "comment": "a\u{0}b"]) == .some("comment"))
        case "idempotency_key":
            #expect(Self.field("deploy.execute", ["deployment_id": .string(id), "idempotency_key": "k\u{0}"]) == .some("idempotency_key"))
            #expect(Self.field("deploy.plan", Self.plan(with: ["idempotency_key": "k\u{0}"])) == .some("idempotency_key"))
        case "reason":
            #expect(Self.field("deploy.rollback", ["model_name": "m", "environment": "e", "requested_by": "a", "reason": "x\u{0}"]) == .some("reason"))
        case "input":
            // A smoke test's input has no schema, but it is stored: no NUL there either, named to the member.
            #expect(Self.field("deploy.plan", Self.plan(with: ["smoke_tests": [["api": "predict", "input": ["text": "a\u{0}"]]]]))
                == .some("smoke_tests[0].input.text"))
        default:
            #expect(Self.field("deploy.plan", Self.plan(with: [key: "a\u{0}"])) == .some(key))
        }
    }

    @Test func controlCharactersOnlyWhereMultiline() {
        let id = "01900000-0000-7000-8000-000000000000"
        #expect(Self.field("deploy.execute", ["deployment_id": .string(id), "idempotency_key": "a\nb"]) == .some("idempotency_key"))
        #expect(Self.field("deploy.execute", ["deployment_id": .string(id), "idempotency_key": "a\u{1B}[2J"]) == .some("idempotency_key"))
        #expect(Self.field("deploy.execute", ["deployment_id": .string(id), "idempotency_key": "a\u{85}"]) == .some("idempotency_key"))
        #expect(Self.field("deploy.rollback", ["model_name": "m", "environment": "e", "requested_by": "a", "reason": "line 1\r\nline 2\t."]) == .none)
        #expect(Self.field("deploy.rollback", ["model_name": "m", "environment": "e", "requested_by": "a", "reason": "bell\u{7}"]) == .some("reason"))
    }

    @Test func pathsNameNestedMembers() {
        #expect(Self.field("deploy.plan", Self.plan(with: ["smoke_tests": [["api": "predict", "input": 1], ["api": 5, "input": 1]]]))
            == .some("smoke_tests[1].api"))
        #expect(Self.field("deploy.plan", Self.plan(with: ["smoke_tests": [["api": "predict"]]])) == .some("smoke_tests[0].input"))
        #expect(Self.field("deploy.plan", Self.plan(with: ["smoke_tests": [["api": "predict", "input": 1, "surprise": 1]]]))
            == .some("smoke_tests[0].surprise"))
        #expect(Self.field("deploy.plan", Self.plan(with: ["requirements": ["ram": 1]])) == .some("requirements.ram"))
        #expect(Self.field("deploy.plan", Self.plan(with: ["smoke_tests": .array(Array(repeating: ["api": "p", "input": 1], count: 33))]))
            == .some("smoke_tests"))
        #expect(Self.field("deploy.plan", Self.plan(with: ["gates": ["deploy", "deploy"]])) == .some("gates[1]"))
        #expect(Self.field("deploy.plan", Self.plan(with: ["gates": ["later"]])) == .some("gates[0]"))
    }

    @Test func statusNeedsAtLeastOneItem() {
        #expect(Self.field("history.query", ["status": []]) == .some("status"))
        #expect(Self.field("history.query", ["status": ["live", "nope"]]) == .some("status[1]"))
        #expect(Self.field("history.query", ["status": 5]) == .some("status"))
    }

    @Test func requiredUnknownAndTypes() {
        #expect(Self.field("deploy.status", [:]) == .some("deployment_id"))
        #expect(Self.field("deploy.status", ["deployment_id": .null]) == .some("deployment_id"))
        #expect(Self.field("deploy.status", ["deployment_id": 5]) == .some("deployment_id"))
        #expect(Self.field("history.query", ["bogus": 1]) == .some("bogus"))
        #expect(Self.field("history.query", ["limit": "ten"]) == .some("limit"))
        #expect(Self.field("history.query", ["limit": 1e300]) == .some("limit"))
        #expect(Self.field("history.query", ["limit": 1001]) == .some("limit"))
        #expect(Self.field("history.query", ["include_events": "yes"]) == .some("include_events"))
        #expect(Self.field("history.query", ["since": "yesterday"]) == .some("since"))
        // MCP glue tolerates members a newer MCP revision adds, but not wrong types.
        #expect(Self.field("tools/call", ["name": "deploy_status", "arguments": [:], "task": [:]]) == .none)
        #expect(Self.field("tools/call", ["name": .string(String(repeating: "t", count: 200))]) == .some("name"))
        do {
            try Self.validators.check("history.query", [1, 2])
            Issue.record("by-position params accepted")
        } catch {
            #expect(error.code == -32602)
        }
    }

    @Test func routeFormOfASmokeTestAPIMatchesTheContract() {
        #expect(Self.field("deploy.plan", Self.plan(with: ["smoke_tests": [["api": "/classify", "input": 1]]])) == .none)
        #expect(Self.field("deploy.plan", Self.plan(with: ["smoke_tests": [["api": "//classify", "input": 1]]])) == .some("smoke_tests[0].api"))
    }

    @Test func mcpToolErrorsCarryCodeReasonAndField() {
        let e = RPCError.invalidParams("requirements.memory_mb must be at most 16777216", field: "requirements.memory_mb")
        let r = MCPAdapter.toolError(e)
        #expect(r["isError"] == .bool(true))
        #expect(r["structuredContent"]?["error"]?["code"] == .int(-32602))
        #expect(r["structuredContent"]?["error"]?["reason"] == "invalid_params")
        #expect(r["structuredContent"]?["error"]?["field"] == "requirements.memory_mb")
        let text = r["content"]?.arrayValue?.first?["text"]?.stringValue ?? ""
        #expect(text.contains("requirements.memory_mb") && text.contains("invalid_params"))
    }

    @Test func toolSchemasCarryTheLimits() {
        let tool = MCPAdapter.tool(for: "deploy.approve", openRPC: Self.doc)
        #expect(tool.definition["inputSchema"]?["properties"]?["comment"]?["maxLength"] == .int(4096))
        #expect(tool.definition["inputSchema"]?["properties"]?["approver"]?["pattern"] != nil)
    }

    @Test func ownKeywordsAreNotShownToModels() {
        let doc: JSONValue = ["methods": [["name": "m", "params": [["name": "p", "schema": ["type": "string", "x-note": true]]]]]]
        let tool = MCPAdapter.tool(for: "m", openRPC: doc)
        #expect(tool.definition["inputSchema"]?["properties"]?["p"] == ["type": "string"])
    }

    @Test func actorsRefuseInvisibleAndBidiCharactersByContract() {
        for bad in ["\u{200B}", "\u{202E}", "al\u{202E}ice", "\u{FEFF}bob", "b\u{2066}ob"] {
            #expect(Self.field("deploy.plan", Self.plan(with: ["requested_by": .string(bad)])) == .some("requested_by"))
        }
        #expect(Self.field("deploy.plan", Self.plan(with: ["requested_by": "Zoë Łukasiewicz"])) == .none)
    }
}

/// A bento is store input: whatever its bento.yaml declares, planning it refuses cleanly.
@Suite struct BentoDeclaredResourcesTests {
    static func bentoYAML(memory: String) -> String {
        """
        service: service:IrisClassifier
        name: iris_svc
        version: b1
        creation_time: '2025-11-29T10:00:00.000000+00:00'
        models:
        - tag: iris_clf:v1
        services:
        - name: IrisClassifier
          config:
            resources:
              cpu: '1'
              memory: \(memory)
        schema:
          routes:
          - name: classify
        """
    }

    @Test func canaryAnalysisLimitsComeFromTheSharedSchema() {
        func canary(_ analysis: JSONValue) -> JSONValue {
            SchemaValidatorTests.plan(with: ["strategy": "canary", "canary": ["steps": [10, 100], "analysis": analysis]])
        }
        #expect(SchemaValidatorTests.field("deploy.plan", canary(["interval_seconds": 5, "failure_limit": 3])) == .none)
        #expect(SchemaValidatorTests.field("deploy.plan", canary(["interval_seconds": 0])) == .some("canary.analysis.interval_seconds"))
        #expect(SchemaValidatorTests.field("deploy.plan", canary(["max_error_rate_delta": 2])) == .some("canary.analysis.max_error_rate_delta"))
        #expect(SchemaValidatorTests.field("deploy.plan", canary(["bogus": 1])) == .some("canary.analysis.bogus"))
    }

    /// `allOf`: a value must satisfy every part; the first part that refuses names the field.
    @Test func allOfChecksEveryPart() throws {
        let components: [String: JSONValue] = [
            "Base": ["type": "object", "properties": ["n": ["type": "integer", "maximum": 5]]],
        ]
        let schema: JSONValue = ["allOf": [["$ref": "#/components/schemas/Base"], ["required": ["n"]]]]
        let node = try SchemaValidator.compile(schema, components, at: "x", depth: 0)
        #expect(SchemaValidator.problem(["n": 3], node, path: "x") == nil)
        #expect(SchemaValidator.problem(["n": 9], node, path: "x")?.path == "x.n")
        #expect(SchemaValidator.problem(.object([:]), node, path: "x")?.message.contains("n") == true)
    }

    @Test(arguments: ["1e300", "1e19", ".inf", "'1e300Gi'", "99999999999999999999999999"])
    func hugeMemoryIsAPlanRefusalNamingTheBento(memory: String) throws {
        let bento = try #require(BentoStoreReader.parseBento(Self.bentoYAML(memory: memory)))
        #expect(bento.apis == ["classify"])
        let input = PlanInput(
            modelName: "iris_clf", modelVersion: "v1", environment: "staging", bentoTag: bento.tag,
            smokeTests: [SmokeTest(api: "classify", input: 1)], requestedBy: "alice",
            model: ModelFacts(name: "iris_clf", version: "v1", sizeBytes: 10_000),
            bento: BentoFacts(tag: bento.tag, resources: bento.resources, apis: bento.apis, models: bento.models),
            host: HostFacts(freeMemoryMB: 8_000, cpuCount: 4), policy: ApprovalPolicy.defaults.environment("staging")!)
        guard case .failure(let refusal) = Planner.plan(input) else {
            Issue.record("memory \(memory) was planned")
            return
        }
        #expect(refusal.reason == "insufficient_resources")
        #expect(refusal.message.contains("bento iris_svc:b1"))
    }
}
