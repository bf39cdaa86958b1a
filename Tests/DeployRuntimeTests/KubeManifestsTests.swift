import DeployCore
@testable import DeployRuntime
import JSON
import Testing

/// Fixtures shared by the Kubernetes unit and integration tests.
enum KubeFixtures {
    static let target = KubeTarget(context: nil, namespace: "models", imageTemplate: "registry.example/{bento_name}:{bento_version}",
                                   replicas: 2, progressDeadlineSeconds: 120)
    static func spec(version: String = "44bjszxl5o2ocax4", memoryMB: Int = 512, cpu: Double? = 0.5, gpu: Int = 0,
                     deploymentID: String = "018f3a2b-7c4d-7e5f-8a6b-1c2d3e4f5a6b", bentoVersion: String? = nil) -> KubeVersionSpec {
        KubeVersionSpec(modelName: "iris_classifier", environment: "production", version: version,
                        bentoTag: "iris_classifier:\(bentoVersion ?? version)", deploymentID: deploymentID,
                        resources: KubeResources(memoryMB: memoryMB, cpu: cpu, gpu: gpu))
    }
}

@Suite struct KubeNamesTests {
    @Test func namesAreDNSLabelsAndStable() throws {
        let d = try KubeNames.deploymentName(modelName: "iris_classifier", environment: "production", version: "44bjszxl5o2ocax4")
        #expect(d.hasPrefix("iris-classifier-production-44bjszxl5o2ocax4-"))
        #expect(KubeNames.isDNS1123Label(d))
        #expect(d == (try KubeNames.deploymentName(modelName: "iris_classifier", environment: "production", version: "44bjszxl5o2ocax4")))
        let s = try KubeNames.serviceName(modelName: "iris_classifier", environment: "production")
        #expect(s.hasPrefix("iris-classifier-production-") && KubeNames.isDNS1035Label(s))
        let p = try KubeNames.previewServiceName(modelName: "iris_classifier", environment: "production")
        #expect(p.hasPrefix("iris-classifier-production-preview-") && KubeNames.isDNS1035Label(p) && p != s)
    }

    @Test func lossyRenderingsStillGetDistinctNames() throws {
        // All of these render to the same readable text; the hash keeps them apart.
        let triples = [("a_b", "p", "v"), ("a.b", "p", "v"), ("a-b", "p", "v"), ("a", "b-p", "v"), ("a", "b", "p-v"),
                       ("a-b", "p", "V"), ("a-b", "p", "v+1"), ("a-b", "p", "v:1"), ("a-b", "p", "v.1")]
        let names = try triples.map { try KubeNames.deploymentName(modelName: $0.0, environment: $0.1, version: $0.2) }
        #expect(Set(names).count == names.count)
        let services = try [("a_b", "p"), ("a.b", "p"), ("a", "b-p"), ("a-b", "p")].map { try KubeNames.serviceName(modelName: $0.0, environment: $0.1) }
        #expect(Set(services).count == services.count)
        #expect(services.allSatisfy(KubeNames.isDNS1035Label))
    }

    @Test func longAndDigitLeadingNamesFit() throws {
        let long = String(repeating: "m", count: 63)
        let d = try KubeNames.deploymentName(modelName: long, environment: String(repeating: "e", count: 63),
                                             version: String(repeating: "V", count: 128))
        #expect(KubeNames.isDNS1123Label(d) && d.count <= 63)
        let s = try KubeNames.serviceName(modelName: "0model", environment: "prod")
        #expect(s.hasPrefix("m-0model-prod-") && KubeNames.isDNS1035Label(s))
    }

    @Test func labelValuesKeepValidValuesVerbatim() {
        #expect(KubeNames.labelValue("iris_classifier") == "iris_classifier")
        #expect(KubeNames.labelValue("V1.2") == "V1.2")
        let plus = KubeNames.labelValue("v1+build"), colon = KubeNames.labelValue("v1:build")
        #expect(plus != colon && KubeNames.isLabelValue(plus) && KubeNames.isLabelValue(colon))
        #expect(KubeNames.isLabelValue(KubeNames.labelValue(String(repeating: "a", count: 128))))
    }

    @Test(arguments: ["Iris", "", "../x", "a b", "a;b", "-a"])
    func refusesInvalidIdentities(_ model: String) {
        #expect(throws: RuntimeError.self) { try KubeNames.deploymentName(modelName: model, environment: "p", version: "v") }
        #expect(throws: RuntimeError.self) { try KubeNames.serviceName(modelName: model, environment: "p") }
    }

    @Test func dnsRules() {
        #expect(KubeNames.isDNS1123Label("a-1"))
        #expect(!KubeNames.isDNS1123Label("a-"))
        #expect(!KubeNames.isDNS1123Label("A"))
        #expect(!KubeNames.isDNS1123Label("a_b"))
        #expect(!KubeNames.isDNS1123Label(String(repeating: "a", count: 64)))
        #expect(!KubeNames.isDNS1035Label("1a"))
        #expect(KubeNames.isLabelValue(""))
        #expect(!KubeNames.isLabelValue("a:b"))
    }
}

@Suite struct KubeManifestsTests {
    static let goldenDeployment = """
    {
      "apiVersion": "apps/v1", "kind": "Deployment",
      "metadata": {
        "name": "iris-classifier-production-44bjszxl5o2ocax4-NAMEHASH", "namespace": "models",
        "labels": {"app.kubernetes.io/managed-by": "model-deployer", "app.kubernetes.io/name": "iris_classifier",
                   "model-deployer/deployment-id": "018f3a2b-7c4d-7e5f-8a6b-1c2d3e4f5a6b",
                   "model-deployer/environment": "production", "model-deployer/model": "iris_classifier",
                   "model-deployer/version": "44bjszxl5o2ocax4"},
        "annotations": {"model-deployer/bento-tag": "iris_classifier:44bjszxl5o2ocax4",
                        "model-deployer/environment-name": "production", "model-deployer/model-name": "iris_classifier",
                        "model-deployer/version-name": "44bjszxl5o2ocax4"}
      },
      "spec": {
        "replicas": 2, "progressDeadlineSeconds": 120, "revisionHistoryLimit": 2,
        "selector": {"matchLabels": {"model-deployer/environment": "production", "model-deployer/model": "iris_classifier",
                                     "model-deployer/version": "44bjszxl5o2ocax4"}},
        "template": {
          "metadata": {
            "labels": {"app.kubernetes.io/managed-by": "model-deployer", "app.kubernetes.io/name": "iris_classifier",
                       "model-deployer/deployment-id": "018f3a2b-7c4d-7e5f-8a6b-1c2d3e4f5a6b",
                       "model-deployer/environment": "production", "model-deployer/model": "iris_classifier",
                       "model-deployer/version": "44bjszxl5o2ocax4"},
            "annotations": {"model-deployer/bento-tag": "iris_classifier:44bjszxl5o2ocax4",
                            "model-deployer/environment-name": "production", "model-deployer/model-name": "iris_classifier",
                            "model-deployer/version-name": "44bjszxl5o2ocax4"}
          },
          "spec": {"containers": [{
            "name": "bento", "image": "registry.example/iris_classifier:44bjszxl5o2ocax4",
            "ports": [{"name": "http", "containerPort": 3000, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3},
            "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, "initialDelaySeconds": 30, "periodSeconds": 10,
                              "timeoutSeconds": 2, "failureThreshold": 3},
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}}
          }]}
        }
      }
    }
    """

    static let goldenService = """
    {
      "apiVersion": "v1", "kind": "Service",
      "metadata": {
        "name": "iris-classifier-production-NAMEHASH", "namespace": "models",
        "labels": {"app.kubernetes.io/managed-by": "model-deployer", "app.kubernetes.io/name": "iris_classifier",
                   "model-deployer/environment": "production", "model-deployer/model": "iris_classifier",
                   "model-deployer/role": "active"},
        "annotations": {"model-deployer/environment-name": "production", "model-deployer/model-name": "iris_classifier"}
      },
      "spec": {
        "type": "ClusterIP",
        "selector": {"model-deployer/environment": "production", "model-deployer/model": "iris_classifier",
                     "model-deployer/version": "44bjszxl5o2ocax4"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
      }
    }
    """

    private func golden(_ text: String, name: String) throws -> JSONValue {
        let hash = String(name.split(separator: "-").last!)
        return try JSONValue.parse(Array(text.replacingAll("NAMEHASH", hash).utf8))
    }

    @Test func deploymentMatchesGolden() throws {
        let d = try KubeManifests.deployment(KubeFixtures.spec(), target: KubeFixtures.target)
        let name = try #require(d["metadata"]?["name"]?.stringValue)
        #expect(d == (try golden(Self.goldenDeployment, name: name)))
        // Deterministic bytes: rendering twice gives the same text (sorted keys).
        #expect(d.jsonString == (try KubeManifests.deployment(KubeFixtures.spec(), target: KubeFixtures.target)).jsonString)
    }

    @Test func serviceMatchesGolden() throws {
        let s = try KubeManifests.service(modelName: "iris_classifier", environment: "production", selecting: "44bjszxl5o2ocax4",
                                          target: KubeFixtures.target)
        let name = try #require(s["metadata"]?["name"]?.stringValue)
        #expect(s == (try golden(Self.goldenService, name: name)))
        let p = try KubeManifests.service(modelName: "iris_classifier", environment: "production", selecting: "44bjszxl5o2ocax4",
                                          target: KubeFixtures.target, preview: true)
        #expect(p["metadata"]?["labels"]?["model-deployer/role"] == "preview")
        #expect(p["metadata"]?["name"] != s["metadata"]?["name"])
        #expect(p["spec"] == s["spec"])
    }

    @Test func selectorMatchesTemplateLabels() throws {
        // The API server refuses a Deployment whose selector does not match its template; check every label.
        let d = try KubeManifests.deployment(KubeFixtures.spec(version: "V1.0+build.7", bentoVersion: "4zmgrtxl5ozgcax4"), target: KubeFixtures.target)
        let sel = try #require(d["spec"]?["selector"]?["matchLabels"]?.objectValue)
        let labels = try #require(d["spec"]?["template"]?["metadata"]?["labels"]?.objectValue)
        for (k, v) in sel { #expect(labels[k] == v) }
        #expect(d["metadata"]?["annotations"]?["model-deployer/version-name"] == "V1.0+build.7")
        for (_, v) in labels { #expect(KubeNames.isLabelValue(try #require(v.stringValue))) }
    }

    @Test func resourcesFollowTheRequirements() throws {
        let gpu = try KubeManifests.deployment(KubeFixtures.spec(memoryMB: 2048, cpu: 1.25, gpu: 1), target: KubeFixtures.target)
        let res = gpu["spec"]?["template"]?["spec"]?["containers"]?.arrayValue?.first?["resources"]
        #expect(res == ["requests": ["cpu": "1250m", "memory": "2048Mi"], "limits": ["memory": "2048Mi", "nvidia.com/gpu": "1"]])
        let noCPU = try KubeManifests.deployment(KubeFixtures.spec(cpu: nil), target: KubeFixtures.target)
        #expect(noCPU["spec"]?["template"]?["spec"]?["containers"]?.arrayValue?.first?["resources"]?["requests"] == ["memory": "512Mi"])
        let planned = KubeResources(PlanRequirements(estimatedMemoryMB: 300, memoryBasis: "x", cpu: 2, gpu: 0,
                                                     host: HostCheck(freeMemoryMB: 1, cpuCount: 1, gpuCount: 0, fits: true, message: "")))
        #expect(planned == KubeResources(memoryMB: 300, cpu: 2, gpu: 0))
    }

    @Test func imageTemplates() throws {
        #expect(try KubeManifests.image(template: "r.example/x:{bento_version}", bentoTag: "iris:abc", modelName: "iris", version: "v") == "r.example/x:abc")
        #expect(try KubeManifests.image(template: "r/{model}-{bento_name}:{version}", bentoTag: "b:1", modelName: "m", version: "V2") == "r/m-b:V2")
        for bad in ["r/{nope}", "r/{bento_version", "", "-r", "r x:{version}"] {
            #expect(throws: RuntimeError.self) {
                try KubeManifests.image(template: bad, bentoTag: "b:1", modelName: "m", version: "v")
            }
        }
    }

    @Test func badTargetsAndSpecsAreRefusedWithStableCodes() {
        func code(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch { return (error as? RuntimeError)?.code ?? "\(error)" }
        }
        var t = KubeFixtures.target
        t.namespace = "Models"
        #expect(code { _ = try KubeManifests.deployment(KubeFixtures.spec(), target: t) } == "kube_invalid_config")
        t = KubeFixtures.target; t.replicas = -1
        #expect(code { _ = try KubeManifests.deployment(KubeFixtures.spec(), target: t) } == "kube_invalid_config")
        t = KubeFixtures.target; t.context = "--kubeconfig=/etc/x"
        #expect(code { try t.validate() } == "kube_invalid_config")
        #expect(code { _ = try KubeManifests.deployment(KubeFixtures.spec(memoryMB: 0), target: KubeFixtures.target) } == "kube_invalid_config")
        #expect(code { _ = try KubeManifests.deployment(KubeFixtures.spec(cpu: .nan), target: KubeFixtures.target) } == "kube_invalid_config")
        #expect(code { _ = try KubeManifests.deployment(KubeFixtures.spec(deploymentID: "x"), target: KubeFixtures.target) } == "invalid_name")
        #expect(code { _ = try KubeManifests.deployment(KubeFixtures.spec(version: "a b"), target: KubeFixtures.target) } == "invalid_name")
    }

    @Test func ownedSelectorNamesModelAndEnvironment() {
        #expect(KubeManifests.ownedSelector(modelName: "iris_classifier", environment: "production")
                == "app.kubernetes.io/managed-by=model-deployer,model-deployer/environment=production,model-deployer/model=iris_classifier")
    }
}
