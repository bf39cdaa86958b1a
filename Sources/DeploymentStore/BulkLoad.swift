#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import JSON

/// An interval during which a deployment was live for its model and environment (`ml_live_intervals`).
public struct LiveInterval: Sendable, Hashable {
    public var modelName: String
    public var environment: String
    public var deploymentId: String
    public var liveFrom: Date
    /// nil while it is still live.
    public var liveUntil: Date?

    public init(modelName: String, environment: String, deploymentId: String, liveFrom: Date, liveUntil: Date? = nil) {
        self.modelName = modelName
        self.environment = environment
        self.deploymentId = deploymentId
        self.liveFrom = liveFrom
        self.liveUntil = liveUntil
    }
}

/// A deployment with its whole event history, for bulk loading (imports, benchmarks).
public struct DeploymentHistory: Sendable {
    public var record: DeploymentRecord
    /// Stored with seq 1, 2, 3, ... in this order.
    public var events: [DeploymentEvent]

    public init(record: DeploymentRecord, events: [DeploymentEvent]) {
        self.record = record
        self.events = events
    }
}

extension Ledger {
    static func historyParams(_ h: DeploymentHistory) -> ([SQLValue], [[SQLValue]]) {
        var d = params(h.record)
        d[d.count - 1] = .int(Int64(h.events.count))
        let evs = h.events.enumerated().map { i, e in
            var e = e
            e.deploymentId = h.record.deploymentId
            e.seq = i + 1
            return params(e)
        }
        return (d, evs)
    }

    static func intervalParams(_ i: LiveInterval) -> [SQLValue] {
        [.text(i.modelName), .text(i.environment), .time(i.liveFrom), .time(i.liveUntil), .text(i.deploymentId)]
    }

    static let intervalColumns = ["model_name", "environment", "live_from", "live_until", "deployment_id"]
}

extension SQLiteStore {
    /// Inserts deployments with their events, and live intervals, in one transaction through prepared
    /// statements. Bypasses the in-flight check's friendly error: a conflict fails the whole batch.
    public func bulkLoad(_ histories: [DeploymentHistory], liveIntervals: [LiveInterval] = []) throws(StoreError) {
        let ledger = Ledger(backend: DummyBackend(dialect: .sqlite))
        let dSQL = ledger.insertDeploymentSQL
        let eSQL = ledger.insertEventSQL
        let iSQL = "INSERT INTO ml_live_intervals (\(Ledger.intervalColumns.joined(separator: ", "))) VALUES ($1, $2, $3, $4, $5)"
        try withWriteTransaction { c in
            for h in histories {
                let (d, evs) = Ledger.historyParams(h)
                _ = try c.execute(dSQL, d)
                for e in evs { _ = try c.execute(eSQL, e) }
            }
            for i in liveIntervals { _ = try c.execute(iSQL, Ledger.intervalParams(i)) }
        }
    }
}

extension PostgresStore {
    /// Inserts deployments with their events, and live intervals, in one transaction: one
    /// `INSERT ... SELECT FROM unnest($1::text[], ...)` per table and chunk, every column one array parameter.
    public func bulkLoad(_ histories: [DeploymentHistory], liveIntervals: [LiveInterval] = []) throws(StoreError) {
        let ledger = Ledger(backend: DummyBackend(dialect: .postgres))
        var dRows: [[SQLValue]] = []
        var eRows: [[SQLValue]] = []
        dRows.reserveCapacity(histories.count)
        for h in histories {
            let (d, evs) = Ledger.historyParams(h)
            dRows.append(d)
            eRows.append(contentsOf: evs)
        }
        let dCols = Ledger.deploymentColumns + ["last_seq"]
        let iRows = liveIntervals.map(Ledger.intervalParams)
        let statements = [
            ("ml_deployments", dCols, dRows), ("ml_deployment_events", Ledger.eventColumns, eRows),
            ("ml_live_intervals", Ledger.intervalColumns, iRows),
        ].filter { !$0.2.isEmpty }.map { table, cols, rows in
            let types = cols.map { ledger.arrayType($0) }
            let sql = "INSERT INTO \(table) (\(cols.joined(separator: ", "))) SELECT * FROM unnest("
                + types.enumerated().map { "$\($0.offset + 1)::\($0.element)[]" }.joined(separator: ", ") + ")"
            let params = (0..<cols.count).map { col in SQLValue.text(Self.arrayLiteral(rows.lazy.map { $0[col] })) }
            return (sql, params)
        }
        try withWriteTransaction { c in
            for (sql, params) in statements { _ = try c.execute(sql, params) }
        }
    }

    /// A Postgres array literal: `{"a","b\"c",NULL}`.
    static func arrayLiteral<S: Sequence>(_ values: S) -> String where S.Element == SQLValue {
        var out = [UInt8]()
        out.append(UInt8(ascii: "{"))
        var first = true
        for v in values {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            let s: String?
            switch v {
            case .null: s = nil
            case .text(let t), .json(let t): s = t
            case .int(let i): s = String(i)
            case .bool(let b): s = b ? "t" : "f"
            case .time(let m): s = Micros.rfc3339(m)
            }
            guard let s else { out.append(contentsOf: "NULL".utf8); continue }
            out.append(UInt8(ascii: "\""))
            for b in s.utf8 {
                if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
                out.append(b)
            }
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}

/// A backend that runs nothing: lets the bulk loaders reuse the ledger's statement text.
private final class DummyBackend: SQLBackend, @unchecked Sendable {
    let dialect: SQLDialect
    init(dialect: SQLDialect) { self.dialect = dialect }
    func run<T: Sendable>(_ mode: TxMode, _ body: (any SQLConnection, Bool) throws -> T) throws -> T {
        throw StoreError(.database, "not connected")
    }
    func applyMigrations(_ migrations: [Migration]) throws {}
}
