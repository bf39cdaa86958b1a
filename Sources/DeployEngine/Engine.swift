#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import DeployCore
import DeploymentStore
import DeployRuntime
import JSON
import Synchronization

/// Where the engine finds its executables and state.
public struct EngineConfig: Sendable {
    /// `$MODEL_DEPLOYER_HOME`.
    public var home: String
    /// The `bentoml` executable.
    public var bentoml: String
    /// The shared BentoML store (`BENTOML_HOME` as the user set it).
    public var bentomlHome: String
    /// The `nginx` executable.
    public var nginx: String
    /// Identifies this agent process as the owner of in-flight work (`host:pid:start`).
    public var agentID: String

    public init(home: String, bentoml: String, bentomlHome: String, nginx: String, agentID: String) {
        self.home = home
        self.bentoml = bentoml
        self.bentomlHome = bentomlHome
        self.nginx = nginx
        self.agentID = agentID
    }
}

/// One progress update of a long operation.
public struct ProgressUpdate: Sendable {
    public var deploymentId: String
    public var status: DeploymentStatus
    public var step: String
    public var message: String
    /// 0...100.
    public var percent: Double
    public var at: Date
    /// Facts of the step (a canary step's weights, an analysis interval's figures); nil for most steps.
    public var data: JSONValue? = nil
}

/// Receives progress updates.
public typealias ProgressHandler = @Sendable (ProgressUpdate) -> Void

/// Everything `deploy.plan` takes, validated.
public struct PlanRequest: Sendable {
    public var modelName: String
    public var modelVersion: String
    public var environment: String
    public var requestedBy: String
    public var bento: String?
    public var strategy: StrategyRequest
    public var smokeTests: [SmokeTest]
    public var requirements: RequirementOverrides
    public var extraGates: [GateKind]
    public var idempotencyKey: String?
    /// The caller's SSH signature over the request (checked where the environment's policy asks).
    public var signature: RequestSignature?
    /// The `canary` settings object as given (checked by the planner).
    public var canary: JSONValue?

    public init(
        modelName: String, modelVersion: String, environment: String, requestedBy: String, bento: String? = nil,
        strategy: StrategyRequest = .auto, smokeTests: [SmokeTest] = [], requirements: RequirementOverrides = .init(),
        extraGates: [GateKind] = [], idempotencyKey: String? = nil, signature: RequestSignature? = nil, canary: JSONValue? = nil
    ) {
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.environment = environment
        self.requestedBy = requestedBy
        self.bento = bento
        self.strategy = strategy
        self.smokeTests = smokeTests
        self.requirements = requirements
        self.extraGates = extraGates
        self.idempotencyKey = idempotencyKey
        self.signature = signature
        self.canary = canary
    }
}

/// What `deploy.approve` did.
public struct ApprovalOutcome: Sendable {
    public var record: DeploymentRecord
    public var gate: GateKind
    public var decision: String
    /// When approving the promotion gate resumed the rollout: where it ended.
    public var execution: DeploymentRecord?
}

/// What `deploy.rollback` did.
public struct RollbackOutcome: Sendable {
    /// The rollback deployment.
    public var record: DeploymentRecord
    public var fromVersion: String
    public var toVersion: String
    public var durationMs: Double
}

/// What `deploy.status` reports.
public struct StatusReport: Sendable {
    public var record: DeploymentRecord
    public var events: [DeploymentEvent]
    public var live: RegistryEntry?
    /// Whether the deployment's slot process is running (nil when it has no slot).
    public var slotAlive: Bool?
    /// For the live deployment: whether its endpoint answers through the router now (nil otherwise).
    public var endpointAlive: Bool?
}

/// Runs deployments: each step persisted before the next, effects through the runtime ports, recovery
/// after crashes. The rollout's decisions are ``Machine``'s; ``RolloutRunner`` performs them.
public final class Engine: Sendable {
    public let config: EngineConfig
    let store: any DeploymentStore
    let runtime: RuntimePorts
    let policy: ApprovalPolicy
    let clock: any EngineClock
    let storedCode: StoredErrorCode
    let log: @Sendable (String, [String: JSONValue]) -> Void
    private let reconciled = Mutex(false)

    /// An engine over `store` and `runtime`.
    /// - Parameter storedCode: the integer `error.code` kept with a failed deployment (see ``StoredErrorCode``).
    public init(
        config: EngineConfig, store: any DeploymentStore, policy: ApprovalPolicy, runtime: RuntimePorts,
        clock: any EngineClock = SystemClock(), storedCode: @escaping StoredErrorCode,
        log: @escaping @Sendable (String, [String: JSONValue]) -> Void = { _, _ in }
    ) {
        self.config = config
        self.store = store
        self.policy = policy
        self.runtime = runtime
        self.clock = clock
        self.storedCode = storedCode
        self.log = log
    }

    var slots: any SlotRuntime { runtime.slots }
    var router: any TrafficRouter { runtime.router }

    func now() -> Date { clock.now() }

    /// `true` for the first caller only.
    func reconciledOnce() -> Bool {
        reconciled.withLock { done in
            if done { return false }
            done = true
            return true
        }
    }

    // MARK: - Ledger helpers

    func ledger<T>(_ body: () throws(StoreError) -> T) throws(EngineError) -> T {
        do { return try body() } catch { throw EngineError.ledger(error) }
    }

    func record(_ id: String) throws(EngineError) -> DeploymentRecord {
        guard let r = try ledger({ () throws(StoreError) in try store.deployment(id: id) }) else {
            throw EngineError.notFound("deployment_not_found", "no deployment with id \(id)")
        }
        return r
    }

    func event(_ id: String, step: String, actor: String, message: String, data: JSONValue = .object([:])) -> DeploymentEvent {
        DeploymentEvent(deploymentId: id, at: now(), step: step, actor: actor, message: message, data: data)
    }

    /// Moves a deployment through the lifecycle: the lifecycle decides, the store compare-and-sets.
    @discardableResult
    func move(
        _ r: DeploymentRecord, _ event: LifecycleEvent, step: String, actor: String, message: String,
        changes: DeploymentChanges = .init(), data: JSONValue = .object([:])
    ) throws(EngineError) -> DeploymentRecord {
        let to: DeploymentStatus
        switch Lifecycle.next(r.status, on: event) {
        case .success(let s): to = s
        case .failure(let e): throw EngineError.lifecycle(e, status: r.status)
        }
        let ev = self.event(r.deploymentId, step: step, actor: actor, message: message, data: data)
        return try ledger { () throws(StoreError) in
            try store.transition(id: r.deploymentId, from: r.status, to: to, changes: changes, event: ev)
        }
    }

    /// Appends an informational event; when the ledger refuses it, the agent's log still has it.
    func note(_ r: DeploymentRecord, step: String, actor: String = "model-deployer", message: String, data: JSONValue = .object([:])) {
        do {
            _ = try store.appendEvent(event(r.deploymentId, step: step, actor: actor, message: message, data: data))
        } catch {
            log("an event could not be recorded", ["deployment_id": .string(r.deploymentId), "step": .string(step),
                                                   "message": .string(message), "error": .string(error.message)])
        }
    }

    func liveFacts(_ entry: RegistryEntry?) -> LiveFacts? {
        guard let e = entry, let slot = Slot(rawValue: e.slot) else { return nil }
        return LiveFacts(version: e.modelVersion, deploymentId: e.deploymentId, slot: slot, endpointURL: e.endpointURL, bentoTag: e.bentoTag ?? "")
    }

    func registryEntry(_ model: String, _ env: String) throws(EngineError) -> RegistryEntry? {
        try ledger { () throws(StoreError) in try store.registry(modelName: model, environment: env) }
    }

    /// The stored `error` of a failed deployment; `refusal` when a refusal ended it (see ``StoredErrorCode``).
    func failureJSON(_ f: Failure, refusal: EngineError.Kind? = nil) -> JSONValue {
        failureJSON(reason: f.reason.wireName, message: f.message, step: f.step.wireName, refusal: refusal ?? (f.reason.isRefusal ? .approval : nil))
    }

    func failureJSON(reason: String, message: String, step: String, refusal: EngineError.Kind?) -> JSONValue {
        ["code": .integer(storedCode(refusal)), "reason": .string(reason), "message": .string(message), "step": .string(step)]
    }

    func decodePlan(_ r: DeploymentRecord) throws(EngineError) -> DeploymentPlan {
        do { return try DeploymentPlan(json: r.plan) } catch {
            throw EngineError(.internalError, reason: "internal_error", message: "the stored plan of \(r.deploymentId) cannot be read: \(error)")
        }
    }

    func slotRef(_ r: DeploymentRecord, _ id: String) -> SlotRef {
        SlotRef(modelName: r.modelName, environment: r.environment, id: SlotID(rawValue: id))
    }

    func slotRef(_ e: RegistryEntry, _ id: String) -> SlotRef {
        SlotRef(modelName: e.modelName, environment: e.environment, id: SlotID(rawValue: id))
    }

    /// Runs `body` in a task of its own, so a cancelled caller still waits for the clean-up to finish.
    func detached<T: Sendable>(_ body: @escaping @Sendable () async -> T) async -> T {
        await Task(executorPreference: BlockingExecutor.shared) { await body() }.value
    }

    func ms(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
    }
}

/// `v` with `digits` decimals, without Foundation's String(format:).
func fixed(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return "\(v)" }
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (abs(v) * p).rounded()
    let whole = Int64(r / p)
    let frac = Int64(r - Double(whole) * p)
    var s = (v < 0 && r != 0 ? "-" : "") + String(whole)
    if digits > 0 {
        var f = String(frac)
        while f.count < digits { f = "0" + f }
        s += "." + f
    }
    return s
}
