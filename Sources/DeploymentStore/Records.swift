#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import JSON

/// One row of `ml_deployments`: a deployment from its plan to its end.
public struct DeploymentRecord: Sendable, Hashable {
    /// Time-ordered id (UUIDv7 text).
    public var deploymentId: String
    public var modelName: String
    public var modelVersion: String
    public var environment: String
    public var bentoTag: String?
    /// The model's stable endpoint (the router's URL), once known.
    public var endpointURL: String?
    public var strategy: DeploymentStrategy
    public var status: DeploymentStatus
    public var previousVersion: String?
    public var slot: String?
    /// The generated deployment config (stored as jsonb / JSON text).
    public var plan: JSONValue
    public var planHash: String
    public var healthCheckPassed: Bool?
    /// name -> number (stored as jsonb / JSON text).
    public var metricsBaseline: [String: Double]?
    public var requestedBy: String
    public var approvedBy: String?
    public var approvedAt: Date?
    public var startedAt: Date?
    public var finishedAt: Date?
    /// `{code, reason, message, step?}` when the deployment failed.
    public var error: JSONValue?
    /// For a rollback: the deployment it undid.
    public var rollbackOf: String?
    public var idempotencyKey: String?
    /// Which agent process owns the in-flight work (`host:pid:start`), for crash reconciliation.
    public var owner: String?
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        deploymentId: String, modelName: String, modelVersion: String, environment: String,
        bentoTag: String? = nil, endpointURL: String? = nil, strategy: DeploymentStrategy,
        status: DeploymentStatus, previousVersion: String? = nil, slot: String? = nil,
        plan: JSONValue = .object([:]), planHash: String = "", healthCheckPassed: Bool? = nil,
        metricsBaseline: [String: Double]? = nil, requestedBy: String, approvedBy: String? = nil,
        approvedAt: Date? = nil, startedAt: Date? = nil, finishedAt: Date? = nil, error: JSONValue? = nil,
        rollbackOf: String? = nil, idempotencyKey: String? = nil, owner: String? = nil,
        createdAt: Date, updatedAt: Date
    ) {
        self.deploymentId = deploymentId
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.environment = environment
        self.bentoTag = bentoTag
        self.endpointURL = endpointURL
        self.strategy = strategy
        self.status = status
        self.previousVersion = previousVersion
        self.slot = slot
        self.plan = plan
        self.planHash = planHash
        self.healthCheckPassed = healthCheckPassed
        self.metricsBaseline = metricsBaseline
        self.requestedBy = requestedBy
        self.approvedBy = approvedBy
        self.approvedAt = approvedAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.error = error
        self.rollbackOf = rollbackOf
        self.idempotencyKey = idempotencyKey
        self.owner = owner
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// One row of `ml_deployment_events`: an append-only audit entry.
public struct DeploymentEvent: Sendable, Hashable {
    public var deploymentId: String
    /// 1, 2, 3, ... per deployment, assigned by the store.
    public var seq: Int
    public var at: Date
    public var fromStatus: DeploymentStatus?
    public var toStatus: DeploymentStatus?
    /// The step this event records (`plan`, `approve`, `start_slot`, `readiness`, `smoke_test`, `switch`, ...).
    public var step: String
    public var actor: String
    public var message: String
    public var data: JSONValue
    /// The hash-chain link before this event ("" for the first chained event of a deployment), as stored;
    /// nil for events written before the ledger kept a chain. Set by the store.
    public var prevHash: String?
    /// `sha256(prevHash || canonical event)` in hex (see ``EventChain``), as stored; nil before the chain.
    public var hash: String?

    public init(
        deploymentId: String, seq: Int = 0, at: Date, fromStatus: DeploymentStatus? = nil,
        toStatus: DeploymentStatus? = nil, step: String, actor: String, message: String, data: JSONValue = .object([:])
    ) {
        self.deploymentId = deploymentId
        self.seq = seq
        self.at = at
        self.fromStatus = fromStatus
        self.toStatus = toStatus
        self.step = step
        self.actor = actor
        self.message = message
        self.data = data
    }
}

/// One row of `ml_model_registry`: what is live for a (model, environment).
public struct RegistryEntry: Sendable, Hashable {
    public var modelName: String
    public var environment: String
    public var modelVersion: String
    public var deploymentId: String
    public var endpointURL: String
    public var slot: String
    public var bentoTag: String?
    /// The version that was live before, kept warm for rollback.
    public var previousVersion: String?
    public var previousDeploymentId: String?
    public var previousSlot: String?
    public var previousBentoTag: String?
    public var updatedAt: Date

    public init(
        modelName: String, environment: String, modelVersion: String, deploymentId: String, endpointURL: String,
        slot: String, bentoTag: String? = nil, previousVersion: String? = nil, previousDeploymentId: String? = nil,
        previousSlot: String? = nil, previousBentoTag: String? = nil, updatedAt: Date
    ) {
        self.modelName = modelName
        self.environment = environment
        self.modelVersion = modelVersion
        self.deploymentId = deploymentId
        self.endpointURL = endpointURL
        self.slot = slot
        self.bentoTag = bentoTag
        self.previousVersion = previousVersion
        self.previousDeploymentId = previousDeploymentId
        self.previousSlot = previousSlot
        self.previousBentoTag = previousBentoTag
        self.updatedAt = updatedAt
    }
}

/// The filters and paging of `history.query`. Every filter is optional; all given filters must hold.
public struct HistoryQuery: Sendable, Hashable {
    public var modelName: String?
    public var modelVersion: String?
    public var environment: String?
    /// Any of these statuses (empty = any).
    public var statuses: [DeploymentStatus]
    public var strategy: DeploymentStrategy?
    public var deploymentId: String?
    public var since: Date?
    public var until: Date?
    /// Which deployment was live for the model/environment at this instant (needs model and environment).
    public var liveAt: Date?
    /// 1...1000, default 50.
    public var limit: Int
    /// Opaque, from a previous page's `nextCursor`.
    public var cursor: String?
    public var includeEvents: Bool

    public init(
        modelName: String? = nil, modelVersion: String? = nil, environment: String? = nil,
        statuses: [DeploymentStatus] = [], strategy: DeploymentStrategy? = nil, deploymentId: String? = nil,
        since: Date? = nil, until: Date? = nil, liveAt: Date? = nil, limit: Int = 50, cursor: String? = nil,
        includeEvents: Bool = false
    ) {
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.environment = environment
        self.statuses = statuses
        self.strategy = strategy
        self.deploymentId = deploymentId
        self.since = since
        self.until = until
        self.liveAt = liveAt
        self.limit = limit
        self.cursor = cursor
        self.includeEvents = includeEvents
    }
}

/// One page of history, newest first.
public struct HistoryPage: Sendable, Hashable {
    public var deployments: [DeploymentRecord]
    /// Events per deployment id, when `includeEvents` was asked.
    public var events: [String: [DeploymentEvent]]
    /// Pass back as `cursor` for the next page; nil on the last page.
    public var nextCursor: String?

    /// Rows of this page that could not be decoded (left out of `deployments` and `events`).
    public var unreadable: [UnreadableRow]

    public init(deployments: [DeploymentRecord], events: [String: [DeploymentEvent]] = [:], nextCursor: String?, unreadable: [UnreadableRow] = []) {
        self.deployments = deployments
        self.events = events
        self.nextCursor = nextCursor
        self.unreadable = unreadable
    }
}

/// A ledger row that cannot be decoded: a status or strategy written by a newer agent sharing the ledger,
/// or damaged JSON. History reports it beside the rows it could read instead of failing the whole page.
public struct UnreadableRow: Sendable, Hashable {
    public var deploymentId: String
    /// Set when the row is an event of the deployment rather than the deployment itself.
    public var eventSeq: Int?
    public var problem: String

    public init(deploymentId: String, eventSeq: Int? = nil, problem: String) {
        self.deploymentId = deploymentId
        self.eventSeq = eventSeq
        self.problem = problem
    }
}

/// The columns a compare-and-set transition may change besides `status`. `nil` leaves a column as it is.
public struct DeploymentChanges: Sendable, Hashable {
    public var endpointURL: String?
    public var slot: String?
    public var healthCheckPassed: Bool?
    public var metricsBaseline: [String: Double]?
    public var approvedBy: String?
    public var approvedAt: Date?
    public var startedAt: Date?
    public var finishedAt: Date?
    public var error: JSONValue?
    public var owner: String??
    public var plan: JSONValue?
    public var previousVersion: String?
    /// In the same transaction, deletes the registry row of the deployment's (model, environment) when it names
    /// this deployment, and closes its live interval at the event's time (`deploy.stop`: nothing is live after).
    public var clearsRegistry: Bool

    public init(
        endpointURL: String? = nil, slot: String? = nil, healthCheckPassed: Bool? = nil,
        metricsBaseline: [String: Double]? = nil, approvedBy: String? = nil, approvedAt: Date? = nil,
        startedAt: Date? = nil, finishedAt: Date? = nil, error: JSONValue? = nil, owner: String?? = nil,
        plan: JSONValue? = nil, previousVersion: String? = nil, clearsRegistry: Bool = false
    ) {
        self.endpointURL = endpointURL
        self.slot = slot
        self.healthCheckPassed = healthCheckPassed
        self.metricsBaseline = metricsBaseline
        self.approvedBy = approvedBy
        self.approvedAt = approvedAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.error = error
        self.owner = owner
        self.plan = plan
        self.previousVersion = previousVersion
        self.clearsRegistry = clearsRegistry
    }
}

/// Why a store call failed. Expected conflicts have their own codes so callers can answer precisely.
public struct StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// Another deployment holds the (model, environment) rollout lock; `deploymentId` names it.
        case rolloutInProgress = "rollout_in_progress"
        /// A compare-and-set found another status; `actualStatus` says which.
        case statusConflict = "status_conflict"
        case notFound = "deployment_not_found"
        /// The idempotency key is already used by another deployment.
        case duplicateIdempotencyKey = "duplicate_idempotency_key"
        case invalidCursor = "invalid_cursor"
        /// The database could not be reached or answered with an error.
        case database = "database_error"
    }

    public var code: Code
    public var message: String
    public var deploymentId: String?
    public var actualStatus: DeploymentStatus?

    public init(_ code: Code, _ message: String, deploymentId: String? = nil, actualStatus: DeploymentStatus? = nil) {
        self.code = code
        self.message = message
        self.deploymentId = deploymentId
        self.actualStatus = actualStatus
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// The ledger. Both implementations (SQLite, Postgres) pass one conformance suite.
///
/// Calls are synchronous and thread-safe: each implementation serializes access to its connection.
/// Every write that changes a deployment's status appends its event in the same transaction.
public protocol DeploymentStore: AnyObject, Sendable {
    /// Applies pending migrations (idempotent; safe when two agents start at once).
    func migrate() throws(StoreError)

    /// Inserts a new deployment and its first event atomically.
    /// Throws `.rolloutInProgress` (with the blocking id) when `record.status` is in flight and another
    /// in-flight deployment exists for the same model and environment, and `.duplicateIdempotencyKey`
    /// when the key is taken. Returns the stored event (with its seq).
    @discardableResult
    func insert(_ record: DeploymentRecord, event: DeploymentEvent) throws(StoreError) -> DeploymentEvent

    /// The deployment with this id, or nil.
    func deployment(id: String) throws(StoreError) -> DeploymentRecord?

    /// The deployment that was created with this idempotency key, or nil.
    func deployment(idempotencyKey: String) throws(StoreError) -> DeploymentRecord?

    /// Compare-and-set: moves `id` from `expected` to `status`, applies `changes` and appends `event`
    /// (its from/to are filled in) in one transaction. Throws `.statusConflict` with the actual status
    /// if the row is not in `expected`, `.notFound` if there is no such row, `.rolloutInProgress` if
    /// the move would put a second deployment in flight.
    @discardableResult
    func transition(
        id: String, from expected: DeploymentStatus, to status: DeploymentStatus, changes: DeploymentChanges,
        event: DeploymentEvent
    ) throws(StoreError) -> DeploymentRecord

    /// Appends an event that records a step without a status change.
    @discardableResult
    func appendEvent(_ event: DeploymentEvent) throws(StoreError) -> DeploymentEvent

    /// Every event of a deployment, by seq.
    func events(deploymentId: String) throws(StoreError) -> [DeploymentEvent]

    /// One page of history, newest first (by created_at, then deployment_id).
    func query(_ q: HistoryQuery) throws(StoreError) -> HistoryPage

    /// The in-flight deployment for a model and environment, if any.
    func inFlight(modelName: String, environment: String) throws(StoreError) -> DeploymentRecord?

    /// Deployments in any of these statuses (for reconciliation at start-up), oldest first.
    func deployments(withStatuses statuses: [DeploymentStatus]) throws(StoreError) -> [DeploymentRecord]

    /// What is live for a model and environment.
    func registry(modelName: String, environment: String) throws(StoreError) -> RegistryEntry?

    /// Every registry row (for reconciliation).
    func allRegistryEntries() throws(StoreError) -> [RegistryEntry]

    /// Inserts or replaces the registry row for `entry.modelName`, `entry.environment`; also records the
    /// interval during which `entry.deploymentId` is live, so `live_at` queries can answer.
    func setRegistry(_ entry: RegistryEntry) throws(StoreError)

    /// Deletes the registry row of (model, environment) when it names `deploymentId` (nothing is live there
    /// afterwards) and closes that deployment's open live interval at `at`. Returns whether a row was deleted.
    @discardableResult
    func clearRegistry(modelName: String, environment: String, deploymentId: String, at: Date) throws(StoreError) -> Bool

    /// A waiter woken when an event of `deploymentId` is appended (listening from now on), or nil when this
    /// store cannot announce appends (SQLite, in-memory): the caller polls. Default: nil.
    /// - Throws: `.database` when the store could announce them but listening cannot be set up.
    func eventWaiter(deploymentId: String) throws(StoreError) -> (any EventWaiter)?
}
