import JSON
import DeployCore

/// Where and how one environment runs on Kubernetes (the `runtime: "kubernetes"` part of a policy).
public struct KubeTarget: Sendable, Hashable {
    /// kubeconfig context, or nil for the current context.
    public var context: String?
    /// Namespace of every object (a DNS-1123 label).
    public var namespace: String
    /// Image reference template; `{bento_name}`, `{bento_version}`, `{model}` and `{version}` are filled in.
    public var imageTemplate: String
    /// Pods per version.
    public var replicas: Int
    /// The Deployment's `progressDeadlineSeconds`: after this long without progress the controller marks
    /// the rollout failed (`ProgressDeadlineExceeded`).
    public var progressDeadlineSeconds: Int
    /// The port BentoML serves on inside the container.
    public var containerPort: Int
    /// The Service's port (the stable endpoint inside the cluster).
    public var servicePort: Int

    /// A target; see the properties for the meaning of each value.
    public init(context: String? = nil, namespace: String, imageTemplate: String, replicas: Int = 1,
                progressDeadlineSeconds: Int = 600, containerPort: Int = 3000, servicePort: Int = 80) {
        self.context = context
        self.namespace = namespace
        self.imageTemplate = imageTemplate
        self.replicas = replicas
        self.progressDeadlineSeconds = progressDeadlineSeconds
        self.containerPort = containerPort
        self.servicePort = servicePort
    }

    /// Throws `kube_invalid_config` for a value the API server would refuse or that cannot work.
    public func validate() throws(RuntimeError) {
        if let context {
            guard !context.isEmpty, context.utf8.count <= 253, !context.hasPrefix("-"),
                  !context.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) else {
                throw .kubeConfig("context '\(context)' is not a usable kubeconfig context name")
            }
        }
        guard KubeNames.isDNS1123Label(namespace) else {
            throw .kubeConfig("namespace '\(namespace)' must be a DNS-1123 label (lowercase letters, digits, '-', at most 63)")
        }
        guard (0...1000).contains(replicas) else { throw .kubeConfig("replicas must be 0..1000, got \(replicas)") }
        guard (1...86_400).contains(progressDeadlineSeconds) else {
            throw .kubeConfig("progressDeadlineSeconds must be 1..86400, got \(progressDeadlineSeconds)")
        }
        guard (1...65535).contains(containerPort), (1...65535).contains(servicePort) else {
            throw .kubeConfig("ports must be 1..65535")
        }
        _ = try KubeManifests.image(template: imageTemplate, bentoTag: "probe:probe", modelName: "probe", version: "probe")
    }
}

/// Resources of one Pod, from the plan's requirements.
public struct KubeResources: Sendable, Hashable {
    /// Memory request and limit, MiB.
    public var memoryMB: Int
    /// CPU request in cores (no CPU limit: throttling a model server hurts latency more than it saves).
    public var cpu: Double?
    /// GPUs (`nvidia.com/gpu` limit).
    public var gpu: Int

    /// Resources with explicit values.
    public init(memoryMB: Int, cpu: Double? = nil, gpu: Int = 0) {
        self.memoryMB = memoryMB
        self.cpu = cpu
        self.gpu = gpu
    }

    /// The resources a plan asks for.
    public init(_ requirements: PlanRequirements) {
        self.init(memoryMB: requirements.estimatedMemoryMB, cpu: requirements.cpu, gpu: requirements.gpu)
    }
}

/// One version to run: the identity the labels carry and what its Pods need.
public struct KubeVersionSpec: Sendable, Hashable {
    /// Model name.
    public var modelName: String
    /// Environment.
    public var environment: String
    /// The model version (the Service selects on it).
    public var version: String
    /// The BentoML tag `name:version` the image was built from.
    public var bentoTag: String
    /// The ledger's deployment id (a UUID).
    public var deploymentID: String
    /// Pod resources.
    public var resources: KubeResources
    /// The engine's slot it runs in (the Deployment's `model-deployer/slot` label), nil outside the engine.
    public var slot: String?

    /// A version spec.
    public init(modelName: String, environment: String, version: String, bentoTag: String, deploymentID: String,
                resources: KubeResources, slot: String? = nil) {
        self.slot = slot
        self.modelName = modelName
        self.environment = environment
        self.version = version
        self.bentoTag = bentoTag
        self.deploymentID = deploymentID
        self.resources = resources
    }
}

/// Pure rendering of the objects the Kubernetes runtime applies. No I/O; everything is a `JSONValue`.
public enum KubeManifests {
    /// Annotation keys that carry the exact (unrendered) identity.
    public static let modelAnnotation = "model-deployer/model-name"
    /// Exact environment.
    public static let environmentAnnotation = "model-deployer/environment-name"
    /// Exact version.
    public static let versionAnnotation = "model-deployer/version-name"
    /// The bento tag.
    public static let bentoTagAnnotation = "model-deployer/bento-tag"

    /// The Deployment of `spec` in `target`.
    /// - Throws: `invalid_name`, `kube_invalid_config`.
    public static func deployment(_ spec: KubeVersionSpec, target: KubeTarget) throws(RuntimeError) -> JSONValue {
        try target.validate()
        let name = try KubeNames.deploymentName(modelName: spec.modelName, environment: spec.environment, version: spec.version)
        guard RuntimeNames.isValidTag(spec.bentoTag) else { throw .invalidName("bento tag '\(spec.bentoTag)' is not a valid name:version") }
        guard isUUID(spec.deploymentID) else { throw .invalidName("deployment id '\(spec.deploymentID)' is not a UUID") }
        let r = spec.resources
        guard (1...4_194_304).contains(r.memoryMB) else { throw .kubeConfig("memory must be 1..4194304 MiB, got \(r.memoryMB)") }
        if let cpu = r.cpu { guard cpu > 0, cpu <= 1024, cpu.isFinite else { throw .kubeConfig("cpu must be > 0 and <= 1024") } }
        guard (0...64).contains(r.gpu) else { throw .kubeConfig("gpu must be 0..64, got \(r.gpu)") }
        let image = try image(template: target.imageTemplate, bentoTag: spec.bentoTag, modelName: spec.modelName, version: spec.version)

        let selector = KubeNames.selector(modelName: spec.modelName, environment: spec.environment, version: spec.version)
        var labels = commonLabels(modelName: spec.modelName, environment: spec.environment)
        for (k, v) in selector { labels[k] = .string(v) }
        labels[KubeNames.deploymentIDLabel] = .string(spec.deploymentID)
        var objectLabels = labels
        if let slot = spec.slot {
            guard KubeNames.isLabelValue(slot), !slot.isEmpty else { throw .invalidName("slot '\(slot)' is not a label value") }
            // On the Deployment only: the Pod template (and so the ReplicaSet) does not change with the slot.
            objectLabels[KubeNames.slotLabel] = .string(slot)
        }
        let annotations: JSONValue = .object([
            modelAnnotation: .string(spec.modelName), environmentAnnotation: .string(spec.environment),
            versionAnnotation: .string(spec.version), bentoTagAnnotation: .string(spec.bentoTag),
        ])

        var requests: [String: JSONValue] = ["memory": .string("\(r.memoryMB)Mi")]
        if let cpu = r.cpu { requests["cpu"] = .string("\(max(1, Int((cpu * 1000).rounded(.up))))m") }
        var limits: [String: JSONValue] = ["memory": .string("\(r.memoryMB)Mi")]
        if r.gpu > 0 { limits["nvidia.com/gpu"] = .string("\(r.gpu)") }

        // BentoML answers /readyz only once its runners are up and /livez while the process is healthy;
        // liveness starts late so a slow model load is not killed as a hang.
        let container: JSONValue = .object([
            "name": "bento",
            "image": .string(image),
            "ports": [["name": "http", "containerPort": .integer(target.containerPort), "protocol": "TCP"]],
            "readinessProbe": ["httpGet": ["path": "/readyz", "port": "http"], "periodSeconds": 5,
                               "timeoutSeconds": 2, "failureThreshold": 3],
            "livenessProbe": ["httpGet": ["path": "/livez", "port": "http"], "initialDelaySeconds": 30,
                              "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3],
            "resources": ["requests": .object(requests), "limits": .object(limits)],
        ])
        return .object([
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": ["name": .string(name), "namespace": .string(target.namespace),
                         "labels": .object(objectLabels), "annotations": annotations],
            "spec": .object([
                "replicas": .integer(target.replicas),
                "progressDeadlineSeconds": .integer(target.progressDeadlineSeconds),
                "revisionHistoryLimit": 2,
                "selector": ["matchLabels": .object(selector.mapValues { .string($0) })],
                "template": .object([
                    "metadata": ["labels": .object(labels), "annotations": annotations],
                    "spec": ["containers": [container]],
                ]),
            ]),
        ])
    }

    /// The stable Service of (model, environment), selecting the Pods of `version`.
    /// With `preview`, the preview Service instead (same shape, its own name, label `model-deployer/role: preview`).
    /// - Throws: `invalid_name`, `kube_invalid_config`.
    public static func service(modelName: String, environment: String, selecting version: String,
                               target: KubeTarget, preview: Bool = false) throws(RuntimeError) -> JSONValue {
        try target.validate()
        let name = preview ? try KubeNames.previewServiceName(modelName: modelName, environment: environment)
                           : try KubeNames.serviceName(modelName: modelName, environment: environment)
        var labels = commonLabels(modelName: modelName, environment: environment)
        labels[KubeNames.roleLabel] = preview ? "preview" : "active"
        try KubeNames.checkIdentity(modelName: modelName, environment: environment, version: version)
        let selector = KubeNames.selector(modelName: modelName, environment: environment, version: version)
        return .object([
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": ["name": .string(name), "namespace": .string(target.namespace),
                         "labels": .object(labels),
                         "annotations": [modelAnnotation: .string(modelName), environmentAnnotation: .string(environment)]],
            "spec": [
                "type": "ClusterIP",
                "selector": .object(selector.mapValues { .string($0) }),
                "ports": [["name": "http", "port": .integer(target.servicePort), "targetPort": "http", "protocol": "TCP"]],
            ],
        ])
    }

    /// Labels every object of (model, environment) carries; `list` selects on them.
    public static func commonLabels(modelName: String, environment: String) -> [String: JSONValue] {
        [KubeNames.appNameLabel: .string(KubeNames.labelValue(modelName)),
         KubeNames.managedByLabel: .string(KubeNames.managedByValue),
         KubeNames.modelLabel: .string(KubeNames.labelValue(modelName)),
         KubeNames.environmentLabel: .string(KubeNames.labelValue(environment))]
    }

    /// The label selector (`k=v,k=v`, sorted) of everything the agent made for (model, environment).
    public static func ownedSelector(modelName: String, environment: String) -> String {
        commonLabels(modelName: modelName, environment: environment)
            .filter { $0.key != KubeNames.appNameLabel }
            .sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value.stringValue ?? "")" }
            .joined(separator: ",")
    }

    /// Fills the image template. Only the four known placeholders are allowed; the result must look like
    /// an image reference (no spaces or control characters, no leading `-`).
    /// - Throws: `kube_invalid_config`.
    public static func image(template: String, bentoTag: String, modelName: String, version: String) throws(RuntimeError) -> String {
        let parts = bentoTag.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let values = ["bento_name": String(parts[0]), "bento_version": parts.count > 1 ? String(parts[1]) : "latest",
                      "model": modelName, "version": version]
        var out = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else { throw .kubeConfig("image template has an unclosed '{'") }
            let key = String(rest[rest.index(after: open)..<close])
            guard let v = values[key] else {
                throw .kubeConfig("image template placeholder '{\(key)}' is unknown (use {bento_name}, {bento_version}, {model}, {version})")
            }
            out += v
            rest = rest[rest.index(after: close)...]
        }
        out += rest
        guard !out.isEmpty, out.utf8.count <= 1024, !out.hasPrefix("-"), !out.contains("}"),
              !out.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7f }) else {
            throw .kubeConfig("image '\(out)' is not a valid image reference")
        }
        return out
    }

    private static func isUUID(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count == 36 else { return false }
        for (i, c) in b.enumerated() {
            if [8, 13, 18, 23].contains(i) { if c != UInt8(ascii: "-") { return false } } else if !((c >= 48 && c <= 57) || (c >= 97 && c <= 102)) { return false }
        }
        return true
    }
}

extension RuntimeError {
    static func kubeConfig(_ m: String) -> RuntimeError { .init(code: "kube_invalid_config", message: m) }
}
