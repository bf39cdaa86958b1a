import DeployCore
import JSON
import Testing

/// The policy's `runtime` field and what the planner makes of it.
@Suite struct RuntimeSettingTests {
    static let kube: JSONValue = ["version": 1, "environments": [
        "cluster": ["runtime": "kubernetes", "kubernetes": [
            "context": "prod-eu", "namespace": "models", "image": "registry.example/iris_classifier:{bento_version}", "replicas": 3,
        ]],
    ]]

    @Test func localIsTheDefaultAndKubernetesIsRead() throws {
        #expect(ApprovalPolicy.defaults.environment("staging")?.runtime == .local)
        let p = try ApprovalPolicy(json: Self.kube)
        let k = try #require(p.environment("cluster")?.runtime.kubernetes)
        #expect(k == KubernetesSettings(context: "prod-eu", namespace: "models", image: "registry.example/iris_classifier:{bento_version}", replicas: 3))
        #expect(p.toJSON()["environments"]?["cluster"]?["runtime"] == "kubernetes")
        #expect(p.toJSON()["environments"]?["cluster"]?["kubernetes"]?["progress_deadline_seconds"] == 600)
    }

    @Test(arguments: [
        (["runtime": "docker"] as JSONValue, "environments.x.runtime: unknown runtime"),
        (["runtime": "kubernetes"] as JSONValue, "environments.x.kubernetes: is required"),
        (["runtime": "kubernetes", "kubernetes": ["image": "i"]] as JSONValue, "environments.x.kubernetes.namespace: is required"),
        (["runtime": "kubernetes", "kubernetes": ["namespace": "n"]] as JSONValue, "environments.x.kubernetes.image: is required"),
        (["runtime": "kubernetes", "kubernetes": ["namespace": "n", "image": "i", "replicas": 0]] as JSONValue, "replicas: must be 1..1000"),
        (["runtime": "kubernetes", "kubernetes": ["namespace": "n", "image": "i", "nodes": 2]] as JSONValue, "nodes"),
        (["kubernetes": ["namespace": "n", "image": "i"]] as JSONValue, "only read with runtime \"kubernetes\""),
        (["runtime": "kubernetes", "kubernetes": ["namespace": "n", "image": "i", "context": ""]] as JSONValue, "context: must not be empty"),
    ])
    func badSettingsAreRefusedNamingTheField(env: JSONValue, expected: String) {
        do {
            _ = try ApprovalPolicy(json: ["environments": ["x": env]])
            Issue.record("accepted \(env.jsonString)")
        } catch {
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }

    @Test func thePlannerSaysWhereItRunsAndDoesNotCheckThisHost() throws {
        let policy = try ApprovalPolicy(json: Self.kube)
        var input = Fixtures.input(environment: "cluster", policy: policy)
        input.policy = policy.environment("cluster")!
        input.host = HostFacts(freeMemoryMB: 10, cpuCount: 1)
        let plan = try Fixtures.plan(input)
        #expect(plan.reasons.contains { $0.contains("runtime kubernetes") && $0.contains("namespace models") && $0.contains("3 Pods") })
        #expect(plan.requirements.host.message.contains("not checked against this host"))
        // No sentence about this host's slots: the cluster's Pods are not kept here.
        #expect(!plan.reasons.contains { $0.hasPrefix("slots:") })
        #expect(plan.config.routerPort == 80)
        // The same input on this machine is refused: 10 MiB free.
        var local = input
        local.policy.runtime = .local
        #expect(Fixtures.refusal(local)?.reason == "insufficient_resources")
    }

    /// A canary on Kubernetes is by replica ratio: the plan gives each step's Pods and says the shares are
    /// approximate and where the analysis's figures come from.
    @Test func aCanaryOnKubernetesSaysItsReplicaRatio() throws {
        let policy = try ApprovalPolicy(json: Self.kube)
        var input = Fixtures.input(environment: "cluster", strategy: .canary, live: Fixtures.live(), policy: policy)
        input.policy = policy.environment("cluster")!
        input.routerSplitsTraffic = true
        input.canary = ["steps": [25, 50, 75, 100]]
        let plan = try Fixtures.plan(input)
        #expect(plan.strategy == .canary)
        let said = try #require(plan.reasons.first { $0.contains("replica ratio") })
        #expect(said.contains("approximate"))
        #expect(said.contains("25%: 1 Pod of") && said.contains("beside 3 of") && said.contains("75%: 3 Pods of"), "\(said)")
        #expect(said.contains("pod proxy") && said.contains("not user traffic"))
    }
}
