#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import JSON
import Synchronization

/// A `DeploymentStore` in memory, for unit tests of the engine and the agent. It follows the same rules as
/// the real stores (one in-flight rollout per model and environment, compare-and-set transitions, per-deployment
/// event seq, keyset pagination, live intervals) but persists nothing. Timestamps are kept as given.
public final class InMemoryStore: DeploymentStore, @unchecked Sendable {
    private struct Interval {
        var modelName: String
        var environment: String
        var deploymentId: String
        var from: Date
        var until: Date?
    }

    private struct State {
        var deployments: [String: DeploymentRecord] = [:]
        var events: [String: [DeploymentEvent]] = [:]
        var registry: [String: RegistryEntry] = [:]
        var intervals: [Interval] = []
        var migrated = false
    }

    private let state = Mutex(State())

    /// An empty store.
    public init() {}

    /// Every deployment, newest first (a test helper).
    public var allDeployments: [DeploymentRecord] {
        state.withLock { st in st.deployments.values.sorted(by: Self.newestFirst) }
    }

    public func migrate() throws(StoreError) { state.withLock { $0.migrated = true } }

    @discardableResult
    public func insert(_ record: DeploymentRecord, event: DeploymentEvent) throws(StoreError) -> DeploymentEvent {
        let texts = [record.deploymentId, record.modelName, record.modelVersion, record.environment, record.requestedBy]
            + [record.bentoTag, record.endpointURL, record.slot, record.idempotencyKey, record.owner].compactMap { $0 }
        if texts.contains(where: { $0.utf8.contains(0) }) {
            throw StoreError(.database, "a text field contains a NUL character, which the ledger cannot store")
        }
        return try state.withLock { st throws(StoreError) -> DeploymentEvent in
            if st.deployments[record.deploymentId] != nil {
                throw StoreError(.database, "deployment \(record.deploymentId) already exists")
            }
            if let key = record.idempotencyKey, let other = st.deployments.values.first(where: { $0.idempotencyKey == key }) {
                throw StoreError(.duplicateIdempotencyKey, "idempotency key already used by deployment \(other.deploymentId)",
                    deploymentId: other.deploymentId)
            }
            if record.status.isInFlight, let blocker = Self.inFlight(st, record.modelName, record.environment) {
                throw StoreError(.rolloutInProgress,
                    "deployment \(blocker.deploymentId) is already in flight for \(record.modelName) in \(record.environment)",
                    deploymentId: blocker.deploymentId)
            }
            var ev = event
            ev.deploymentId = record.deploymentId
            ev.seq = 1
            if ev.toStatus == nil { ev.toStatus = record.status }
            st.deployments[record.deploymentId] = record
            st.events[record.deploymentId] = [ev]
            return ev
        }
    }

    public func deployment(id: String) throws(StoreError) -> DeploymentRecord? {
        state.withLock { $0.deployments[id] }
    }

    public func deployment(idempotencyKey: String) throws(StoreError) -> DeploymentRecord? {
        state.withLock { st in st.deployments.values.first { $0.idempotencyKey == idempotencyKey } }
    }

    @discardableResult
    public func transition(
        id: String, from expected: DeploymentStatus, to status: DeploymentStatus, changes: DeploymentChanges,
        event: DeploymentEvent
    ) throws(StoreError) -> DeploymentRecord {
        try state.withLock { st throws(StoreError) -> DeploymentRecord in
            guard var rec = st.deployments[id] else { throw StoreError(.notFound, "no deployment \(id)", deploymentId: id) }
            guard rec.status == expected else {
                throw StoreError(.statusConflict, "deployment \(id) is \(rec.status.rawValue), not \(expected.rawValue)",
                    deploymentId: id, actualStatus: rec.status)
            }
            if status.isInFlight, let blocker = Self.inFlight(st, rec.modelName, rec.environment), blocker.deploymentId != id {
                throw StoreError(.rolloutInProgress,
                    "deployment \(blocker.deploymentId) is already in flight for \(rec.modelName) in \(rec.environment)",
                    deploymentId: blocker.deploymentId)
            }
            rec.status = status
            rec.updatedAt = event.at
            if let v = changes.endpointURL { rec.endpointURL = v }
            if let v = changes.slot { rec.slot = v }
            if let v = changes.healthCheckPassed { rec.healthCheckPassed = v }
            if let v = changes.metricsBaseline { rec.metricsBaseline = v }
            if let v = changes.approvedBy { rec.approvedBy = v }
            if let v = changes.approvedAt { rec.approvedAt = v }
            if let v = changes.startedAt { rec.startedAt = v }
            if let v = changes.finishedAt { rec.finishedAt = v }
            if let v = changes.error { rec.error = v }
            if let v = changes.owner { rec.owner = v }
            if let v = changes.plan { rec.plan = v }
            if let v = changes.previousVersion { rec.previousVersion = v }
            st.deployments[id] = rec
            if changes.clearsRegistry { Self.clear(&st, rec.modelName, rec.environment, id, event.at) }
            var ev = event
            ev.deploymentId = id
            ev.seq = (st.events[id]?.count ?? 0) + 1
            ev.fromStatus = expected
            ev.toStatus = status
            st.events[id, default: []].append(ev)
            return rec
        }
    }

    @discardableResult
    public func appendEvent(_ event: DeploymentEvent) throws(StoreError) -> DeploymentEvent {
        try state.withLock { st throws(StoreError) -> DeploymentEvent in
            guard st.deployments[event.deploymentId] != nil else {
                throw StoreError(.notFound, "no deployment \(event.deploymentId)", deploymentId: event.deploymentId)
            }
            var ev = event
            ev.seq = (st.events[event.deploymentId]?.count ?? 0) + 1
            st.events[event.deploymentId, default: []].append(ev)
            return ev
        }
    }

    public func events(deploymentId: String) throws(StoreError) -> [DeploymentEvent] {
        state.withLock { $0.events[deploymentId] ?? [] }
    }

    public func query(_ q: HistoryQuery) throws(StoreError) -> HistoryPage {
        var after: (Date, String)?
        if let cursor = q.cursor {
            let parts = cursor.split(separator: "|", maxSplits: 1)
            guard parts.count == 2, let t = Double(parts[0]) else {
                throw StoreError(.invalidCursor, "the cursor is not one this ledger issued")
            }
            after = (Date(timeIntervalSince1970: t), String(parts[1]))
        }
        let limit = min(max(q.limit, 1), 1000)
        return state.withLock { st in
            var live: Set<String>?
            if let at = q.liveAt {
                live = Set(st.intervals.filter {
                    (q.modelName == nil || $0.modelName == q.modelName) && (q.environment == nil || $0.environment == q.environment)
                        && $0.from <= at && ($0.until.map { $0 > at } ?? true)
                }.map(\.deploymentId))
            }
            let rows = st.deployments.values.filter { r in
                (q.modelName == nil || r.modelName == q.modelName) && (q.modelVersion == nil || r.modelVersion == q.modelVersion)
                    && (q.environment == nil || r.environment == q.environment)
                    && (q.statuses.isEmpty || q.statuses.contains(r.status)) && (q.strategy == nil || r.strategy == q.strategy)
                    && (q.deploymentId == nil || r.deploymentId == q.deploymentId)
                    && (q.since.map { r.createdAt >= $0 } ?? true) && (q.until.map { r.createdAt < $0 } ?? true)
                    && (live.map { $0.contains(r.deploymentId) } ?? true)
                    && (after.map { r.createdAt < $0.0 || (r.createdAt == $0.0 && r.deploymentId < $0.1) } ?? true)
            }.sorted(by: Self.newestFirst)
            let page = Array(rows.prefix(limit))
            let next = rows.count > limit ? page.last.map { "\($0.createdAt.timeIntervalSince1970)|\($0.deploymentId)" } : nil
            var events: [String: [DeploymentEvent]] = [:]
            if q.includeEvents { for r in page { events[r.deploymentId] = st.events[r.deploymentId] ?? [] } }
            return HistoryPage(deployments: page, events: events, nextCursor: next)
        }
    }

    public func inFlight(modelName: String, environment: String) throws(StoreError) -> DeploymentRecord? {
        state.withLock { Self.inFlight($0, modelName, environment) }
    }

    public func deployments(withStatuses statuses: [DeploymentStatus]) throws(StoreError) -> [DeploymentRecord] {
        state.withLock { st in
            st.deployments.values.filter { statuses.contains($0.status) }.sorted(by: Self.newestFirst).reversed()
        }
    }

    public func registry(modelName: String, environment: String) throws(StoreError) -> RegistryEntry? {
        state.withLock { $0.registry[Self.key(modelName, environment)] }
    }

    public func allRegistryEntries() throws(StoreError) -> [RegistryEntry] {
        state.withLock { st in
            st.registry.values.sorted { ($0.modelName, $0.environment) < ($1.modelName, $1.environment) }
        }
    }

    public func setRegistry(_ entry: RegistryEntry) throws(StoreError) {
        state.withLock { st in
            st.registry[Self.key(entry.modelName, entry.environment)] = entry
            let open = st.intervals.firstIndex {
                $0.modelName == entry.modelName && $0.environment == entry.environment && $0.until == nil
            }
            if let open, st.intervals[open].deploymentId == entry.deploymentId { return }
            if let open { st.intervals[open].until = entry.updatedAt }
            st.intervals.append(Interval(modelName: entry.modelName, environment: entry.environment,
                deploymentId: entry.deploymentId, from: entry.updatedAt, until: nil))
        }
    }

    @discardableResult
    public func clearRegistry(modelName: String, environment: String, deploymentId: String, at: Date) throws(StoreError) -> Bool {
        state.withLock { st in Self.clear(&st, modelName, environment, deploymentId, at) }
    }

    private static func clear(_ st: inout State, _ model: String, _ env: String, _ id: String, _ at: Date) -> Bool {
        for i in st.intervals.indices
        where st.intervals[i].modelName == model && st.intervals[i].environment == env && st.intervals[i].deploymentId == id
            && st.intervals[i].until == nil {
            st.intervals[i].until = at
        }
        guard st.registry[key(model, env)]?.deploymentId == id else { return false }
        st.registry[key(model, env)] = nil
        return true
    }

    private static func key(_ m: String, _ e: String) -> String { "\(m)\u{1}\(e)" }

    private static func inFlight(_ st: State, _ model: String, _ env: String) -> DeploymentRecord? {
        st.deployments.values.first { $0.modelName == model && $0.environment == env && $0.status.isInFlight }
    }

    private static func newestFirst(_ a: DeploymentRecord, _ b: DeploymentRecord) -> Bool {
        a.createdAt != b.createdAt ? a.createdAt > b.createdAt : a.deploymentId > b.deploymentId
    }
}
