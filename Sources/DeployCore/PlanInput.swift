import JSON

/// The strategy a request asks for. Raw values are the wire spelling.
public enum StrategyRequest: String, Sendable, Hashable, CaseIterable, Codable {
    /// Let the planner choose (default).
    case auto
    /// Start and point the endpoint at it, without keeping a second slot warm.
    case direct
    /// Start beside the live version, validate, switch, keep the old one warm.
    case blueGreen = "blue_green"
    /// Gradual traffic shift in weight steps beside the live version, each judged on real traffic; needs a
    /// live version and a router that splits traffic (HAProxy).
    case canary
}

/// A request to the new slot before it takes traffic, with the exact answer it must give if `expect` is set.
public struct SmokeTest: Sendable, Hashable {
    /// The BentoML API to call (`POST /<api>`).
    public var api: String
    /// The JSON body.
    public var input: JSONValue
    /// The exact JSON answer required, or `nil` to accept any 2xx answer. `.some(.null)` expects JSON `null`.
    public var expect: JSONValue?

    /// A smoke test.
    public init(api: String, input: JSONValue, expect: JSONValue? = nil) {
        self.api = api
        self.input = input
        self.expect = expect
    }
}

/// Resource figures a request may impose instead of the planner's estimates.
public struct RequirementOverrides: Sendable, Hashable {
    /// CPUs the slot needs.
    public var cpu: Double?
    /// Memory the slot needs, in MiB (replaces the estimate).
    public var memoryMB: Int?
    /// GPUs the slot needs.
    public var gpu: Int?
    /// Expected requests per second (recorded; informs nothing yet).
    public var expectedRPS: Double?
    /// The latency objective in ms (recorded).
    public var latencySLOms: Double?

    /// Overrides; all optional.
    public init(cpu: Double? = nil, memoryMB: Int? = nil, gpu: Int? = nil, expectedRPS: Double? = nil, latencySLOms: Double? = nil) {
        self.cpu = cpu
        self.memoryMB = memoryMB
        self.gpu = gpu
        self.expectedRPS = expectedRPS
        self.latencySLOms = latencySLOms
    }
}

/// What the BentoML store says about the model version.
public struct ModelFacts: Sendable, Hashable {
    /// Model name.
    public var name: String
    /// Concrete version.
    public var version: String
    /// The framework module (`bentoml.sklearn`), when known.
    public var module: String?
    /// Size on disk, when known.
    public var sizeBytes: Int64?
    /// Labels from the model's metadata file.
    public var labels: [String: String]
    /// Custom metadata, as stored.
    public var metadata: JSONValue
    /// Creation time as the store writes it.
    public var creationTime: String?

    /// Model facts.
    public init(
        name: String, version: String, module: String? = nil, sizeBytes: Int64? = nil, labels: [String: String] = [:],
        metadata: JSONValue = .object([:]), creationTime: String? = nil
    ) {
        self.name = name
        self.version = version
        self.module = module
        self.sizeBytes = sizeBytes
        self.labels = labels
        self.metadata = metadata
        self.creationTime = creationTime
    }
}

/// What the BentoML store says about the bento that serves the model.
public struct BentoFacts: Sendable, Hashable {
    /// `name:version`.
    public var tag: String
    /// The service's declared resources (`{"cpu": "1", "memory": "512Mi", "gpu": 0}`), as declared.
    public var resources: JSONValue?
    /// API names the service exposes.
    public var apis: [String]
    /// Model tags the bento lists.
    public var models: [String]

    /// Bento facts.
    public init(tag: String, resources: JSONValue? = nil, apis: [String] = [], models: [String] = []) {
        self.tag = tag
        self.resources = resources
        self.apis = apis
        self.models = models
    }
}

/// The deployment currently live for (model, environment), as the registry says.
public struct LiveFacts: Sendable, Hashable {
    /// The live model version.
    public var version: String
    /// The deployment that made it live.
    public var deploymentId: String
    /// The slot it runs in.
    public var slot: Slot
    /// The stable endpoint (the router), e.g. `http://127.0.0.1:18123`.
    public var endpointURL: String
    /// The bento serving it.
    public var bentoTag: String

    /// Live facts.
    public init(version: String, deploymentId: String, slot: Slot, endpointURL: String, bentoTag: String) {
        self.version = version
        self.deploymentId = deploymentId
        self.slot = slot
        self.endpointURL = endpointURL
        self.bentoTag = bentoTag
    }
}

/// What this host can take.
public struct HostFacts: Sendable, Hashable {
    /// Available memory (MemAvailable) in MiB.
    public var freeMemoryMB: Int
    /// Online CPUs.
    public var cpuCount: Int
    /// GPUs usable here (0 when unknown).
    public var gpuCount: Int
    /// Ports known to be taken; the slot port skips them (deterministically).
    public var unavailablePorts: [Int]

    /// Host facts.
    public init(freeMemoryMB: Int, cpuCount: Int, gpuCount: Int = 0, unavailablePorts: [Int] = []) {
        self.freeMemoryMB = freeMemoryMB
        self.cpuCount = cpuCount
        self.gpuCount = gpuCount
        self.unavailablePorts = unavailablePorts
    }
}

/// Everything the planner decides from. The handler gathers it (store, registry, host); the planner does no I/O.
public struct PlanInput: Sendable, Hashable {
    /// Model name (validated).
    public var modelName: String
    /// Concrete model version (`latest` already resolved).
    public var modelVersion: String
    /// Environment name.
    public var environment: String
    /// The bento tag that will serve it.
    public var bentoTag: String
    /// The requested strategy.
    public var strategyRequest: StrategyRequest
    /// Smoke tests to run against the new slot.
    public var smokeTests: [SmokeTest]
    /// Resource overrides.
    public var requirements: RequirementOverrides
    /// Who asks.
    public var requestedBy: String
    /// The model's store facts.
    public var model: ModelFacts
    /// The bento's store facts.
    public var bento: BentoFacts
    /// The live deployment, if any.
    public var live: LiveFacts?
    /// This host's capacity.
    public var host: HostFacts
    /// The environment's policy.
    public var policy: EnvironmentPolicy
    /// Gates the request adds to the policy's.
    public var extraGates: [GateKind]
    /// The request's `canary` object (every member optional), over the policy's settings.
    public var canary: JSONValue?
    /// Whether the environment's router splits traffic by weight (HAProxy does, nginx does not).
    public var routerSplitsTraffic: Bool

    /// A plan input.
    public init(
        modelName: String, modelVersion: String, environment: String, bentoTag: String,
        strategyRequest: StrategyRequest = .auto, smokeTests: [SmokeTest] = [], requirements: RequirementOverrides = .init(),
        requestedBy: String, model: ModelFacts, bento: BentoFacts, live: LiveFacts? = nil, host: HostFacts,
        policy: EnvironmentPolicy, extraGates: [GateKind] = [], canary: JSONValue? = nil, routerSplitsTraffic: Bool = false
    ) {
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.environment = environment
        self.bentoTag = bentoTag
        self.strategyRequest = strategyRequest
        self.smokeTests = smokeTests
        self.requirements = requirements
        self.requestedBy = requestedBy
        self.model = model
        self.bento = bento
        self.live = live
        self.host = host
        self.policy = policy
        self.extraGates = extraGates
        self.canary = canary
        self.routerSplitsTraffic = routerSplitsTraffic
    }
}
