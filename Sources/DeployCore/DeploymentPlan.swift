import JSON

/// The probe load that records `metrics_baseline` on the new slot before it takes traffic.
public struct BaselineSpec: Sendable, Hashable {
    /// Requests to send.
    public var requests: Int
    /// Concurrent connections.
    public var concurrency: Int
    /// The API to call; `nil` (no smoke test) means probe the health path with GET.
    public var api: String?
    /// The JSON body for `api`.
    public var input: JSONValue?

    /// A baseline spec (defaults: 50 requests, 4 at a time).
    public init(requests: Int = 50, concurrency: Int = 4, api: String? = nil, input: JSONValue? = nil) {
        self.requests = requests
        self.concurrency = concurrency
        self.api = api
        self.input = input
    }
}

/// When a deployment is undone automatically, and how long the previous slot stays warm.
public struct RollbackPolicy: Sendable, Hashable {
    /// Tear down and fail when readiness does not come within the startup deadline.
    public var onReadinessFailure: Bool
    /// Tear down and fail when a smoke test fails.
    public var onSmokeFailure: Bool
    /// Bake: roll back when the error rate exceeds max(baseline x this, ``minErrorRate``).
    public var errorRateFactor: Double
    /// Bake: roll back when p95 exceeds max(baseline x this, baseline + ``latencyFloorMs``).
    public var latencyFactor: Double
    /// Seconds to watch after the switch.
    public var bakeSeconds: Int
    /// Seconds the previous slot stays warm after the switch.
    public var keepWarmSeconds: Int
    /// Error-rate floor (fraction).
    public var minErrorRate: Double
    /// Absolute latency allowance in ms above the baseline p95.
    public var latencyFloorMs: Double

    /// A rollback policy.
    public init(
        onReadinessFailure: Bool = true, onSmokeFailure: Bool = true, errorRateFactor: Double = 2.0, latencyFactor: Double = 1.5,
        bakeSeconds: Int = 60, keepWarmSeconds: Int = 600, minErrorRate: Double = 0.01, latencyFloorMs: Double = 50
    ) {
        self.onReadinessFailure = onReadinessFailure
        self.onSmokeFailure = onSmokeFailure
        self.errorRateFactor = errorRateFactor
        self.latencyFactor = latencyFactor
        self.bakeSeconds = bakeSeconds
        self.keepWarmSeconds = keepWarmSeconds
        self.minErrorRate = minErrorRate
        self.latencyFloorMs = latencyFloorMs
    }
}

/// How the engine runs the new version.
public struct DeploymentConfig: Sendable, Hashable {
    /// The slot the new version starts in (the inactive one).
    public var slot: Slot
    /// The port `bentoml serve` listens on (127.0.0.1).
    public var slotPort: Int
    /// The router's stable port for (model, environment).
    public var routerPort: Int
    /// Readiness path.
    public var healthPath: String
    /// Seconds the slot has to become ready.
    public var startupDeadlineSeconds: Int
    /// Per-probe timeout (a starting BentoML accepts then hangs).
    public var probeTimeoutMs: Int
    /// Pause between probes.
    public var probeIntervalMs: Int
    /// Smoke tests.
    public var smokeTests: [SmokeTest]
    /// The baseline load.
    public var baseline: BaselineSpec
    /// Automatic rollback rules.
    public var rollback: RollbackPolicy
    /// The canary's resolved settings (a canary plan only; absent from other plans' JSON).
    public var canary: CanaryConfig?

    /// A config.
    public init(
        slot: Slot, slotPort: Int, routerPort: Int, healthPath: String = "/readyz", startupDeadlineSeconds: Int = 60,
        probeTimeoutMs: Int = 500, probeIntervalMs: Int = 250, smokeTests: [SmokeTest] = [], baseline: BaselineSpec = .init(),
        rollback: RollbackPolicy = .init(), canary: CanaryConfig? = nil
    ) {
        self.slot = slot
        self.slotPort = slotPort
        self.routerPort = routerPort
        self.healthPath = healthPath
        self.startupDeadlineSeconds = startupDeadlineSeconds
        self.probeTimeoutMs = probeTimeoutMs
        self.probeIntervalMs = probeIntervalMs
        self.smokeTests = smokeTests
        self.baseline = baseline
        self.rollback = rollback
        self.canary = canary
    }
}

/// The host's answer to "can it take one more slot?". Not part of `plan_hash` (free memory drifts).
public struct HostCheck: Sendable, Hashable {
    /// MiB available when planned.
    public var freeMemoryMB: Int
    /// CPUs.
    public var cpuCount: Int
    /// GPUs.
    public var gpuCount: Int
    /// `true`: the slot fits (a refused plan is never produced, so this is `true` in every plan).
    public var fits: Bool
    /// A sentence, e.g. "this host has 20480 MiB free for an estimated 301 MiB: it fits".
    public var message: String

    /// A host check.
    public init(freeMemoryMB: Int, cpuCount: Int, gpuCount: Int, fits: Bool, message: String) {
        self.freeMemoryMB = freeMemoryMB
        self.cpuCount = cpuCount
        self.gpuCount = gpuCount
        self.fits = fits
        self.message = message
    }
}

/// What the new slot needs, and what the analysis of the model and bento found.
public struct PlanRequirements: Sendable, Hashable {
    /// Estimated (or overridden) memory for the slot, MiB.
    public var estimatedMemoryMB: Int
    /// How the estimate was made, in a sentence.
    public var memoryBasis: String
    /// CPUs needed (override, else declared by the bento), if any.
    public var cpu: Double?
    /// GPUs needed.
    public var gpu: Int
    /// Expected load, recorded.
    public var expectedRPS: Double?
    /// Latency objective, recorded.
    public var latencySLOms: Double?
    /// The model's framework module.
    public var framework: String?
    /// The model's size on disk.
    public var modelSizeBytes: Int64?
    /// The model's creation time.
    public var modelCreationTime: String?
    /// The model's labels.
    public var labels: [String: String]
    /// The model's custom metadata.
    public var metadata: JSONValue
    /// The bento's declared resources.
    public var declaredResources: JSONValue?
    /// The bento's APIs.
    public var apis: [String]
    /// This host's check.
    public var host: HostCheck

    /// Requirements.
    public init(
        estimatedMemoryMB: Int, memoryBasis: String, cpu: Double? = nil, gpu: Int = 0, expectedRPS: Double? = nil,
        latencySLOms: Double? = nil, framework: String? = nil, modelSizeBytes: Int64? = nil, modelCreationTime: String? = nil,
        labels: [String: String] = [:], metadata: JSONValue = .object([:]), declaredResources: JSONValue? = nil, apis: [String] = [],
        host: HostCheck
    ) {
        self.estimatedMemoryMB = estimatedMemoryMB
        self.memoryBasis = memoryBasis
        self.cpu = cpu
        self.gpu = gpu
        self.expectedRPS = expectedRPS
        self.latencySLOms = latencySLOms
        self.framework = framework
        self.modelSizeBytes = modelSizeBytes
        self.modelCreationTime = modelCreationTime
        self.labels = labels
        self.metadata = metadata
        self.declaredResources = declaredResources
        self.apis = apis
        self.host = host
    }
}

/// A deployment plan: what will happen, why, and the facts it was made from.
public struct DeploymentPlan: Sendable, Hashable {
    /// Model name.
    public var modelName: String
    /// Concrete model version.
    public var modelVersion: String
    /// Environment.
    public var environment: String
    /// The bento that serves it.
    public var bentoTag: String
    /// The chosen strategy.
    public var strategy: DeploymentStrategy
    /// Sentences a person can read: why this strategy, what was found, what will be gated.
    public var reasons: [String]
    /// Execution steps in order: `start_slot`, `readiness`, `smoke_tests`, `baseline`, `gate:promote`,
    /// `switch`, `register`, `bake`, `retire_previous` (only those that apply).
    public var steps: [String]
    /// How to run it.
    public var config: DeploymentConfig
    /// Resource estimate and analysis.
    public var requirements: PlanRequirements
    /// Gates, in lifecycle order.
    public var gates: [Gate]
    /// The live version it replaces (`nil` on a first deployment).
    public var previousVersion: String?
    /// The live endpoint it replaces.
    public var replacesEndpoint: String?
    /// The live deployment when the plan was made (for `plan_stale`).
    public var recordedLive: LiveFacts?

    /// A plan.
    public init(
        modelName: String, modelVersion: String, environment: String, bentoTag: String, strategy: DeploymentStrategy,
        reasons: [String], steps: [String], config: DeploymentConfig, requirements: PlanRequirements, gates: [Gate],
        previousVersion: String?, replacesEndpoint: String?, recordedLive: LiveFacts?
    ) {
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.environment = environment
        self.bentoTag = bentoTag
        self.strategy = strategy
        self.reasons = reasons
        self.steps = steps
        self.config = config
        self.requirements = requirements
        self.gates = gates
        self.previousVersion = previousVersion
        self.replacesEndpoint = replacesEndpoint
        self.recordedLive = recordedLive
    }

    /// The gate of `kind`, if the plan has it.
    public func gate(_ kind: GateKind) -> Gate? { gates.first { $0.kind == kind } }

    /// `true` when the plan waits for a promotion approval before the switch.
    public var hasPromotionGate: Bool { gate(.promote) != nil }

    /// The status the plan starts in.
    public var initialStatus: DeploymentStatus { Lifecycle.initialStatus(gates: gates) }

    /// Hex SHA-256 of the canonical JSON of the plan, which includes the facts it was made from (model version,
    /// bento tag, live version and deployment id). `requirements.host` is left out: free memory drifts from
    /// one call to the next, and the same inputs and store must give the same hash.
    public var planHash: String {
        SHA256.hexDigest(hashBasis.jsonString)
    }

    /// The JSON the hash is computed over.
    public var hashBasis: JSONValue {
        guard case .object(var o) = toJSON(), case .object(var r)? = o["requirements"] else { return toJSON() }
        r["host"] = nil
        o["requirements"] = .object(r)
        return .object(o)
    }

    /// `true` when the live deployment changed since this plan was made.
    public func isStale(currentLive: LiveFacts?) -> Bool {
        Planner.isStale(plan: self, recordedLive: recordedLive, currentLive: currentLive)
    }
}
