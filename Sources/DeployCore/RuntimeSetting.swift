import JSON

/// Where an environment's versions run: the policy file's `runtime` (and `kubernetes`) fields.
public enum RuntimeSetting: Sendable, Hashable {
    /// `bentoml serve` processes on the agent's machine behind its router (the default).
    case local
    /// A Deployment per version in a Kubernetes cluster, blue-green by a Service's selector.
    case kubernetes(KubernetesSettings)

    /// The wire spelling of the kind: `local` or `kubernetes`.
    public var kind: String {
        switch self {
        case .local: "local"
        case .kubernetes: "kubernetes"
        }
    }

    /// The Kubernetes settings, when the environment runs there.
    public var kubernetes: KubernetesSettings? {
        if case .kubernetes(let k) = self { return k }
        return nil
    }
}

/// The `kubernetes` object of an environment whose `runtime` is `kubernetes`.
///
/// Shapes and ranges are checked when the policy is read; the rules that are Kubernetes' own (a namespace
/// is a DNS-1123 label, the image template's placeholders) are checked once, by the runtime, when the
/// agent starts (`serve` refuses to start with a sentence naming the environment).
public struct KubernetesSettings: Sendable, Hashable {
    /// kubeconfig context; nil: kubectl's current context.
    public var context: String?
    /// Namespace of every object the agent makes.
    public var namespace: String
    /// Image reference template, e.g. `registry.example/iris_classifier:{bento_version}`.
    public var image: String
    /// Pods per version.
    public var replicas: Int
    /// The Deployment's `progressDeadlineSeconds` (a rollout with no progress for this long is stuck).
    public var progressDeadlineSeconds: Int
    /// The port BentoML listens on in the container.
    public var containerPort: Int
    /// The Service's port.
    public var servicePort: Int

    /// Settings; unspecified values take the defaults of the policy file.
    public init(context: String? = nil, namespace: String, image: String, replicas: Int = 1,
                progressDeadlineSeconds: Int = 600, containerPort: Int = 3000, servicePort: Int = 80) {
        self.context = context
        self.namespace = namespace
        self.image = image
        self.replicas = replicas
        self.progressDeadlineSeconds = progressDeadlineSeconds
        self.containerPort = containerPort
        self.servicePort = servicePort
    }

    /// The policy-file spelling.
    public func toJSON() -> JSONValue {
        ["context": .string(context), "namespace": .string(namespace), "image": .string(image),
         "replicas": .integer(replicas), "progress_deadline_seconds": .integer(progressDeadlineSeconds),
         "container_port": .integer(containerPort), "service_port": .integer(servicePort)]
    }

    static let fields: Set<String> = ["context", "namespace", "image", "replicas", "progress_deadline_seconds",
                                      "container_port", "service_port"]

    /// Reads the `kubernetes` object of a policy environment.
    static func parse(_ o: ObjectReader) throws(JSONShapeError) -> KubernetesSettings {
        try o.rejectUnknown(fields)
        let context = try o.optionalString("context")
        if let context, context.isEmpty { throw JSONShapeError(path: o.at("context"), message: "must not be empty (leave it out for kubectl's current context)") }
        let namespace = try o.string("namespace")
        let image = try o.string("image")
        guard !image.isEmpty else { throw JSONShapeError(path: o.at("image"), message: "must not be empty") }
        var s = KubernetesSettings(context: context, namespace: namespace, image: image)
        func ranged(_ key: String, _ range: ClosedRange<Int>, _ unit: String) throws(JSONShapeError) -> Int? {
            guard let v = try o.optionalInt(key) else { return nil }
            guard range.contains(v) else {
                throw JSONShapeError(path: o.at(key), message: "must be \(range.lowerBound)..\(range.upperBound) \(unit), got \(v)")
            }
            return v
        }
        if let v = try ranged("replicas", 1...1000, "Pods") { s.replicas = v }
        if let v = try ranged("progress_deadline_seconds", 1...86_400, "seconds") { s.progressDeadlineSeconds = v }
        if let v = try ranged("container_port", 1...65535, "(a TCP port)") { s.containerPort = v }
        if let v = try ranged("service_port", 1...65535, "(a TCP port)") { s.servicePort = v }
        return s
    }
}
