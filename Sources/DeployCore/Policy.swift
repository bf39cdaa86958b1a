#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON

/// A point where a person must approve before a deployment continues. Raw values are the wire spelling.
public enum GateKind: String, Sendable, Hashable, CaseIterable, Codable {
    /// Before anything starts (`awaiting_approval`).
    case deploy
    /// After validation, before the traffic switch (`awaiting_promotion`).
    case promote
    /// A canary's step gate, before each weight step after the first (`awaiting_step`); set by the plan's
    /// `canary.step_gates`, never by a policy's `gates`.
    case step
}

/// One approval gate of a deployment, with who may answer it and for how long it stays open.
public struct Gate: Sendable, Hashable {
    /// Which gate.
    public var kind: GateKind
    /// The people allowed to approve; `nil` means anyone (except the requester under four eyes).
    public var approvers: [String]?
    /// When `true` the requester may not approve their own deployment.
    public var fourEyes: Bool
    /// Seconds the gate stays open before the deployment expires; `nil` means never.
    public var timeoutSeconds: Int?

    /// A gate.
    public init(kind: GateKind, approvers: [String]? = nil, fourEyes: Bool = false, timeoutSeconds: Int? = nil) {
        self.kind = kind
        self.approvers = approvers
        self.fourEyes = fourEyes
        self.timeoutSeconds = timeoutSeconds
    }

    /// `true` when the gate, opened at `openedAt`, has run out of time at `now` (the clock is the caller's).
    public func isExpired(openedAt: Date, now: Date) -> Bool {
        guard let timeoutSeconds else { return false }
        return now.timeIntervalSince(openedAt) >= Double(timeoutSeconds)
    }
}

/// The approval and rollback policy of one environment.
public struct EnvironmentPolicy: Sendable, Hashable {
    /// The environment name (`production`, `staging`, ...).
    public var name: String
    /// Gates every deployment in this environment must pass (a request may add, never remove).
    public var gates: [GateKind]
    /// Who may approve; `nil` means anyone.
    public var approvers: [String]?
    /// Forbid self-approval.
    public var fourEyes: Bool
    /// Seconds a gate stays open (`approval_timeout`); `nil` means never expires.
    public var approvalTimeoutSeconds: Int?
    /// Seconds to watch error rate and latency after the switch.
    public var bakeSeconds: Int
    /// Seconds the previous slot stays warm after the switch.
    public var keepWarmSeconds: Int
    /// Roll back when the error rate exceeds the baseline times this (with ``minErrorRate`` as a floor).
    public var errorRateFactor: Double
    /// Roll back when p95 latency exceeds the baseline times this (with ``latencyFloorMs`` as a floor).
    public var latencyFactor: Double
    /// Seconds a new slot has to become ready.
    public var startupDeadlineSeconds: Int
    /// The error-rate threshold never goes below this fraction (0.01 = 1 %).
    public var minErrorRate: Double
    /// The p95 threshold is at least baseline + this many ms, so a 2 ms baseline does not trip on noise.
    public var latencyFloorMs: Double
    /// Plans must carry smoke tests (`require_smoke_tests`): without them validation touches only
    /// `/readyz`, and a version that answers 500 to every prediction could go live. On in production.
    public var requireSmokeTests = false
    /// Whether requests and approvals here must carry an SSH signature (off unless the policy file says so).
    public var signatures: SignatureRequirement = .off
    /// Where versions run: on this machine (default) or in a Kubernetes cluster.
    public var runtime: RuntimeSetting = .local
    /// The canary settings of this environment (the policy's `canary:` section over the built-in defaults);
    /// a request's `canary` object overrides them member by member.
    public var canary: CanaryConfig = .defaults
    /// What `auto` means here when a version is live: only `canary` changes it (`default_strategy`);
    /// nil: blue-green, as always.
    public var defaultStrategy: StrategyRequest?

    /// A policy; unspecified fields take the staging defaults.
    public init(
        name: String, gates: [GateKind] = [.deploy], approvers: [String]? = nil, fourEyes: Bool = false,
        approvalTimeoutSeconds: Int? = 86_400, bakeSeconds: Int = 60, keepWarmSeconds: Int = 600,
        errorRateFactor: Double = 2.0, latencyFactor: Double = 1.5, startupDeadlineSeconds: Int = 60,
        minErrorRate: Double = 0.01, latencyFloorMs: Double = 50
    ) {
        self.name = name
        self.gates = GateKind.allCases.filter(gates.contains)
        self.approvers = approvers
        self.fourEyes = fourEyes
        self.approvalTimeoutSeconds = approvalTimeoutSeconds
        self.bakeSeconds = bakeSeconds
        self.keepWarmSeconds = keepWarmSeconds
        self.errorRateFactor = errorRateFactor
        self.latencyFactor = latencyFactor
        self.startupDeadlineSeconds = startupDeadlineSeconds
        self.minErrorRate = minErrorRate
        self.latencyFloorMs = latencyFloorMs
    }

    /// The gates for a deployment here: the policy's plus `extra`, in lifecycle order, without duplicates.
    public func gates(extra: [GateKind] = []) -> [Gate] {
        GateKind.allCases.filter { gates.contains($0) || extra.contains($0) }.map {
            Gate(kind: $0, approvers: approvers, fourEyes: fourEyes, timeoutSeconds: approvalTimeoutSeconds)
        }
    }

    /// The rollback policy a plan in this environment carries.
    public var rollbackPolicy: RollbackPolicy {
        RollbackPolicy(
            errorRateFactor: errorRateFactor, latencyFactor: latencyFactor, bakeSeconds: bakeSeconds,
            keepWarmSeconds: keepWarmSeconds, minErrorRate: minErrorRate, latencyFloorMs: latencyFloorMs)
    }

    /// A one-sentence description of the gates, for plan reasons.
    public func gateSentence(extra: [GateKind] = []) -> String {
        let all = gates(extra: extra).map(\.kind)
        var s: String
        switch all {
        case []: s = "\(name) requires no approval"
        case [.deploy]: s = "\(name) requires one approval before deploying"
        case [.promote]: s = "\(name) requires approval before the traffic switch"
        default: s = "\(name) requires approval before deploying and again before the traffic switch"
        }
        let added = extra.filter { !gates.contains($0) }
        if !added.isEmpty { s += " (the request added \(GateKind.allCases.filter(added.contains).map(\.rawValue).joined(separator: " and ")))" }
        if !all.isEmpty {
            if signatures.required { s += "; requests and approvals must be SSH-signed" }
            if fourEyes { s += "; four eyes: the requester cannot approve" }
            if let approvers { s += "; approvers: \(approvers.joined(separator: ", "))" }
        }
        return s
    }

    /// The policy as JSON (the policy-file spelling).
    public func toJSON() -> JSONValue {
        .object([
            "gates": .array(gates.map { .string($0.rawValue) }),
            "approvers": approvers.map { .array($0.map(JSONValue.string)) } ?? .null,
            "four_eyes": .bool(fourEyes),
            "approval_timeout": approvalTimeoutSeconds.map { .integer($0) } ?? .null,
            "bake_seconds": .integer(bakeSeconds),
            "keep_warm_seconds": .integer(keepWarmSeconds),
            "error_rate_factor": .double(errorRateFactor),
            "latency_factor": .double(latencyFactor),
            "startup_deadline_seconds": .integer(startupDeadlineSeconds),
            "min_error_rate": .double(minErrorRate),
            "latency_floor_ms": .double(latencyFloorMs),
            "require_smoke_tests": .bool(requireSmokeTests),
            "signatures": signatures.toJSON(),
            "runtime": .string(runtime.kind),
            "kubernetes": runtime.kubernetes?.toJSON() ?? .null,
            "canary": canary.toJSON(),
            "default_strategy": defaultStrategy.map { .string($0.rawValue) } ?? .null,
        ])
    }
}

/// Whether an environment demands SSH-signed requests and approvals, and whose keys count.
public struct SignatureRequirement: Sendable, Hashable {
    /// `true`: `deploy.plan` and `deploy.approve` here must carry a signature by a key in ``allowedSigners``.
    public var required: Bool
    /// Absolute path of an OpenSSH `allowed_signers` file (`principal namespaces="model-deployer" key`).
    public var allowedSigners: String?

    /// A requirement.
    public init(required: Bool, allowedSigners: String?) {
        self.required = required
        self.allowedSigners = allowedSigners
    }

    /// No signatures asked for (every built-in environment).
    public static let off = SignatureRequirement(required: false, allowedSigners: nil)

    /// The policy-file spelling.
    public func toJSON() -> JSONValue {
        ["required": .bool(required), "allowed_signers": .string(allowedSigners)]
    }
}

/// Why a policy file was refused.
public struct PolicyError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A sentence naming the field and the problem.
    public var message: String
    /// A policy error.
    public init(message: String) { self.message = message }
    public var description: String { "invalid approval policy: \(message)" }
}

/// Whether an approver may answer a gate.
public enum ApprovalCheck: Sendable, Hashable {
    /// The approval counts.
    case allowed
    /// Refused; `reason` is stable (`self_approval_forbidden`, `approver_not_allowed`), `message` is for people.
    case forbidden(reason: String, message: String)
}

/// The approval policy of every environment: built-in safe defaults, optionally overridden by a JSON file.
///
/// File format (`$MODEL_DEPLOYER_HOME/policy.json` or `--policy FILE`):
/// ```json
/// {"environments": {"production": {"approvers": ["alice", "bob"], "bake_seconds": 300},
///                   "qa": {"gates": ["deploy"], "four_eyes": true}}}
/// ```
/// Fields of a built-in environment override its defaults one by one; a new environment starts from the
/// staging defaults (one deploy gate). Unknown fields are errors, so a typo cannot weaken a policy.
public struct ApprovalPolicy: Sendable, Hashable {
    /// Policies by environment name.
    public var environments: [String: EnvironmentPolicy]

    /// `production`: deploy + promote gates, four eyes; `staging`: one deploy gate; `development`: none.
    public static let defaults = ApprovalPolicy(environments: [
        "production": {
            var p = EnvironmentPolicy(
                name: "production", gates: [.deploy, .promote], fourEyes: true, approvalTimeoutSeconds: 259_200,
                bakeSeconds: 120, keepWarmSeconds: 1_800)
            p.requireSmokeTests = true
            return p
        }(),
        "staging": EnvironmentPolicy(name: "staging"),
        "development": EnvironmentPolicy(
            name: "development", gates: [], fourEyes: false, approvalTimeoutSeconds: nil, bakeSeconds: 30,
            keepWarmSeconds: 300, errorRateFactor: 3.0, latencyFactor: 2.0),
    ])

    /// A policy from explicit environments.
    public init(environments: [String: EnvironmentPolicy]) {
        self.environments = environments
    }

    static let environmentFields: Set<String> = [
        "gates", "approvers", "four_eyes", "approval_timeout", "bake_seconds", "keep_warm_seconds",
        "error_rate_factor", "latency_factor", "startup_deadline_seconds", "min_error_rate", "latency_floor_ms",
        "require_smoke_tests",
        "signatures", "canary", "default_strategy",
        "runtime", "kubernetes",
    ]

    /// Parses a policy file's JSON, merged over ``defaults``.
    /// - Throws: `PolicyError` naming the field at fault.
    public init(json: JSONValue) throws(PolicyError) {
        do {
            self = try Self.parse(json)
        } catch {
            throw PolicyError(message: error.description)
        }
    }

    /// Parses the text of a policy file (the caller reads the file).
    /// - Throws: `PolicyError` for invalid JSON or a field at fault.
    public init(text: String) throws(PolicyError) {
        let json: JSONValue
        do {
            json = try JSONValue.parse(text)
        } catch {
            throw PolicyError(message: error.description)
        }
        try self.init(json: json)
    }

    /// The policy in the file format (every environment, every field), e.g. for a `--print-policy` flag.
    public func toJSON() -> JSONValue {
        .object(["version": 1, "environments": .object(environments.mapValues { $0.toJSON() })])
    }

    private static func parse(_ json: JSONValue) throws(JSONShapeError) -> ApprovalPolicy {
        let root = try ObjectReader(json)
        try root.rejectUnknown(["environments", "version", "$schema", "description"])
        if let v = root.value("version"), v.intValue != 1 {
            throw JSONShapeError(path: "version", message: "only version 1 is understood")
        }
        var result = ApprovalPolicy.defaults
        guard let envs = try root.optionalObject("environments") else { return result }
        for name in envs.members.keys.sorted() {
            if let m = Names.validateEnvironment(name, field: "environment name") {
                throw JSONShapeError(path: envs.at(name), message: m)
            }
            let e = try envs.object(name)
            try e.rejectUnknown(environmentFields)
            var p = result.environments[name] ?? EnvironmentPolicy(name: name)
            if let gates = try e.optionalStrings("gates") {
                var kinds: [GateKind] = []
                for (i, g) in gates.enumerated() {
                    guard let k = GateKind(rawValue: g), k != .step else {
                        throw JSONShapeError(path: "\(e.at("gates"))[\(i)]", message: "unknown gate \(Names.quoted(g)) (expected deploy or promote)")
                    }
                    kinds.append(k)
                }
                p.gates = GateKind.allCases.filter(kinds.contains)
            }
            if e.has("approvers") {
                if let list = try e.optionalStrings("approvers") {
                    for (i, a) in list.enumerated() {
                        if let m = Names.validateActor(a, field: "approver") {
                            throw JSONShapeError(path: "\(e.at("approvers"))[\(i)]", message: m)
                        }
                    }
                    if list.isEmpty {
                        throw JSONShapeError(path: e.at("approvers"), message: "an empty list would block every approval; use null for anyone")
                    }
                    p.approvers = list
                } else {
                    p.approvers = nil
                }
            }
            if let b = try e.optionalBool("four_eyes") { p.fourEyes = b }
            if let b = try e.optionalBool("require_smoke_tests") { p.requireSmokeTests = b }
            if e.has("approval_timeout") { p.approvalTimeoutSeconds = try positive(e, "approval_timeout") }
            if let v = try nonNegative(e, "bake_seconds") { p.bakeSeconds = v }
            if let v = try nonNegative(e, "keep_warm_seconds") { p.keepWarmSeconds = v }
            if let v = try positive(e, "startup_deadline_seconds") { p.startupDeadlineSeconds = v }
            if let v = try factor(e, "error_rate_factor") { p.errorRateFactor = v }
            if let v = try factor(e, "latency_factor") { p.latencyFactor = v }
            if let v = try e.optionalDouble("min_error_rate") {
                guard v >= 0, v <= 1 else { throw JSONShapeError(path: e.at("min_error_rate"), message: "must be between 0 and 1") }
                p.minErrorRate = v
            }
            if let v = try e.optionalDouble("latency_floor_ms") {
                guard v >= 0 else { throw JSONShapeError(path: e.at("latency_floor_ms"), message: "must not be negative") }
                p.latencyFloorMs = v
            }
            if let sig = try e.optionalObject("signatures") { p.signatures = try signatureRequirement(sig) }
            p.runtime = try runtimeSetting(e, current: p.runtime)
            if let c = e.value("canary") { p.canary = try p.canary.applying(c, path: e.at("canary")) }
            if let d = try e.optionalString("default_strategy") {
                guard let s = StrategyRequest(rawValue: d), s == .auto || s == .blueGreen || s == .canary else {
                    throw JSONShapeError(path: e.at("default_strategy"), message: "must be auto, blue_green or canary")
                }
                p.defaultStrategy = s == .canary ? .canary : nil
            }
            result.environments[name] = p
        }
        return result
    }

    /// `runtime` (`local` or `kubernetes`) and, for `kubernetes`, its `kubernetes` object.
    private static func runtimeSetting(_ e: ObjectReader, current: RuntimeSetting) throws(JSONShapeError) -> RuntimeSetting {
        let kind = try e.optionalString("runtime") ?? current.kind
        switch kind {
        case "local":
            if e.value("kubernetes") != nil {
                throw JSONShapeError(path: e.at("kubernetes"), message: "is only read with runtime \"kubernetes\" (runtime is \"local\")")
            }
            return .local
        case "kubernetes":
            guard let k = try e.optionalObject("kubernetes") else {
                throw JSONShapeError(path: e.at("kubernetes"), message: "is required with runtime \"kubernetes\" (namespace and image at least)")
            }
            return .kubernetes(try KubernetesSettings.parse(k))
        default:
            throw JSONShapeError(path: e.at("runtime"), message: "unknown runtime \(Names.quoted(kind)) (expected \"local\" or \"kubernetes\")")
        }
    }

    private static func signatureRequirement(_ o: ObjectReader) throws(JSONShapeError) -> SignatureRequirement {
        try o.rejectUnknown(["required", "allowed_signers"])
        let required = try o.optionalBool("required") ?? false
        let file = try o.optionalString("allowed_signers")
        if let file {
            // Relative paths would depend on the directory serve was started from.
            guard file.hasPrefix("/"), !file.utf8.contains(0) else {
                throw JSONShapeError(path: o.at("allowed_signers"), message: "must be an absolute path")
            }
        } else if required {
            throw JSONShapeError(path: o.at("allowed_signers"), message: "is required when required is true")
        }
        return SignatureRequirement(required: required, allowedSigners: file)
    }

    /// The longest duration a policy may set: ten years. Durations are added to clocks and dates; an
    /// unbounded figure would overflow them.
    public static let maxSeconds = 315_360_000

    private static func positive(_ e: ObjectReader, _ key: String) throws(JSONShapeError) -> Int? {
        guard let v = try e.optionalInt(key) else { return nil }
        guard v > 0 else { throw JSONShapeError(path: e.at(key), message: "must be a positive number of seconds") }
        guard v <= maxSeconds else { throw JSONShapeError(path: e.at(key), message: "must be at most \(maxSeconds) seconds (ten years)") }
        return v
    }

    private static func nonNegative(_ e: ObjectReader, _ key: String) throws(JSONShapeError) -> Int? {
        guard let v = try e.optionalInt(key) else { return nil }
        guard v >= 0 else { throw JSONShapeError(path: e.at(key), message: "must not be negative") }
        guard v <= maxSeconds else { throw JSONShapeError(path: e.at(key), message: "must be at most \(maxSeconds) seconds (ten years)") }
        return v
    }

    private static func factor(_ e: ObjectReader, _ key: String) throws(JSONShapeError) -> Double? {
        guard let v = try e.optionalDouble(key) else { return nil }
        guard v >= 1 else { throw JSONShapeError(path: e.at(key), message: "must be at least 1 (a factor over the baseline)") }
        return v
    }

    /// The policy of environment `name`, or `nil` when unknown (the handler answers `unknown_environment`).
    public func environment(_ name: String) -> EnvironmentPolicy? {
        environments[name]
    }

    /// The gates for a deployment in `env`: the policy's plus `extra` (a request may add gates, never remove).
    public func gates(for env: EnvironmentPolicy, extra: [GateKind]) -> [Gate] {
        env.gates(extra: extra)
    }

    /// Whether `approver` may answer `gate` of a deployment requested by `requestedBy`.
    ///
    /// Four eyes is checked first: a requester named in `approvers` still cannot approve their own deployment.
    /// Names are compared as ``Names/identityKey(_:)`` makes them, so `Alice` cannot approve what `alice` asked for.
    public static func checkApproval(gate: Gate, approver: String, requestedBy: String) -> ApprovalCheck {
        if gate.fourEyes && Names.sameIdentity(approver, requestedBy) {
            return .forbidden(
                reason: "self_approval_forbidden",
                message: "\(approver) requested this deployment and cannot approve its \(gate.kind.rawValue) gate (four eyes)")
        }
        if let approvers = gate.approvers, !approvers.contains(where: { Names.sameIdentity($0, approver) }) {
            return .forbidden(
                reason: "approver_not_allowed",
                message: "\(approver) may not approve the \(gate.kind.rawValue) gate; allowed: \(approvers.joined(separator: ", "))")
        }
        return .allowed
    }

    /// `true` when `gate`, opened at `gateOpenedAt`, has run out of time at `now`.
    public func isExpired(gateOpenedAt: Date, now: Date, gate: Gate) -> Bool {
        gate.isExpired(openedAt: gateOpenedAt, now: now)
    }
}
