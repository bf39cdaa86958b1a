import DeployCore
import JSON

/// Plan inputs for planner tests: a small scikit-learn model, a roomy host.
enum Fixtures {
    static let host = HostFacts(freeMemoryMB: 20_000, cpuCount: 2)

    static func live(version: String = "v1", slot: Slot = .blue, id: String = "dep-1", endpoint: String = "http://127.0.0.1:18500") -> LiveFacts {
        LiveFacts(version: version, deploymentId: id, slot: slot, endpointURL: endpoint, bentoTag: "iris_svc:b\(version)")
    }

    static func input(
        version: String = "v2", environment: String = "production", strategy: StrategyRequest = .auto, live: LiveFacts? = nil,
        host: HostFacts = host, sizeBytes: Int64? = 20_000, smokeTests: [SmokeTest] = [SmokeTest(api: "predict", input: ["x": [[5.1, 3.5, 1.4, 0.2]]], expect: [0])],
        requirements: RequirementOverrides = .init(), resources: JSONValue? = nil, extraGates: [GateKind] = [],
        policy: ApprovalPolicy = .defaults
    ) -> PlanInput {
        PlanInput(
            modelName: "iris_clf", modelVersion: version, environment: environment, bentoTag: "iris_svc:b\(version)",
            strategyRequest: strategy, smokeTests: smokeTests, requirements: requirements, requestedBy: "alice",
            model: ModelFacts(
                name: "iris_clf", version: version, module: "bentoml.sklearn", sizeBytes: sizeBytes, labels: ["owner": "ml-team"],
                metadata: ["accuracy": 0.97], creationTime: "2025-11-29T10:00:00Z"),
            bento: BentoFacts(tag: "iris_svc:b\(version)", resources: resources, apis: ["predict"], models: ["iris_clf:\(version)"]),
            live: live, host: host, policy: policy.environment(environment) ?? EnvironmentPolicy(name: environment), extraGates: extraGates)
    }

    static func plan(_ input: PlanInput) throws -> DeploymentPlan {
        switch Planner.plan(input) {
        case .success(let p): return p
        case .failure(let r): throw r
        }
    }

    static func refusal(_ input: PlanInput) -> PlanRefusal? {
        if case .failure(let r) = Planner.plan(input) { return r }
        return nil
    }
}
