#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import JSON

/// How a unit of work touches the database.
enum TxMode {
    /// One statement in autocommit.
    case single
    /// A read-only transaction (a consistent snapshot over several statements).
    case read
    /// A write transaction (SQLite: `BEGIN IMMEDIATE`, so the write lock is taken up front).
    case write
}

/// What each store provides: a serialized connection, transactions, and (Postgres) reconnect-and-retry.
protocol SQLBackend: AnyObject, Sendable {
    var dialect: SQLDialect { get }
    /// Runs `body` under the connection lock inside a transaction of the given mode and commits it.
    /// When the connection drops (Postgres), reconnects and runs `body` once more with `isRetry == true`;
    /// the failed attempt's transaction never committed, or (lost COMMIT reply) `body` must detect that it did.
    func run<T: Sendable>(_ mode: TxMode, _ body: (any SQLConnection, _ isRetry: Bool) throws -> T) throws -> T
    /// Applies `migrations` not yet recorded in `schema_migrations`, under a cross-process lock.
    func applyMigrations(_ migrations: [Migration]) throws
}

private struct RolloutBlocked: Error {}
private struct IdempotencyKeyTaken: Error {}
private struct DeploymentExists: Error {}

/// The ledger's SQL, shared by both stores. Every value is a bound parameter.
struct Ledger: Sendable {
    let backend: any SQLBackend
    var dialect: SQLDialect { backend.dialect }

    static let deploymentColumns = [
        "deployment_id", "model_name", "model_version", "environment", "bento_tag", "endpoint_url",
        "deployment_strategy", "status", "previous_version", "slot", "plan", "plan_hash", "health_check_passed",
        "metrics_baseline", "requested_by", "approved_by", "approved_at", "started_at", "finished_at", "error",
        "rollback_of", "idempotency_key", "owner", "created_at", "updated_at",
    ]
    static let timeColumns: Set<String> = ["approved_at", "started_at", "finished_at", "created_at", "updated_at", "at", "live_from", "live_until"]
    static let eventColumns = ["deployment_id", "seq", "at", "from_status", "to_status", "step", "actor", "message", "data"]
    /// What reads select: the written columns plus the hash-chain links (migration 2).
    static let eventReadColumns = eventColumns + ["prev_hash", "hash"]
    static let registryColumns = [
        "model_name", "environment", "model_version", "deployment_id", "endpoint_url", "slot", "bento_tag",
        "previous_version", "previous_deployment_id", "previous_slot", "previous_bento_tag", "updated_at",
    ]

    /// The in-flight statuses as they appear in the partial unique index (migration 3). A test checks that
    /// this matches `DeploymentStatus.inFlight`; changing it needs a new migration.
    static let inFlightSQLList =
        "'approved', 'awaiting_approval', 'awaiting_promotion', 'awaiting_step', 'canary', 'deploying', 'planned', 'switching', 'validating'"
    /// The list migration 1 indexed (released; never edited).
    static let inFlightSQLListV1 = "'approved', 'awaiting_approval', 'awaiting_promotion', 'deploying', 'planned', 'switching', 'validating'"

    func selectList(_ columns: [String], prefix: String = "") -> String {
        columns.map { Ledger.timeColumns.contains($0) ? dialect.micros(prefix + $0) : prefix + $0 }.joined(separator: ", ")
    }

    var deploymentSelect: String { "SELECT \(selectList(Ledger.deploymentColumns)) FROM ml_deployments" }
    var eventSelect: String { "SELECT \(selectList(Ledger.eventReadColumns)) FROM ml_deployment_events" }
    var registrySelect: String { "SELECT \(selectList(Ledger.registryColumns)) FROM ml_model_registry" }

    /// Runs `body` and turns every failure into a `StoreError`.
    func mapped<T>(_ body: () throws -> T) throws(StoreError) -> T {
        do { return try body() } catch let e as StoreError { throw e } catch let e as DBFailure {
            throw StoreError(.database, e.description)
        } catch { throw StoreError(.database, "\(error)") }
    }

    // MARK: - Writes

    func insert(_ record: DeploymentRecord, event: DeploymentEvent) throws(StoreError) -> DeploymentEvent {
        try checkNoNUL(Self.textFields(record) + Self.textFields(event))
        var ev = event
        ev.deploymentId = record.deploymentId
        ev.seq = 1
        if ev.toStatus == nil { ev.toStatus = record.status }
        let stored = ev
        for _ in 0..<3 {
            do {
                return try backend.run(.write) { c, _ in
                    do {
                        _ = try c.execute(insertDeploymentSQL, Self.params(record))
                    } catch DBFailure.unique(let what) {
                        if what.contains("idempotency_key") { throw IdempotencyKeyTaken() }
                        if what.contains("in_flight") || what.contains("model_name") { throw RolloutBlocked() }
                        throw DeploymentExists()
                    }
                    return try appendChained(c, stored)
                }
            } catch let e as StoreError {
                throw e
            } catch is IdempotencyKeyTaken {
                let other = try deployment(idempotencyKey: record.idempotencyKey ?? "")
                if let other, other.deploymentId == record.deploymentId { return try events(deploymentId: other.deploymentId).first ?? stored }
                throw StoreError(
                    .duplicateIdempotencyKey, "idempotency key already used by deployment \(other?.deploymentId ?? "?")",
                    deploymentId: other?.deploymentId)
            } catch is RolloutBlocked {
                // Resolved outside the failed transaction; if the blocker finished meanwhile, try again.
                if let blocker = try inFlight(modelName: record.modelName, environment: record.environment) {
                    throw StoreError(
                        .rolloutInProgress,
                        "deployment \(blocker.deploymentId) is already in flight for \(record.modelName) in \(record.environment)",
                        deploymentId: blocker.deploymentId)
                }
            } catch is DeploymentExists {
                // Also the retry after a lost COMMIT reply: the same record is already there.
                if let existing = try deployment(id: record.deploymentId), existing.modelName == record.modelName,
                    existing.environment == record.environment, Micros.from(existing.createdAt) == Micros.from(record.createdAt)
                {
                    return try events(deploymentId: record.deploymentId).first ?? stored
                }
                throw StoreError(.database, "deployment \(record.deploymentId) already exists")
            } catch let e as DBFailure {
                throw StoreError(.database, e.description)
            } catch {
                throw StoreError(.database, "\(error)")
            }
        }
        throw StoreError(.database, "insert kept conflicting with deployments that finished meanwhile")
    }

    var insertDeploymentSQL: String {
        let cols = Ledger.deploymentColumns + ["last_seq"]
        let ph = (1...cols.count).map { "$\($0)" + castFor(cols[$0 - 1]) }.joined(separator: ", ")
        return "INSERT INTO ml_deployments (\(cols.joined(separator: ", "))) VALUES (\(ph))"
    }

    var insertEventSQL: String {
        let cols = Ledger.eventColumns
        let ph = (1...cols.count).map { "$\($0)" + castFor(cols[$0 - 1]) }.joined(separator: ", ")
        return "INSERT INTO ml_deployment_events (\(cols.joined(separator: ", "))) VALUES (\(ph))"
    }

    var insertChainedEventSQL: String {
        let cols = Ledger.eventReadColumns
        let ph = (1...cols.count).map { "$\($0)" + castFor(cols[$0 - 1]) }.joined(separator: ", ")
        return "INSERT INTO ml_deployment_events (\(cols.joined(separator: ", "))) VALUES (\(ph))"
    }

    /// Inserts `event` linked to the previous event of its deployment. Runs inside the caller's write
    /// transaction, after the deployment row was locked (Postgres: the `UPDATE ... RETURNING last_seq`),
    /// so no other append can slip between reading the previous hash and writing this one.
    func appendChained(_ c: any SQLConnection, _ event: DeploymentEvent) throws -> DeploymentEvent {
        var ev = event
        var prev = ""
        if ev.seq > 1 {
            let rows = try c.execute(
                "SELECT hash FROM ml_deployment_events WHERE deployment_id = $1 AND seq = $2", [.text(ev.deploymentId), .int(Int64(ev.seq - 1))])
            // A previous event without a hash predates the chain: the chain of this deployment starts here.
            prev = (rows.first?[0] ?? nil) ?? ""
        }
        ev.prevHash = prev
        ev.hash = EventChain.hash(previous: prev, ev)
        _ = try c.execute(insertChainedEventSQL, Self.params(ev) + [.text(ev.prevHash), .text(ev.hash)])
        return ev
    }

    /// The Postgres type of a column's values (for casts and `unnest` arrays).
    func arrayType(_ column: String) -> String {
        if Ledger.timeColumns.contains(column) { return "timestamptz" }
        switch column {
        case "plan", "metrics_baseline", "error", "data": return "jsonb"
        case "health_check_passed": return "boolean"
        case "seq", "last_seq": return "int8"
        default: return "text"
        }
    }

    /// The cast a parameter of `column` needs (none for text).
    func castFor(_ column: String) -> String {
        let type = arrayType(column)
        return type == "text" ? "" : "::" + type
    }

    func transition(
        id: String, from expected: DeploymentStatus, to status: DeploymentStatus, changes: DeploymentChanges,
        event: DeploymentEvent
    ) throws(StoreError) -> DeploymentRecord {
        try checkNoNUL(
            Self.textFields(event) + [
                ("endpoint_url", changes.endpointURL), ("slot", changes.slot), ("approved_by", changes.approvedBy),
                ("owner", changes.owner ?? nil), ("previous_version", changes.previousVersion),
            ])
        var params: [SQLValue] = [.text(id), .text(expected.rawValue), .text(status.rawValue), .time(event.at)]
        var sets = ["status = $3", "updated_at = $4::timestamptz", "last_seq = last_seq + 1"]
        func set(_ column: String, _ value: SQLValue) {
            params.append(value)
            sets.append("\(column) = $\(params.count)\(castFor(column))")
        }
        if let v = changes.endpointURL { set("endpoint_url", .text(v)) }
        if let v = changes.slot { set("slot", .text(v)) }
        if let v = changes.healthCheckPassed { set("health_check_passed", .bool(v)) }
        if let v = changes.metricsBaseline { set("metrics_baseline", .json(Self.metricsJSON(v))) }
        if let v = changes.approvedBy { set("approved_by", .text(v)) }
        if let v = changes.approvedAt { set("approved_at", .time(v)) }
        if let v = changes.startedAt { set("started_at", .time(v)) }
        if let v = changes.finishedAt { set("finished_at", .time(v)) }
        if let v = changes.error { set("error", .json(v)) }
        if let v = changes.owner { set("owner", .text(v)) }
        if let v = changes.plan { set("plan", .json(v)) }
        if let v = changes.previousVersion { set("previous_version", .text(v)) }
        let sql = "UPDATE ml_deployments SET \(sets.joined(separator: ", ")) WHERE deployment_id = $1 AND status = $2 RETURNING last_seq"
        let finalParams = params
        for _ in 0..<3 {
            do {
                return try backend.run(.write) { c, isRetry in
                        let rows: [[String?]]
                        do { rows = try c.execute(sql, finalParams) } catch DBFailure.unique { throw RolloutBlocked() }
                        guard let first = rows.first, let seq = first[0].flatMap({ Int($0) }) else {
                            let cur = try c.execute("SELECT status FROM ml_deployments WHERE deployment_id = $1", [.text(id)])
                            guard let s = cur.first?[0] else {
                                throw StoreError(.notFound, "no deployment \(id)", deploymentId: id)
                            }
                            let actual = DeploymentStatus(rawValue: s)
                            // A retry after a lost COMMIT reply: the first attempt did apply.
                            if isRetry, actual == status, let last = try lastEvent(c, id), last.toStatus == status,
                                last.fromStatus == expected, last.step == event.step, Micros.from(last.at) == Micros.from(event.at),
                                let rec = try fetch(c, id)
                            {
                                return rec
                            }
                            throw StoreError(
                                .statusConflict, "deployment \(id) is \(s), not \(expected.rawValue)",
                                deploymentId: id, actualStatus: actual)
                        }
                        var ev = event
                        ev.deploymentId = id
                        ev.seq = seq
                        ev.fromStatus = expected
                        ev.toStatus = status
                        _ = try appendChained(c, ev)
                        guard let rec = try fetch(c, id) else { throw StoreError(.notFound, "no deployment \(id)") }
                        if changes.clearsRegistry {
                            _ = try clearRegistryRow(c, rec.modelName, rec.environment, id, event.at)
                        }
                        return rec
                    }
            } catch let e as StoreError {
                throw e
            } catch is RolloutBlocked {
                let rec = try self.deployment(id: id)
                if let rec, let blocker = try inFlight(modelName: rec.modelName, environment: rec.environment), blocker.deploymentId != id {
                    throw StoreError(
                        .rolloutInProgress,
                        "deployment \(blocker.deploymentId) is already in flight for \(rec.modelName) in \(rec.environment)",
                        deploymentId: blocker.deploymentId)
                }
            } catch let e as DBFailure {
                throw StoreError(.database, e.description)
            } catch {
                throw StoreError(.database, "\(error)")
            }
        }
        throw StoreError(.database, "transition kept conflicting with deployments that finished meanwhile")
    }

    func appendEvent(_ event: DeploymentEvent) throws(StoreError) -> DeploymentEvent {
        try checkNoNUL(Self.textFields(event))
        let id = event.deploymentId
        return try mapped {
            try backend.run(.write) { c, isRetry in
                if isRetry, let last = try lastEvent(c, id), last.step == event.step, last.actor == event.actor,
                    last.message == event.message, Micros.from(last.at) == Micros.from(event.at), last.data == event.data
                {
                    return last
                }
                let rows = try c.execute(
                    "UPDATE ml_deployments SET last_seq = last_seq + 1 WHERE deployment_id = $1 RETURNING last_seq", [.text(id)])
                guard let seq = rows.first?[0].flatMap({ Int($0) }) else {
                    throw StoreError(.notFound, "no deployment \(id)", deploymentId: id)
                }
                var ev = event
                ev.seq = seq
                return try appendChained(c, ev)
            }
        }
    }

    func setRegistry(_ e: RegistryEntry) throws(StoreError) {
        try checkNoNUL([
            ("model_name", e.modelName), ("environment", e.environment), ("model_version", e.modelVersion),
            ("deployment_id", e.deploymentId), ("endpoint_url", e.endpointURL), ("slot", e.slot), ("bento_tag", e.bentoTag),
            ("previous_version", e.previousVersion), ("previous_deployment_id", e.previousDeploymentId),
            ("previous_slot", e.previousSlot), ("previous_bento_tag", e.previousBentoTag),
        ])
        let cols = Ledger.registryColumns
        let ph = (1...cols.count).map { "$\($0)" + castFor(cols[$0 - 1]) }.joined(separator: ", ")
        let updates = cols.dropFirst(2).map { "\($0) = excluded.\($0)" }.joined(separator: ", ")
        let upsert = "INSERT INTO ml_model_registry (\(cols.joined(separator: ", "))) VALUES (\(ph)) "
            + "ON CONFLICT (model_name, environment) DO UPDATE SET \(updates)"
        let params: [SQLValue] = [
            .text(e.modelName), .text(e.environment), .text(e.modelVersion), .text(e.deploymentId), .text(e.endpointURL),
            .text(e.slot), .text(e.bentoTag), .text(e.previousVersion), .text(e.previousDeploymentId),
            .text(e.previousSlot), .text(e.previousBentoTag), .time(e.updatedAt),
        ]
        try mapped {
            try backend.run(.write) { c, _ in
                _ = try c.execute(upsert, params)
                let open = try c.execute(
                    "SELECT deployment_id FROM ml_live_intervals WHERE model_name = $1 AND environment = $2 AND live_until IS NULL",
                    [.text(e.modelName), .text(e.environment)])
                if open.count == 1, open[0][0] == e.deploymentId { return }
                _ = try c.execute(
                    "UPDATE ml_live_intervals SET live_until = $3::timestamptz WHERE model_name = $1 AND environment = $2 AND live_until IS NULL",
                    [.text(e.modelName), .text(e.environment), .time(e.updatedAt)])
                _ = try c.execute(
                    "INSERT INTO ml_live_intervals (model_name, environment, deployment_id, live_from) VALUES ($1, $2, $3, $4::timestamptz) "
                        + "ON CONFLICT (model_name, environment, live_from) DO UPDATE SET deployment_id = excluded.deployment_id, live_until = NULL",
                    [.text(e.modelName), .text(e.environment), .text(e.deploymentId), .time(e.updatedAt)])
            }
        }
    }

    func clearRegistry(modelName: String, environment: String, deploymentId: String, at: Date) throws(StoreError) -> Bool {
        try checkNoNUL([("model_name", modelName), ("environment", environment), ("deployment_id", deploymentId)])
        return try mapped {
            try backend.run(.write) { c, _ in try clearRegistryRow(c, modelName, environment, deploymentId, at) }
        }
    }

    /// Deletes the registry row naming `deploymentId` and closes its open live interval.
    func clearRegistryRow(_ c: any SQLConnection, _ model: String, _ env: String, _ id: String, _ at: Date) throws -> Bool {
        let deleted = try c.execute(
            "DELETE FROM ml_model_registry WHERE model_name = $1 AND environment = $2 AND deployment_id = $3 RETURNING deployment_id",
            [.text(model), .text(env), .text(id)])
        _ = try c.execute(
            "UPDATE ml_live_intervals SET live_until = $4::timestamptz WHERE model_name = $1 AND environment = $2 "
                + "AND deployment_id = $3 AND live_until IS NULL",
            [.text(model), .text(env), .text(id), .time(at)])
        return !deleted.isEmpty
    }

    // MARK: - Reads

    func fetch(_ c: any SQLConnection, _ id: String) throws -> DeploymentRecord? {
        try c.execute("\(deploymentSelect) WHERE deployment_id = $1", [.text(id)]).first.map(Self.decodeDeployment)
    }

    func lastEvent(_ c: any SQLConnection, _ id: String) throws -> DeploymentEvent? {
        try c.execute("\(eventSelect) WHERE deployment_id = $1 ORDER BY seq DESC LIMIT 1", [.text(id)]).first.map(Self.decodeEvent)
    }

    func deployment(id: String) throws(StoreError) -> DeploymentRecord? {
        try mapped { try backend.run(.single) { c, _ in try fetch(c, id) } }
    }

    func deployment(idempotencyKey: String) throws(StoreError) -> DeploymentRecord? {
        try mapped {
            try backend.run(.single) { c, _ in
                try c.execute("\(deploymentSelect) WHERE idempotency_key = $1", [.text(idempotencyKey)]).first.map(Self.decodeDeployment)
            }
        }
    }

    func events(deploymentId: String) throws(StoreError) -> [DeploymentEvent] {
        try mapped {
            try backend.run(.single) { c, _ in
                try c.execute("\(eventSelect) WHERE deployment_id = $1 ORDER BY seq", [.text(deploymentId)]).map(Self.decodeEvent)
            }
        }
    }

    func inFlight(modelName: String, environment: String) throws(StoreError) -> DeploymentRecord? {
        try mapped {
            try backend.run(.single) { c, _ in
                try c.execute(
                    "\(deploymentSelect) WHERE model_name = $1 AND environment = $2 AND status IN (\(Ledger.inFlightSQLList))",
                    [.text(modelName), .text(environment)]
                ).first.map(Self.decodeDeployment)
            }
        }
    }

    func deployments(withStatuses statuses: [DeploymentStatus]) throws(StoreError) -> [DeploymentRecord] {
        if statuses.isEmpty { return [] }
        let list = (1...statuses.count).map { "$\($0)" }.joined(separator: ", ")
        let params = statuses.map { SQLValue.text($0.rawValue) }
        return try mapped {
            try backend.run(.single) { c, _ in
                try c.execute("\(deploymentSelect) WHERE status IN (\(list)) ORDER BY created_at, deployment_id", params)
                    .map(Self.decodeDeployment)
            }
        }
    }

    func registry(modelName: String, environment: String) throws(StoreError) -> RegistryEntry? {
        try mapped {
            try backend.run(.single) { c, _ in
                try c.execute("\(registrySelect) WHERE model_name = $1 AND environment = $2", [.text(modelName), .text(environment)])
                    .first.map(Self.decodeRegistry)
            }
        }
    }

    func allRegistryEntries() throws(StoreError) -> [RegistryEntry] {
        try mapped {
            try backend.run(.single) { c, _ in
                try c.execute("\(registrySelect) ORDER BY model_name, environment", []).map(Self.decodeRegistry)
            }
        }
    }

    func query(_ q: HistoryQuery) throws(StoreError) -> HistoryPage {
        let limit = min(max(q.limit, 1), 1000)
        var params: [SQLValue] = []
        var conds: [String] = []
        func p(_ v: SQLValue, _ cast: String = "") -> String {
            params.append(v)
            return "$\(params.count)\(cast)"
        }
        if let v = q.modelName { conds.append("model_name = \(p(.text(v)))") }
        if let v = q.modelVersion { conds.append("model_version = \(p(.text(v)))") }
        if let v = q.environment { conds.append("environment = \(p(.text(v)))") }
        if !q.statuses.isEmpty {
            let unique = Array(Set(q.statuses)).sorted { $0.rawValue < $1.rawValue }
            if unique.count == 1 {
                conds.append("status = \(p(.text(unique[0].rawValue)))")
            } else {
                conds.append("status IN (\(unique.map { p(.text($0.rawValue)) }.joined(separator: ", ")))")
            }
        }
        if let v = q.strategy { conds.append("deployment_strategy = \(p(.text(v.rawValue)))") }
        if let v = q.deploymentId { conds.append("deployment_id = \(p(.text(v)))") }
        if let v = q.since { conds.append("created_at >= \(p(.time(v), "::timestamptz"))") }
        if let v = q.until { conds.append("created_at < \(p(.time(v), "::timestamptz"))") }
        if let at = q.liveAt {
            if let m = q.modelName, let e = q.environment {
                let t = p(.time(at), "::timestamptz")
                conds.append(
                    "deployment_id = (SELECT deployment_id FROM ml_live_intervals WHERE model_name = \(p(.text(m))) "
                        + "AND environment = \(p(.text(e))) AND live_from <= \(t) AND (live_until IS NULL OR live_until > \(t)) "
                        + "ORDER BY live_from DESC LIMIT 1)")
            } else {
                var sub = "SELECT deployment_id FROM ml_live_intervals WHERE "
                if let m = q.modelName { sub += "model_name = \(p(.text(m))) AND " }
                if let e = q.environment { sub += "environment = \(p(.text(e))) AND " }
                let t = p(.time(at), "::timestamptz")
                sub += "live_from <= \(t) AND (live_until IS NULL OR live_until > \(t))"
                conds.append("deployment_id IN (\(sub))")
            }
        }
        if let cursor = q.cursor {
            guard let (micros, id) = Self.decodeCursor(cursor) else {
                throw StoreError(.invalidCursor, "the cursor is not one this ledger issued")
            }
            let t = p(.time(micros), "::timestamptz")
            let i = p(.text(id))
            conds.append("created_at <= \(t) AND (created_at < \(t) OR deployment_id < \(i))")
        }
        var sql = deploymentSelect
        if !conds.isEmpty { sql += " WHERE " + conds.joined(separator: " AND ") }
        sql += " ORDER BY created_at DESC, deployment_id DESC LIMIT \(limit + 1)"
        let finalParams = params
        let includeEvents = q.includeEvents
        return try mapped {
            try backend.run(includeEvents ? .read : .single) { c, _ in
                var rows = try c.execute(sql, finalParams)
                var next: String?
                if rows.count > limit {
                    rows.removeLast(rows.count - limit)
                    // From the raw row: the cursor must move past a row even when that row cannot be decoded.
                    if let last = rows.last, let micros = Int64(last[23] ?? ""), let id = last[0] {
                        next = Self.encodeCursor(micros, id)
                    }
                }
                // One row that cannot be read (written by a newer agent, or damaged) must not hide the others.
                var records: [DeploymentRecord] = []
                var unreadable: [UnreadableRow] = []
                for row in rows {
                    do { records.append(try Self.decodeDeployment(row)) } catch {
                        unreadable.append(UnreadableRow(deploymentId: row[0] ?? "", problem: "\(error)"))
                    }
                }
                var events: [String: [DeploymentEvent]] = [:]
                if includeEvents, !records.isEmpty {
                    let ids = records.map { SQLValue.text($0.deploymentId) }
                    let list = (1...ids.count).map { "$\($0)" }.joined(separator: ", ")
                    for row in try c.execute("\(eventSelect) WHERE deployment_id IN (\(list)) ORDER BY deployment_id, seq", ids) {
                        do {
                            let ev = try Self.decodeEvent(row)
                            events[ev.deploymentId, default: []].append(ev)
                        } catch {
                            unreadable.append(UnreadableRow(deploymentId: row[0] ?? "", eventSeq: Int(row[1] ?? ""), problem: "\(error)"))
                        }
                    }
                    for r in records where events[r.deploymentId] == nil { events[r.deploymentId] = [] }
                }
                return HistoryPage(deployments: records, events: events, nextCursor: next, unreadable: unreadable)
            }
        }
    }

    // MARK: - Cursor

    static func encodeCursor(_ micros: Int64, _ id: String) -> String {
        let raw = "v1|\(micros)|\(id)"
        let b64 = Data(raw.utf8).base64EncodedString()
        return String(String.UnicodeScalarView(b64.unicodeScalars.compactMap { c -> Unicode.Scalar? in
            c == "+" ? "-" : c == "/" ? "_" : c == "=" ? nil : c
        }))
    }

    static func decodeCursor(_ cursor: String) -> (Int64, String)? {
        var b64 = String(String.UnicodeScalarView(cursor.unicodeScalars.map { c -> Unicode.Scalar in
            c == "-" ? "+" : c == "_" ? "/" : c
        }))
        while b64.utf8.count % 4 != 0 { b64 += "=" }
        guard cursor.utf8.count <= 200, let data = Data(base64Encoded: b64),
            let text = String(data: data, encoding: .utf8)
        else { return nil }
        let parts = text.split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v1", let micros = Int64(parts[1]), !parts[2].isEmpty,
            !parts[2].utf8.contains(0)
        else { return nil }
        return (micros, String(parts[2]))
    }

    // MARK: - Encoding

    static func textFields(_ r: DeploymentRecord) -> [(String, String?)] {
        [
            ("deployment_id", r.deploymentId), ("model_name", r.modelName), ("model_version", r.modelVersion),
            ("environment", r.environment), ("bento_tag", r.bentoTag), ("endpoint_url", r.endpointURL),
            ("previous_version", r.previousVersion), ("slot", r.slot), ("plan_hash", r.planHash),
            ("requested_by", r.requestedBy), ("approved_by", r.approvedBy), ("rollback_of", r.rollbackOf),
            ("idempotency_key", r.idempotencyKey), ("owner", r.owner),
        ]
    }

    static func textFields(_ e: DeploymentEvent) -> [(String, String?)] {
        [("deployment_id", e.deploymentId), ("step", e.step), ("actor", e.actor), ("message", e.message)]
    }

    static func metricsJSON(_ m: [String: Double]) -> JSONValue {
        .object(m.mapValues { .double($0) })
    }

    static func params(_ r: DeploymentRecord) -> [SQLValue] {
        [
            .text(r.deploymentId), .text(r.modelName), .text(r.modelVersion), .text(r.environment), .text(r.bentoTag),
            .text(r.endpointURL), .text(r.strategy.rawValue), .text(r.status.rawValue), .text(r.previousVersion),
            .text(r.slot), .json(r.plan), .text(r.planHash), r.healthCheckPassed.map { .bool($0) } ?? .null,
            .json(r.metricsBaseline.map(metricsJSON)), .text(r.requestedBy), .text(r.approvedBy), .time(r.approvedAt),
            .time(r.startedAt), .time(r.finishedAt), .json(r.error), .text(r.rollbackOf), .text(r.idempotencyKey),
            .text(r.owner), .time(r.createdAt), .time(r.updatedAt), .int(1),
        ]
    }

    static func params(_ e: DeploymentEvent) -> [SQLValue] {
        [
            .text(e.deploymentId), .int(Int64(e.seq)), .time(e.at), .text(e.fromStatus?.rawValue),
            .text(e.toStatus?.rawValue), .text(e.step), .text(e.actor), .text(e.message), .json(e.data),
        ]
    }

    // MARK: - Decoding

    struct DecodeError: Error, CustomStringConvertible {
        var description: String
    }

    static func json(_ s: String?) throws -> JSONValue? {
        guard let s else { return nil }
        do { return try JSONValue.parse(s) } catch { throw DecodeError(description: "stored JSON does not parse: \(error)") }
    }

    static func time(_ s: String?) throws -> Date? {
        guard let s else { return nil }
        guard let m = Int64(s) else { throw DecodeError(description: "stored timestamp \(s) is not integer microseconds") }
        return Micros.date(m)
    }

    static func bool(_ s: String?) -> Bool? {
        guard let s else { return nil }
        return s == "t" || s == "1" || s == "true"
    }

    static func decodeDeployment(_ row: [String?]) throws -> DeploymentRecord {
        guard let strategy = DeploymentStrategy(rawValue: row[6] ?? ""), let status = DeploymentStatus(rawValue: row[7] ?? "") else {
            throw DecodeError(description: "deployment \(row[0] ?? "?") has an unknown strategy or status")
        }
        var metrics: [String: Double]?
        if let m = try json(row[13]), let o = m.objectValue {
            var d: [String: Double] = [:]
            for (k, v) in o { if let x = v.doubleValue { d[k] = x } }
            metrics = d
        }
        let error = try json(row[19])
        return DeploymentRecord(
            deploymentId: row[0] ?? "", modelName: row[1] ?? "", modelVersion: row[2] ?? "", environment: row[3] ?? "",
            bentoTag: row[4], endpointURL: row[5], strategy: strategy, status: status, previousVersion: row[8], slot: row[9],
            plan: try json(row[10]) ?? .object([:]), planHash: row[11] ?? "", healthCheckPassed: bool(row[12]),
            metricsBaseline: metrics, requestedBy: row[14] ?? "", approvedBy: row[15], approvedAt: try time(row[16]),
            startedAt: try time(row[17]), finishedAt: try time(row[18]), error: error.flatMap { $0.isNull ? nil : $0 },
            rollbackOf: row[20], idempotencyKey: row[21], owner: row[22], createdAt: try time(row[23]) ?? Date(timeIntervalSince1970: 0),
            updatedAt: try time(row[24]) ?? Date(timeIntervalSince1970: 0))
    }

    static func decodeEvent(_ row: [String?]) throws -> DeploymentEvent {
        var ev = DeploymentEvent(
            deploymentId: row[0] ?? "", seq: Int(row[1] ?? "") ?? 0, at: try time(row[2]) ?? Date(timeIntervalSince1970: 0),
            fromStatus: row[3].flatMap { DeploymentStatus(rawValue: $0) }, toStatus: row[4].flatMap { DeploymentStatus(rawValue: $0) },
            step: row[5] ?? "", actor: row[6] ?? "", message: row[7] ?? "", data: try json(row[8]) ?? .object([:]))
        if row.count > 10 {
            ev.prevHash = row[9]
            ev.hash = row[10]
        }
        return ev
    }

    static func decodeRegistry(_ row: [String?]) throws -> RegistryEntry {
        RegistryEntry(
            modelName: row[0] ?? "", environment: row[1] ?? "", modelVersion: row[2] ?? "", deploymentId: row[3] ?? "",
            endpointURL: row[4] ?? "", slot: row[5] ?? "", bentoTag: row[6], previousVersion: row[7],
            previousDeploymentId: row[8], previousSlot: row[9], previousBentoTag: row[10],
            updatedAt: try time(row[11]) ?? Date(timeIntervalSince1970: 0))
    }
}
