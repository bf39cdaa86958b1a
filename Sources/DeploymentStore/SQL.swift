#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON

/// A value bound to a statement parameter. Every value reaches the database as a parameter, never as SQL text.
enum SQLValue {
    case null
    case text(String)
    case int(Int64)
    case bool(Bool)
    /// Unix microseconds: an integer in SQLite, an RFC 3339 `timestamptz` literal in Postgres.
    case time(Int64)
    /// JSON text (jsonb in Postgres).
    case json(String)

    static func text(_ s: String?) -> SQLValue { s.map { .text($0) } ?? .null }
    static func time(_ d: Date?) -> SQLValue { d.map { .time(Micros.from($0)) } ?? .null }
    static func json(_ v: JSONValue?) -> SQLValue { v.map { .json($0.jsonString) } ?? .null }
}

/// A database failure, classified so the ledger can react (constraint names, lost connections).
enum DBFailure: Error, CustomStringConvertible {
    /// A unique constraint failed; the payload names it (Postgres constraint name or SQLite message).
    case unique(String)
    /// The connection to the server is gone (Postgres): the transaction did not commit, or its fate is unknown.
    case connectionLost(String)
    /// Anything else.
    case other(String)

    var description: String {
        switch self {
        case .unique(let s): return "unique constraint violated: \(s)"
        case .connectionLost(let s): return "connection lost: \(s)"
        case .other(let s): return s
        }
    }
}

/// The two SQL dialects the ledger speaks. Statements are written with `$n` placeholders (and `$n::type`
/// casts for Postgres); SQLite gets them rewritten to `?n`.
enum SQLDialect: Sendable {
    case sqlite, postgres

    /// The select expression that yields a timestamp column as integer Unix microseconds.
    func micros(_ column: String) -> String {
        switch self {
        case .sqlite: return column
        case .postgres: return "(extract(epoch from \(column)) * 1000000)::int8"
        }
    }
}

/// One open connection that runs parameterized statements and returns rows of text (nil = NULL).
protocol SQLConnection: AnyObject {
    var dialect: SQLDialect { get }
    func execute(_ sql: String, _ params: [SQLValue]) throws(DBFailure) -> [[String?]]
}

/// Rewrites `$n` and `$n::type` placeholders to SQLite's `?n`. Statement text is ours, never user data.
func sqlitePlaceholders(_ sql: String) -> String {
    var out = [UInt8]()
    let b = Array(sql.utf8)
    out.reserveCapacity(b.count)
    var i = 0
    func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    func isIdent(_ c: UInt8) -> Bool { isDigit(c) || (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == 0x5F }
    while i < b.count {
        if b[i] == UInt8(ascii: "$"), i + 1 < b.count, isDigit(b[i + 1]) {
            out.append(UInt8(ascii: "?"))
            i += 1
            while i < b.count, isDigit(b[i]) { out.append(b[i]); i += 1 }
            if i + 1 < b.count, b[i] == UInt8(ascii: ":"), b[i + 1] == UInt8(ascii: ":") {
                i += 2
                while i < b.count, isIdent(b[i]) { i += 1 }
                if i + 1 < b.count, b[i] == UInt8(ascii: "["), b[i + 1] == UInt8(ascii: "]") { i += 2 }
            }
        } else {
            out.append(b[i]); i += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}

/// Postgres and SQLite both refuse or truncate NUL in text; the ledger rejects it up front.
func checkNoNUL(_ fields: [(String, String?)]) throws(StoreError) {
    for (name, value) in fields {
        if let value, value.utf8.contains(0) {
            throw StoreError(.database, "\(name) contains a NUL character, which the ledger cannot store")
        }
    }
}
