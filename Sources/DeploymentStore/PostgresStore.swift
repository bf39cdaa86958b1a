#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import CPostgres
import DeployCore
import Synchronization

/// One libpq connection. Used only under `PostgresStore`'s lock.
final class PGConnection: SQLConnection {
    private(set) var conn: OpaquePointer?
    private let keywords: [String]
    private let values: [String]
    var dialect: SQLDialect { .postgres }

    init(keywords: [String], values: [String]) {
        self.keywords = keywords
        self.values = values
    }

    deinit { if let conn { LibPQ.api.finish(conn) } }

    var isConnected: Bool { conn.map { LibPQ.api.status($0) == CONNECTION_OK } ?? false }

    /// Connects (or reconnects), trying a few times so a server that is just restarting is caught.
    func connect(attempts: Int = 5) throws(DBFailure) {
        do { _ = try LibPQ.require() } catch { throw .other(error.message) }
        var lastError = ""
        for attempt in 0..<attempts {
            if let conn { LibPQ.api.finish(conn); self.conn = nil }
            let c = withCStringArray(keywords) { k in
                withCStringArray(values) { v in LibPQ.api.connectdbParams(k, v, 1) }
            }
            if let c, LibPQ.api.status(c) == CONNECTION_OK {
                conn = c
                // NOTICEs (e.g. "drop cascades to ...") would otherwise go to stderr unstructured.
                _ = LibPQ.api.setNoticeProcessor(c, { _, _ in }, nil)
                // Reply in UTC ISO format and never wait forever on a lock held by a dead session.
                _ = try execute("SET TimeZone = 'UTC'", [])
                return
            }
            lastError = c.map { trimmed(LibPQ.api.errorMessage($0)) } ?? "out of memory"
            if let c { LibPQ.api.finish(c) }
            if attempt + 1 < attempts { usleep(UInt32(100_000 << attempt)) }
        }
        throw .connectionLost("cannot connect to Postgres: \(lastError)")
    }

    func disconnect() {
        if let conn { LibPQ.api.finish(conn) }
        conn = nil
    }

    func execute(_ sql: String, _ params: [SQLValue]) throws(DBFailure) -> [[String?]] {
        guard let conn, LibPQ.api.status(conn) == CONNECTION_OK else { throw .connectionLost("not connected") }
        let texts: [String?] = params.map {
            switch $0 {
            case .null: return nil
            case .text(let s), .json(let s): return s
            case .int(let v): return String(v)
            case .bool(let b): return b ? "t" : "f"
            case .time(let m): return Micros.rfc3339(m)
            }
        }
        let res: OpaquePointer? = withOptionalCStringArray(texts) { ptrs in
            LibPQ.api.execParams(conn, sql, Int32(ptrs.count), nil, ptrs.baseAddress, nil, nil, 0)
        }
        defer { LibPQ.api.clear(res) }
        guard let res else {
            if LibPQ.api.status(conn) != CONNECTION_OK { throw .connectionLost(LibPQ.api.errorMessage(conn)) }
            throw .other(LibPQ.api.errorMessage(conn))
        }
        let status = LibPQ.api.resultStatus(res)
        if status == PGRES_TUPLES_OK {
            let nrows = LibPQ.api.ntuples(res)
            let ncols = LibPQ.api.nfields(res)
            var rows: [[String?]] = []
            rows.reserveCapacity(Int(nrows))
            for r in 0..<nrows {
                var row: [String?] = []
                row.reserveCapacity(Int(ncols))
                for c in 0..<ncols {
                    if LibPQ.api.getisnull(res, r, c) == 1 {
                        row.append(nil)
                    } else {
                        let len = Int(LibPQ.api.getlength(res, r, c))
                        let p = LibPQ.api.getvalue(res, r, c)!
                        row.append(p.withMemoryRebound(to: UInt8.self, capacity: len) {
                            String(decoding: UnsafeBufferPointer(start: $0, count: len), as: UTF8.self)
                        })
                    }
                }
                rows.append(row)
            }
            return rows
        }
        if status == PGRES_COMMAND_OK || status == PGRES_EMPTY_QUERY { return [] }
        let sqlstate = field(res, "C")
        let message = field(res, "M") ?? LibPQ.api.resultErrorMessage(res)
        // Class 08 (connection exception) and 57P01..57P03 (admin shutdown, crash shutdown, cannot connect now).
        if LibPQ.api.status(conn) != CONNECTION_OK || sqlstate == nil || sqlstate!.hasPrefix("08")
            || ["57P01", "57P02", "57P03"].contains(sqlstate!)
        {
            throw .connectionLost(message)
        }
        if sqlstate == "23505" { throw .unique(field(res, "n") ?? message) }
        throw .other("Postgres error \(sqlstate ?? "?"): \(message)")
    }

    private func field(_ res: OpaquePointer, _ code: Unicode.Scalar) -> String? {
        LibPQ.api.resultErrorField(res, Int32(code.value)).map { String(cString: $0) }
    }
}

/// Calls `body` with a NULL-terminated array of C strings that live for the call.
private func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let dup = strings.map { strdup($0) }
    defer { dup.forEach { free($0) } }
    let ptrs: [UnsafePointer<CChar>?] = dup.map { $0.map { UnsafePointer($0) } } + [nil]
    return ptrs.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Calls `body` with C strings (nil stays NULL) that live for the call.
private func withOptionalCStringArray<R>(_ strings: [String?], _ body: (UnsafeBufferPointer<UnsafePointer<CChar>?>) -> R) -> R {
    let dup = strings.map { $0.flatMap { strdup($0) } }
    defer { dup.forEach { free($0) } }
    let ptrs: [UnsafePointer<CChar>?] = dup.map { $0.map { UnsafePointer($0) } }
    return ptrs.withUnsafeBufferPointer { body($0) }
}

/// The shared ledger in Postgres, through libpq (`PQexecParams` only).
///
/// Connects on first use and applies migrations under `pg_advisory_lock`. When the server restarts,
/// the next call reconnects; a unit of work interrupted by a dropped connection is run once more from the
/// start of its transaction (the interrupted transaction never committed, or the retry detects that it did).
public final class PostgresStore: DeploymentStore, @unchecked Sendable {
    /// The connection string as given (URL or libpq keyword string).
    public let connectionString: String
    /// The schema the ledger lives in (`search_path`), when not the default.
    public let schema: String?
    private let autoMigrate: Bool
    /// libpq connection parameters (also for the listening connections of ``eventWaiter(deploymentId:)``).
    let connectionKeywords: [String]
    let connectionValues: [String]
    private let state: Mutex<PGState>
    private var ledger: Ledger { Ledger(backend: Backend(store: self)) }

    private final class PGState {
        let connection: PGConnection
        var ready = false
        var migrated = false
        init(_ c: PGConnection) { connection = c }
    }

    /// A store on the Postgres server named by `connectionString`.
    /// - Parameters:
    ///   - connectionString: `postgres://user@host:port/db?...`, `postgresql://...`, or `host=... dbname=...`.
    ///   - schema: a schema to create (if missing) and use as `search_path`; lowercase letters, digits and `_`.
    ///   - migrate: apply pending migrations on first use (default).
    /// - Throws: `.database` when `schema` is not a plain identifier.
    public init(connectionString: String, schema: String? = nil, migrate: Bool = true) throws(StoreError) {
        if let schema {
            let ok = !schema.isEmpty && schema.utf8.count <= 63
                && schema.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
                && !(schema.utf8.first! >= 0x30 && schema.utf8.first! <= 0x39)
            guard ok else { throw StoreError(.database, "schema name \(schema) must match [a-z_][a-z0-9_]{0,62}") }
        }
        self.connectionString = connectionString
        self.schema = schema
        self.autoMigrate = migrate
        var keys = ["connect_timeout", "application_name", "dbname"]
        var vals = ["10", "model-deployer", connectionString]
        if let schema {
            keys.append("options")
            vals.append("-c search_path=\(schema)")
        }
        connectionKeywords = keys
        connectionValues = vals
        state = Mutex(PGState(PGConnection(keywords: keys, values: vals)))
    }

    private final class Backend: SQLBackend, @unchecked Sendable {
        let store: PostgresStore
        init(store: PostgresStore) { self.store = store }
        var dialect: SQLDialect { .postgres }
        func run<T: Sendable>(_ mode: TxMode, _ body: (any SQLConnection, Bool) throws -> T) throws -> T {
            try store.run(mode, body)
        }
        func applyMigrations(_ migrations: [Migration]) throws {
            try store.state.withLock { st throws in
                try store.prepare(st, migrate: false)
                try PostgresStore.apply(migrations, on: st.connection)
                st.migrated = true
            }
        }
    }

    /// Connects if needed, creates the schema once, and migrates once.
    private func prepare(_ st: PGState, migrate: Bool) throws {
        if !st.connection.isConnected { try st.connection.connect() }
        if !st.ready {
            if let schema {
                // `schema` is validated as a plain identifier in init; identifiers cannot be parameters.
                do {
                    _ = try st.connection.execute("CREATE SCHEMA IF NOT EXISTS \"\(schema)\"", [])
                } catch DBFailure.unique {
                    // Another session created it at the same moment (IF NOT EXISTS is not race-free).
                }
            }
            st.ready = true
        }
        if migrate, autoMigrate, !st.migrated {
            try PostgresStore.apply(Migration.all, on: st.connection)
            st.migrated = true
        }
    }

    private func run<T: Sendable>(_ mode: TxMode, _ body: (any SQLConnection, Bool) throws -> T) throws -> T {
        try state.withLock { st throws -> T in
            var attempt = 0
            while true {
                let c = st.connection
                var inTransaction = false
                do {
                    try prepare(st, migrate: true)
                    switch mode {
                    case .single:
                        return try body(c, attempt > 0)
                    case .read, .write:
                        _ = try c.execute("BEGIN", [])
                        inTransaction = true
                        let result = try body(c, attempt > 0)
                        inTransaction = false
                        _ = try c.execute("COMMIT", [])
                        return result
                    }
                } catch DBFailure.connectionLost(let why) {
                    c.disconnect()
                    attempt += 1
                    if attempt > 1 { throw StoreError(.database, "the Postgres connection was lost twice: \(why)") }
                    continue
                } catch {
                    if inTransaction { _ = try? c.execute("ROLLBACK", []) }
                    throw error
                }
            }
        }
    }

    /// Applies pending migrations under a session advisory lock, each in its own transaction.
    static func apply(_ migrations: [Migration], on c: PGConnection) throws {
        let lockKey = "hashtext('model-deployer:migrations:' || coalesce(current_schema(), ''))"
        _ = try c.execute("SELECT pg_advisory_lock(\(lockKey))", [])
        defer { _ = try? c.execute("SELECT pg_advisory_unlock(\(lockKey))", []) }
        _ = try c.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)",
            [])
        let applied = Set(try c.execute("SELECT version FROM schema_migrations", []).compactMap { $0[0].flatMap { Int($0) } })
        for m in migrations where !applied.contains(m.version) {
            _ = try c.execute("BEGIN", [])
            do {
                for sql in m.postgres { _ = try c.execute(sql, []) }
                _ = try c.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3::timestamptz)",
                    [.int(Int64(m.version)), .text(m.name), .time(Date())])
                _ = try c.execute("COMMIT", [])
            } catch {
                _ = try? c.execute("ROLLBACK", [])
                throw error
            }
        }
    }

    /// Applies pending migrations (idempotent; safe when two agents start at once).
    public func migrate() throws(StoreError) {
        try ledger.mapped { try Backend(store: self).applyMigrations(Migration.all) }
    }

    /// The versions recorded in `schema_migrations`, ascending.
    public func appliedMigrations() throws(StoreError) -> [Int] {
        try ledger.mapped {
            try run(.single) { c, _ in
                try c.execute("SELECT version FROM schema_migrations ORDER BY version", []).compactMap { $0[0].flatMap { Int($0) } }
            }
        }
    }

    /// The server process id of the current connection (tests use it to check reconnects).
    public func backendPID() throws(StoreError) -> Int {
        try ledger.mapped { try run(.single) { c, _ in Int(try c.execute("SELECT pg_backend_pid()", [])[0][0] ?? "") ?? 0 } }
    }

    /// Runs `body` with the raw connection inside a transaction (bulk loading); retried once on a lost connection.
    func withWriteTransaction<T: Sendable>(_ body: (any SQLConnection) throws -> T) throws(StoreError) -> T {
        try ledger.mapped { try run(.write) { c, _ in try body(c) } }
    }

    /// Drops this store's schema with everything in it (tests and benchmarks clean up with it).
    /// - Throws: `.database` when the store has no schema of its own.
    public func dropSchema() throws(StoreError) {
        guard let schema else { throw StoreError(.database, "this store uses the default schema; refusing to drop it") }
        try ledger.mapped {
            try run(.single) { c, _ in _ = try c.execute("DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE", []) }
        }
        state.withLock { $0.migrated = false; $0.ready = false }
    }

    /// Refreshes the query planner's statistics (after bulk loads).
    public func analyze() throws(StoreError) {
        try ledger.mapped { try run(.single) { c, _ in _ = try c.execute("ANALYZE", []) } }
    }

    @discardableResult
    public func insert(_ record: DeploymentRecord, event: DeploymentEvent) throws(StoreError) -> DeploymentEvent {
        try ledger.insert(record, event: event)
    }
    public func deployment(id: String) throws(StoreError) -> DeploymentRecord? { try ledger.deployment(id: id) }
    public func deployment(idempotencyKey: String) throws(StoreError) -> DeploymentRecord? {
        try ledger.deployment(idempotencyKey: idempotencyKey)
    }
    @discardableResult
    public func transition(
        id: String, from expected: DeploymentStatus, to status: DeploymentStatus, changes: DeploymentChanges,
        event: DeploymentEvent
    ) throws(StoreError) -> DeploymentRecord {
        try ledger.transition(id: id, from: expected, to: status, changes: changes, event: event)
    }
    @discardableResult
    public func appendEvent(_ event: DeploymentEvent) throws(StoreError) -> DeploymentEvent { try ledger.appendEvent(event) }
    public func events(deploymentId: String) throws(StoreError) -> [DeploymentEvent] { try ledger.events(deploymentId: deploymentId) }
    public func query(_ q: HistoryQuery) throws(StoreError) -> HistoryPage { try ledger.query(q) }
    public func inFlight(modelName: String, environment: String) throws(StoreError) -> DeploymentRecord? {
        try ledger.inFlight(modelName: modelName, environment: environment)
    }
    public func deployments(withStatuses statuses: [DeploymentStatus]) throws(StoreError) -> [DeploymentRecord] {
        try ledger.deployments(withStatuses: statuses)
    }
    public func registry(modelName: String, environment: String) throws(StoreError) -> RegistryEntry? {
        try ledger.registry(modelName: modelName, environment: environment)
    }
    public func allRegistryEntries() throws(StoreError) -> [RegistryEntry] { try ledger.allRegistryEntries() }
    public func setRegistry(_ entry: RegistryEntry) throws(StoreError) { try ledger.setRegistry(entry) }
    @discardableResult
    public func clearRegistry(modelName: String, environment: String, deploymentId: String, at: Date) throws(StoreError) -> Bool {
        try ledger.clearRegistry(modelName: modelName, environment: environment, deploymentId: deploymentId, at: at)
    }
}
