#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import CSQLite
import DeployCore
import Synchronization

private let SQLITE_TRANSIENT = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One SQLite connection with a statement cache. Used only under `SQLiteStore`'s lock.
final class SQLiteConnection: SQLConnection {
    let db: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]
    var dialect: SQLDialect { .sqlite }

    init(path: String, busyTimeoutMillis: Int32) throws(DBFailure) {
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let handle else {
            let msg = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let handle { sqlite3_close_v2(handle) }
            throw .other("cannot open SQLite database \(path): \(msg)")
        }
        db = handle
        sqlite3_busy_timeout(db, busyTimeoutMillis)
        sqlite3_extended_result_codes(db, 1)
        // WAL lets readers run beside the one writer, so several agent processes can share the file.
        // Switching a new file to WAL needs an exclusive lock and SQLite does not always run the busy
        // handler for it: two agents opening a fresh ledger at once would see "database is locked".
        // Retry for as long as the busy timeout allows.
        var mode: [[String?]] = []
        var waitedMillis: Int32 = 0
        while true {
            do {
                mode = try execute("PRAGMA journal_mode = WAL", [])
                break
            } catch {
                let busy = (sqlite3_extended_errcode(db) & 0xff) == SQLITE_BUSY
                guard busy, waitedMillis < max(busyTimeoutMillis, 1000) else { throw error }
                usleep(10_000)
                waitedMillis += 10
            }
        }
        if mode.first?[0]?.lowercased() != "wal" {
            throw .other("cannot switch \(path) to WAL mode (got \(mode.first?[0] ?? "nothing"))")
        }
        _ = try execute("PRAGMA synchronous = NORMAL", [])
        _ = try execute("PRAGMA foreign_keys = ON", [])
    }

    deinit {
        for (_, s) in statements { sqlite3_finalize(s) }
        sqlite3_close_v2(db)
    }

    private func failure(_ rc: Int32) -> DBFailure {
        let msg = String(cString: sqlite3_errmsg(db))
        let ext = sqlite3_extended_errcode(db)
        if ext == 2067 /* SQLITE_CONSTRAINT_UNIQUE */ || ext == 1555 /* SQLITE_CONSTRAINT_PRIMARYKEY */ {
            return .unique(msg)
        }
        return .other("SQLite error \(rc): \(msg)")
    }

    private func statement(_ sql: String) throws(DBFailure) -> OpaquePointer {
        if let s = statements[sql] { return s }
        var stmt: OpaquePointer?
        let converted = sqlitePlaceholders(sql)
        let rc = sqlite3_prepare_v3(db, converted, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw failure(rc) }
        if statements.count > 200 {
            for (_, s) in statements { sqlite3_finalize(s) }
            statements.removeAll()
        }
        statements[sql] = stmt
        return stmt
    }

    func execute(_ sql: String, _ params: [SQLValue]) throws(DBFailure) -> [[String?]] {
        let stmt = try statement(sql)
        defer {
            sqlite3_reset(stmt)
            sqlite3_clear_bindings(stmt)
        }
        for (i, p) in params.enumerated() {
            let idx = Int32(i + 1)
            let rc: Int32
            switch p {
            case .null: rc = sqlite3_bind_null(stmt, idx)
            case .text(let s), .json(let s): rc = sqlite3_bind_text(stmt, idx, s, Int32(s.utf8.count), SQLITE_TRANSIENT)
            case .int(let v), .time(let v): rc = sqlite3_bind_int64(stmt, idx, v)
            case .bool(let b): rc = sqlite3_bind_int64(stmt, idx, b ? 1 : 0)
            }
            if rc != SQLITE_OK { throw failure(rc) }
        }
        var rows: [[String?]] = []
        let n = sqlite3_column_count(stmt)
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw failure(rc) }
            var row: [String?] = []
            row.reserveCapacity(Int(n))
            for c in 0..<n {
                if sqlite3_column_type(stmt, c) == SQLITE_NULL {
                    row.append(nil)
                } else if let p = sqlite3_column_text(stmt, c) {
                    let len = Int(sqlite3_column_bytes(stmt, c))
                    row.append(String(decoding: UnsafeBufferPointer(start: p, count: len), as: UTF8.self))
                } else {
                    row.append("")
                }
            }
            rows.append(row)
        }
        return rows
    }

    /// Runs statements that take no parameters and return nothing (transaction control).
    func exec(_ sql: String) throws(DBFailure) {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &err)
        if rc != SQLITE_OK {
            let msg = err.map { String(cString: $0) } ?? "error \(rc)"
            sqlite3_free(err)
            throw .other("SQLite error \(rc) in \(sql): \(msg)")
        }
    }
}

/// The embedded ledger: one SQLite file in WAL mode with a busy timeout, shareable by several agent processes.
///
/// The file is opened (and migrated) on first use. Timestamps are stored as integer Unix microseconds.
public final class SQLiteStore: DeploymentStore, @unchecked Sendable {
    /// The database file.
    public let path: String
    private let busyTimeoutMillis: Int32
    private let autoMigrate: Bool
    private let state = Mutex<SQLiteState>(SQLiteState())
    private var ledger: Ledger { Ledger(backend: Backend(store: self)) }

    private final class SQLiteState {
        var connection: SQLiteConnection?
        var migrated = false
    }

    /// A store on the SQLite file at `path` (created if missing).
    /// - Parameters:
    ///   - path: the database file.
    ///   - busyTimeout: how long a write waits for another process's write lock, in seconds.
    ///   - migrate: apply pending migrations on first use (default).
    public init(path: String, busyTimeout: Double = 10, migrate: Bool = true) {
        self.path = path
        self.busyTimeoutMillis = Int32(max(0, busyTimeout) * 1000)
        self.autoMigrate = migrate
    }

    private final class Backend: SQLBackend, @unchecked Sendable {
        let store: SQLiteStore
        init(store: SQLiteStore) { self.store = store }
        var dialect: SQLDialect { .sqlite }
        func run<T: Sendable>(_ mode: TxMode, _ body: (any SQLConnection, Bool) throws -> T) throws -> T {
            try store.run(mode, migrating: true, body)
        }
        func applyMigrations(_ migrations: [Migration]) throws {
            try store.state.withLock { st throws in
                let c = try store.connection(st)
                try SQLiteStore.apply(migrations, on: c)
                st.migrated = true
            }
        }
    }

    private func connection(_ st: SQLiteState) throws -> SQLiteConnection {
        if let c = st.connection { return c }
        let c = try SQLiteConnection(path: path, busyTimeoutMillis: busyTimeoutMillis)
        st.connection = c
        return c
    }

    private func run<T: Sendable>(_ mode: TxMode, migrating: Bool, _ body: (any SQLConnection, Bool) throws -> T) throws -> T {
        try state.withLock { st throws -> T in
            let c = try connection(st)
            if autoMigrate, !st.migrated {
                try SQLiteStore.apply(Migration.all, on: c)
                st.migrated = true
            }
            switch mode {
            case .single: return try body(c, false)
            case .read: try c.exec("BEGIN")
            case .write: try c.exec("BEGIN IMMEDIATE")
            }
            do {
                let result = try body(c, false)
                try c.exec("COMMIT")
                return result
            } catch {
                try? c.exec("ROLLBACK")
                throw error
            }
        }
    }

    /// Applies pending migrations in one `BEGIN IMMEDIATE` transaction: the write lock keeps a second
    /// process out until the first has finished.
    static func apply(_ migrations: [Migration], on c: SQLiteConnection) throws {
        try c.exec("BEGIN IMMEDIATE")
        do {
            _ = try c.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)", [])
            let applied = Set(try c.execute("SELECT version FROM schema_migrations", []).compactMap { $0[0].flatMap { Int($0) } })
            for m in migrations where !applied.contains(m.version) {
                for sql in m.sqlite { try c.exec(sql) }
                _ = try c.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    [.int(Int64(m.version)), .text(m.name), .time(Date())])
            }
            try c.exec("COMMIT")
        } catch {
            try? c.exec("ROLLBACK")
            throw error
        }
    }

    /// Applies pending migrations (idempotent; safe when two processes start at once).
    public func migrate() throws(StoreError) {
        try ledger.mapped { try Backend(store: self).applyMigrations(Migration.all) }
    }

    /// The versions recorded in `schema_migrations`, ascending.
    public func appliedMigrations() throws(StoreError) -> [Int] {
        try ledger.mapped {
            try run(.single, migrating: false) { c, _ in
                try c.execute("SELECT version FROM schema_migrations ORDER BY version", []).compactMap { $0[0].flatMap { Int($0) } }
            }
        }
    }

    /// Runs `body` with the raw connection inside a write transaction (bulk loading).
    func withWriteTransaction<T: Sendable>(_ body: (any SQLConnection) throws -> T) throws(StoreError) -> T {
        try ledger.mapped { try run(.write, migrating: true) { c, _ in try body(c) } }
    }

    /// Refreshes the query planner's statistics (after bulk loads).
    public func analyze() throws(StoreError) {
        try ledger.mapped { try run(.single, migrating: true) { c, _ in _ = try c.execute("ANALYZE", []) } }
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
