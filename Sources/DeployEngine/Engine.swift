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

/// A failure the caller can act on: a JSON-RPC code, a stable reason and a sentence.
public struct EngineError: Error, Sendable, CustomStringConvertible {
    public var code: Int
    public var reason: String
    public var message: String
    public var extra: [String: JSONValue]

    public init(code: Int, reason: String, message: String, extra: [String: JSONValue] = [:]) {
        self.code = code
        self.reason = reason
        self.message = message
        self.extra = extra
    }

    public var description: String { "\(reason): \(message)" }

    public static func notFound(_ reason: String, _ message: String) -> EngineError { .init(code: -32001, reason: reason, message: message) }
    public static func rolloutInProgress(_ id: String?, _ message: String) -> EngineError {
        .init(code: -32002, reason: "rollout_in_progress", message: message, extra: id.map { ["deployment_id": .string($0)] } ?? [:])
    }
    public static func planStale(_ message: String) -> EngineError { .init(code: -32003, reason: "plan_stale", message: message) }
    public static func approval(_ reason: String, _ message: String) -> EngineError { .init(code: -32004, reason: reason, message: message) }
    public static func refused(_ reason: String, _ message: String) -> EngineError { .init(code: -32005, reason: reason, message: message) }
    /// A planner refusal: bad smoke tests or requirements are the caller's params (-32602), the rest -32005.
    public static func planRefusal(_ r: PlanRefusal) -> EngineError {
        switch r.reason {
        case "invalid_smoke_test":
            return .init(code: -32602, reason: "invalid_params", message: r.message, extra: ["field": "smoke_tests"])
        case "invalid_params":
            return .init(code: -32602, reason: "invalid_params", message: r.message, extra: ["field": "requirements"])
        default:
            return .refused(r.reason, r.message)
        }
    }
    public static func nothingToRollBack(_ reason: String, _ message: String) -> EngineError { .init(code: -32006, reason: reason, message: message) }
    public static func ledger(_ e: StoreError) -> EngineError {
        switch e.code {
        case .notFound: return .notFound("deployment_not_found", e.message)
        case .rolloutInProgress: return .rolloutInProgress(e.deploymentId, e.message)
        case .invalidCursor: return .init(code: -32602, reason: "invalid_params", message: e.message, extra: ["field": "cursor"])
        case .statusConflict:
            return .init(code: -32002, reason: "status_conflict", message: e.message,
                         extra: e.actualStatus.map { ["status": .string($0.rawValue)] } ?? [:])
        case .duplicateIdempotencyKey:
            return .init(code: -32602, reason: "invalid_params", message: e.message, extra: ["field": "idempotency_key"])
        case .database: return .init(code: -32007, reason: "ledger_unavailable", message: e.message)
        }
    }
    public static func runtime(_ e: RuntimeError) -> EngineError { .init(code: -32008, reason: "runtime_unavailable", message: "\(e.code): \(e.message)") }
}

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

    public init(
        modelName: String, modelVersion: String, environment: String, requestedBy: String, bento: String? = nil,
        strategy: StrategyRequest = .auto, smokeTests: [SmokeTest] = [], requirements: RequirementOverrides = .init(),
        extraGates: [GateKind] = [], idempotencyKey: String? = nil
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

/// Runs deployments: each step persisted before the next, effects through the runtime, recovery after crashes.
public final class Engine: Sendable {
    public let config: EngineConfig
    let store: any DeploymentStore
    let slots: SlotManager
    let router: NginxRouter
    let bentoStore: BentoStoreReader
    let policy: ApprovalPolicy
    let now: @Sendable () -> Date
    let log: @Sendable (String, [String: JSONValue]) -> Void
    private let reconciled = Mutex(false)

    public init(
        config: EngineConfig, store: any DeploymentStore, policy: ApprovalPolicy,
        now: @escaping @Sendable () -> Date = { Date() },
        log: @escaping @Sendable (String, [String: JSONValue]) -> Void = { _, _ in }
    ) {
        self.config = config
        self.store = store
        self.policy = policy
        self.slots = SlotManager(home: config.home, bentoml: config.bentoml, sharedBentoMLHome: config.bentomlHome)
        self.router = NginxRouter(home: config.home, nginx: config.nginx)
        self.bentoStore = BentoStoreReader(home: config.bentomlHome)
        self.now = now
        self.log = log
    }

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

    /// Moves a deployment through the lifecycle: the pure state machine decides, the store compare-and-sets.
    @discardableResult
    func move(
        _ r: DeploymentRecord, _ event: LifecycleEvent, step: String, actor: String, message: String,
        changes: DeploymentChanges = .init(), data: JSONValue = .object([:])
    ) throws(EngineError) -> DeploymentRecord {
        let to: DeploymentStatus
        switch Lifecycle.next(r.status, on: event) {
        case .success(let s): to = s
        case .failure(let e):
            throw EngineError(code: e.reason == "not_awaiting_approval" ? -32004 : -32002, reason: e.reason, message: e.message,
                              extra: ["status": .string(r.status.rawValue)])
        }
        let ev = self.event(r.deploymentId, step: step, actor: actor, message: message, data: data)
        return try ledger { () throws(StoreError) in
            try store.transition(id: r.deploymentId, from: r.status, to: to, changes: changes, event: ev)
        }
    }

    @discardableResult
    func note(_ r: DeploymentRecord, step: String, actor: String = "model-deployer", message: String, data: JSONValue = .object([:])) -> DeploymentEvent? {
        try? store.appendEvent(event(r.deploymentId, step: step, actor: actor, message: message, data: data))
    }

    func liveFacts(_ entry: RegistryEntry?) -> LiveFacts? {
        guard let e = entry, let slot = Slot(rawValue: e.slot) else { return nil }
        return LiveFacts(version: e.modelVersion, deploymentId: e.deploymentId, slot: slot, endpointURL: e.endpointURL, bentoTag: e.bentoTag ?? "")
    }

    func registryEntry(_ model: String, _ env: String) throws(EngineError) -> RegistryEntry? {
        try ledger { () throws(StoreError) in try store.registry(modelName: model, environment: env) }
    }

    /// The `error.code` of a deployment that failed on its own (never a JSON-RPC error: a failed
    /// deployment is a result). Refusals that end a deployment keep their own code.
    static let deploymentFailedCode = -32009

    static func errorJSON(code: Int, reason: String, message: String, step: String) -> JSONValue {
        ["code": .integer(code), "reason": .string(reason), "message": .string(message), "step": .string(step)]
    }

    // MARK: - Plan

    /// Analyses the model, chooses the strategy and persists the plan (or returns the one made with the same key).
    public func plan(_ req: PlanRequest) async throws(EngineError) -> DeploymentRecord {
        await reconcileOnce()
        if let key = req.idempotencyKey,
            let existing = try ledger({ () throws(StoreError) in try store.deployment(idempotencyKey: key) })
        {
            return try replay(existing, of: req, key: key)
        }
        guard let envPolicy = policy.environment(req.environment) else {
            throw EngineError.refused("unknown_environment",
                                      "no approval policy for environment \(req.environment); known: \(policy.environments.keys.sorted().joined(separator: ", "))")
        }
        let model: ModelInfo
        do { model = try bentoStore.model(name: req.modelName, version: req.modelVersion) } catch {
            throw EngineError.notFound("model_not_found", error.message)
        }
        let modelTag = "\(model.name):\(model.version)"
        let bento: BentoInfo
        do {
            if let tag = req.bento {
                bento = try bentoStore.bento(tag: tag)
                guard bento.models.contains(modelTag) || bento.models.contains(model.name) else {
                    throw RuntimeError(code: "bento_not_found", message: "bento \(tag) does not serve \(modelTag) (it serves \(bento.models.joined(separator: ", ")))")
                }
            } else {
                guard let b: BentoInfo = try bentoStore.newestBento(serving: modelTag) else {
                    throw RuntimeError(code: "bento_not_found", message: "no bento in the store serves \(modelTag); build one or pass bento")
                }
                bento = b
            }
        } catch let error as RuntimeError {
            throw EngineError.notFound("bento_not_found", error.message)
        } catch {
            throw EngineError.notFound("bento_not_found", "\(error)")
        }
        // An expired gate no longer holds the rollout lock.
        if let blocking = try ledger({ () throws(StoreError) in try store.inFlight(modelName: req.modelName, environment: req.environment) }) {
            _ = try? expireIfDue(blocking)
        }
        let live = liveFacts(try registryEntry(req.modelName, req.environment))
        let host = readHostFacts()
        let input = PlanInput(
            modelName: req.modelName, modelVersion: model.version, environment: req.environment, bentoTag: bento.tag,
            strategyRequest: req.strategy, smokeTests: req.smokeTests, requirements: req.requirements,
            requestedBy: req.requestedBy,
            model: ModelFacts(name: model.name, version: model.version, module: model.module, sizeBytes: model.sizeBytes,
                              labels: model.labels, metadata: model.metadata, creationTime: model.creationTime),
            bento: BentoFacts(tag: bento.tag, resources: bento.resources, apis: bento.apis, models: bento.models),
            live: live, host: HostFacts(freeMemoryMB: host.freeMemoryMB, cpuCount: host.cpuCount),
            policy: envPolicy, extraGates: req.extraGates)
        let plan: DeploymentPlan
        switch Planner.plan(input) {
        case .success(let p): plan = p
        case .failure(let refusal): throw EngineError.planRefusal(refusal)
        }
        let t = now()
        let status = plan.initialStatus
        let record = DeploymentRecord(
            deploymentId: makeDeploymentID(now: t), modelName: req.modelName, modelVersion: model.version,
            environment: req.environment, bentoTag: bento.tag, endpointURL: live?.endpointURL ?? "http://127.0.0.1:\(plan.config.routerPort)",
            strategy: plan.strategy, status: status, previousVersion: live?.version, slot: plan.config.slot.rawValue,
            plan: plan.toJSON(), planHash: plan.planHash, requestedBy: req.requestedBy, idempotencyKey: req.idempotencyKey,
            createdAt: t, updatedAt: t)
        let gateText = status == .awaitingApproval ? "; waiting for approval (gate deploy)" : ""
        let ev = DeploymentEvent(
            deploymentId: record.deploymentId, at: t, fromStatus: nil, toStatus: status, step: "plan", actor: req.requestedBy,
            message: "planned \(plan.strategy.rawValue) of \(modelTag) to \(req.environment)\(gateText)",
            data: ["reasons": .array(plan.reasons.map { .string($0) }), "plan_hash": .string(plan.planHash),
                   "request_fingerprint": .string(req.fingerprint)])
        do {
            try store.insert(record, event: ev)
        } catch {
            if error.code == .duplicateIdempotencyKey, let key = req.idempotencyKey,
                let existing = try ledger({ () throws(StoreError) in try store.deployment(idempotencyKey: key) })
            {
                return try replay(existing, of: req, key: key)  // a concurrent call with the same key won the race
            }
            if error.code == .rolloutInProgress {
                let blocking = error.deploymentId ?? (try? store.inFlight(modelName: req.modelName, environment: req.environment))?.deploymentId
                throw EngineError.rolloutInProgress(
                    blocking, "\(req.modelName) in \(req.environment) already has a rollout in flight\(blocking.map { " (deployment \($0))" } ?? ""); finish, reject or wait for it first")
            }
            throw EngineError.ledger(error)
        }
        return record
    }

    /// Expires a deployment whose open gate ran past its timeout. Returns the updated record when it expired.
    @discardableResult
    func expireIfDue(_ r: DeploymentRecord) throws(EngineError) -> DeploymentRecord? {
        guard let kind = Lifecycle.pendingGate(r.status), let plan = try? DeploymentPlan(json: r.plan), let gate = plan.gate(kind) else {
            return nil
        }
        let openedAt = kind == .deploy ? r.createdAt : r.updatedAt
        guard policy.isExpired(gateOpenedAt: openedAt, now: now(), gate: gate) else { return nil }
        let expired = try move(r, .expire, step: "expire", actor: "model-deployer",
                               message: "gate \(kind.rawValue) expired after \(gate.timeoutSeconds ?? 0) s without an answer",
                               changes: DeploymentChanges(finishedAt: now(), error: Self.errorJSON(code: -32004, reason: "approval_expired", message: "the approval window closed", step: "gate:\(kind.rawValue)")))
        return expired
    }

    // MARK: - Status and history

    /// The deployment, its events, what is live, and whether its slot runs.
    public func status(_ id: String) async throws(EngineError) -> StatusReport {
        await reconcileOnce()
        let r = try record(id)
        let events = try ledger { () throws(StoreError) in try store.events(deploymentId: id) }
        let live = try registryEntry(r.modelName, r.environment)
        // Only these statuses have a slot process that should be running.
        let running: Set<DeploymentStatus> = [.deploying, .validating, .awaitingPromotion, .switching, .live]
        var alive: Bool? = nil
        if let s = r.slot.flatMap(Slot.init(rawValue:)), running.contains(r.status) {
            alive = slots.state(modelName: r.modelName, environment: r.environment, slot: s)?.alive ?? false
        }
        var endpointAlive: Bool? = nil
        if r.status == .live, let live, live.deploymentId == r.deploymentId {
            endpointAlive = await endpointAnswers(live.endpointURL)
        }
        return StatusReport(record: r, events: events, live: live, slotAlive: alive, endpointAlive: endpointAlive)
    }

    /// One page of history.
    public func history(_ q: HistoryQuery) async throws(EngineError) -> HistoryPage {
        await reconcileOnce()
        return try ledger { () throws(StoreError) in try store.query(q) }
    }
}
