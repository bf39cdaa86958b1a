import DeployCore

/// Kubernetes names and label values derived from model-deployer identities.
///
/// Model names may contain `_` and `.`, versions also `:`, `+` and capitals; none of these are allowed in
/// a DNS-1123 label, so object names are a readable, lossy rendering plus a hash of the exact identity
/// (two identities that render alike still get different names). Label values keep the identity verbatim
/// when it is a valid label value, else the same readable-plus-hash form. The exact identity always
/// travels in annotations as well.
public enum KubeNames {
    /// Label: the model, as a label value.
    public static let modelLabel = "model-deployer/model"
    /// Label: the environment, as a label value.
    public static let environmentLabel = "model-deployer/environment"
    /// Label: the version, as a label value.
    public static let versionLabel = "model-deployer/version"
    /// Label: the deployment id (a UUID, always a valid label value).
    public static let deploymentIDLabel = "model-deployer/deployment-id"
    /// Label: the application name (the model), per Kubernetes' recommended labels.
    public static let appNameLabel = "app.kubernetes.io/name"
    /// Label: who manages the object; the agent only ever touches objects carrying it.
    public static let managedByLabel = "app.kubernetes.io/managed-by"
    /// Label on Services: `active` (the stable endpoint) or `preview` (the version being rolled out).
    public static let roleLabel = "model-deployer/role"
    /// Label on Deployments: the engine's slot (`blue`, `green`) the version runs in; removed when the
    /// slot is stopped (the Deployment stays, at 0 replicas, for history and a later redeploy).
    public static let slotLabel = "model-deployer/slot"
    /// Value of `managedByLabel` on everything the agent creates.
    public static let managedByValue = "model-deployer"

    /// `true` for an RFC 1123 label: `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, at most 63 characters
    /// (Deployment names here, namespaces).
    public static func isDNS1123Label(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard (1...63).contains(b.count), isLowerAlnum(b[0]), isLowerAlnum(b[b.count - 1]) else { return false }
        return b.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") }
    }

    /// `true` for an RFC 1035 label (Service names): a DNS-1123 label that starts with a letter.
    public static func isDNS1035Label(_ s: String) -> Bool {
        guard isDNS1123Label(s), let f = s.utf8.first else { return false }
        return f >= UInt8(ascii: "a") && f <= UInt8(ascii: "z")
    }

    /// `true` for a label value: empty, or at most 63 of `[A-Za-z0-9_.-]` starting and ending alphanumeric.
    public static func isLabelValue(_ s: String) -> Bool {
        let b = Array(s.utf8)
        if b.isEmpty { return true }
        guard b.count <= 63, isAlnum(b[0]), isAlnum(b[b.count - 1]) else { return false }
        return b.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }
    }

    /// The Deployment of one version of a model in one environment: `<model>-<env>-<version>` rendered
    /// as a DNS-1123 label, cut to fit, plus `-` and 8 hex digits of the exact triple's SHA-256.
    /// - Throws: `invalid_name` when the model, environment or version is not a valid identity.
    public static func deploymentName(modelName: String, environment: String, version: String) throws(RuntimeError) -> String {
        try checkIdentity(modelName: modelName, environment: environment, version: version)
        return hashed(readable: "\(modelName)-\(environment)-\(version)", identity: ["deployment", modelName, environment, version],
                      startWithLetter: false)
    }

    /// The stable Service of a model in an environment: `<model>-<env>` as an RFC 1035 label plus a hash
    /// of the exact pair. A model name that starts with a digit gets an `m` in front.
    /// - Throws: `invalid_name`.
    public static func serviceName(modelName: String, environment: String) throws(RuntimeError) -> String {
        try RuntimeNames.check(modelName, "model name")
        try RuntimeNames.check(environment, "environment")
        return hashed(readable: "\(modelName)-\(environment)", identity: ["service", modelName, environment],
                      startWithLetter: true)
    }

    /// The preview Service of a model in an environment (Argo Rollouts' preview service): it selects the
    /// version being rolled out, so smoke tests reach it through the API server before any user does.
    /// - Throws: `invalid_name`.
    public static func previewServiceName(modelName: String, environment: String) throws(RuntimeError) -> String {
        try RuntimeNames.check(modelName, "model name")
        try RuntimeNames.check(environment, "environment")
        return hashed(readable: "\(modelName)-\(environment)-preview", identity: ["preview", modelName, environment],
                      startWithLetter: true)
    }

    /// `value` itself when it is a valid label value, else its readable rendering plus a hash (so distinct
    /// inputs keep distinct label values).
    public static func labelValue(_ value: String) -> String {
        if isLabelValue(value) && !value.isEmpty { return value }
        return hashed(readable: value, identity: ["label", value], startWithLetter: false)
    }

    /// The labels that select the Pods of one version (the Deployment's immutable selector and, once
    /// switched, the Service's selector).
    public static func selector(modelName: String, environment: String, version: String) -> [String: String] {
        [modelLabel: labelValue(modelName), environmentLabel: labelValue(environment), versionLabel: labelValue(version)]
    }

    /// Throws `invalid_name` unless the three parts are valid model-deployer identities.
    public static func checkIdentity(modelName: String, environment: String, version: String) throws(RuntimeError) {
        try RuntimeNames.check(modelName, "model name")
        try RuntimeNames.check(environment, "environment")
        guard RuntimeNames.isValidVersion(version) else {
            throw .invalidName("version '\(version)' must match ^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")
        }
    }

    /// Lowercases, maps every other character to `-`, collapses runs, trims to 54 characters and appends
    /// `-` plus the first 8 hex digits of SHA-256 over the NUL-joined identity.
    private static func hashed(readable: String, identity: [String], startWithLetter: Bool) -> String {
        var out: [UInt8] = []
        for c in readable.lowercased().utf8 {
            if isLowerAlnum(c) { out.append(c) } else if out.last != UInt8(ascii: "-") && !out.isEmpty { out.append(UInt8(ascii: "-")) }
        }
        if startWithLetter, let f = out.first, !(f >= UInt8(ascii: "a") && f <= UInt8(ascii: "z")) {
            out.insert(contentsOf: "m-".utf8, at: 0)
        }
        if out.count > 54 { out.removeLast(out.count - 54) }
        while out.last == UInt8(ascii: "-") { out.removeLast() }
        let digest = SHA256.hex(SHA256.hash(Array(identity.joined(separator: "\u{0}").utf8)))
        let suffix = String(digest.prefix(8))
        let base = String(decoding: out, as: UTF8.self)
        return base.isEmpty ? (startWithLetter ? "m-" : "") + suffix : base + "-" + suffix
    }

    private static func isLowerAlnum(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
    }
    private static func isAlnum(_ c: UInt8) -> Bool {
        isLowerAlnum(c) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
    }
}
