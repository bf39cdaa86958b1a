#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import JSON
import JSONRPC

/// Typed, strict access to a method's params: every error names the offending field.
struct Params {
    let members: [String: JSONValue]

    /// Accepts an object (or absent params) whose keys are all in `allowed` (`_meta` is always allowed).
    init(_ params: JSONValue?, allowed: Set<String>) throws(RPCError) {
        switch params {
        case nil, .null?: members = [:]
        case .object(let o)?: members = o
        case .array?: throw RPCError.invalidParams("params must be an object with named members (by-position params are not supported)")
        default: throw RPCError.invalidParams("params must be an object")
        }
        for key in members.keys.sorted() where !allowed.contains(key) && key != "_meta" {
            throw RPCError.invalidParams("unknown param '\(key)'; expected some of: \(allowed.sorted().joined(separator: ", "))", field: key)
        }
    }

    func has(_ key: String) -> Bool {
        if let v = members[key], !v.isNull { return true }
        return false
    }

    func string(_ key: String) throws(RPCError) -> String? {
        guard let v = members[key], !v.isNull else { return nil }
        guard case .string(let s) = v else { throw RPCError.invalidParams("\(key) must be a string, not \(v.typeName)", field: key) }
        return s
    }

    func required(_ key: String) throws(RPCError) -> String {
        guard let s = try string(key) else { throw RPCError.invalidParams("\(key) is required", field: key) }
        guard !s.isEmpty else { throw RPCError.invalidParams("\(key) must not be empty", field: key) }
        return s
    }

    /// A name or version that will reach a path, a process argument or a proxy config.
    func name(_ key: String, required isRequired: Bool = true) throws(RPCError) -> String? {
        let s = isRequired ? try required(key) : try string(key)
        guard let s else { return nil }
        if let problem = Names.validate(s, field: key) { throw RPCError.invalidParams(problem, field: key) }
        return s
    }

    func actor(_ key: String, required isRequired: Bool = true) throws(RPCError) -> String? {
        let s = isRequired ? try required(key) : try string(key)
        guard let s else { return nil }
        if let problem = Names.validateActor(s, field: key) { throw RPCError.invalidParams(problem, field: key) }
        return s
    }

    func bool(_ key: String) throws(RPCError) -> Bool? {
        guard let v = members[key], !v.isNull else { return nil }
        guard case .bool(let b) = v else { throw RPCError.invalidParams("\(key) must be a boolean, not \(v.typeName)", field: key) }
        return b
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws(RPCError) -> Int? {
        guard let v = members[key], !v.isNull else { return nil }
        guard let i = v.intValue, let n = Int(exactly: i) else { throw RPCError.invalidParams("\(key) must be an integer, not \(v.typeName)", field: key) }
        guard range.contains(n) else {
            throw RPCError.invalidParams("\(key) must be between \(range.lowerBound) and \(range.upperBound)", field: key)
        }
        return n
    }

    func number(_ key: String, in object: [String: JSONValue], path: String) throws(RPCError) -> Double? {
        guard let v = object[key], !v.isNull else { return nil }
        guard let d = v.doubleValue, d.isFinite, d >= 0 else { throw RPCError.invalidParams("\(path) must be a finite non-negative number", field: path) }
        return d
    }

    /// A non-negative number that must become an `Int` (MiB, GPUs): refused, never trapped, when it is not
    /// finite, too large, or (without `roundingUp`) fractional.
    func wholeNumber(_ key: String, in object: [String: JSONValue], path: String, roundingUp: Bool) throws(RPCError) -> Int? {
        guard let d = try number(key, in: object, path: path) else { return nil }
        let whole = roundingUp ? d.rounded(.up) : d
        // 2^53: beyond it a Double no longer holds every integer, and no host has that much of anything.
        guard d.isFinite, whole <= 9_007_199_254_740_992, let n = Int(exactly: whole) else {
            throw RPCError.invalidParams(roundingUp ? "\(path) is out of range" : "\(path) must be a whole number in range", field: path)
        }
        return n
    }

    func time(_ key: String) throws(RPCError) -> Date? {
        guard let s = try string(key) else { return nil }
        guard let d = RFC3339.parse(s) else {
            throw RPCError.invalidParams("\(key) must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z", field: key)
        }
        return d
    }

    func enumValue<E: RawRepresentable>(_ key: String, _ type: E.Type) throws(RPCError) -> E? where E.RawValue == String {
        guard let s = try string(key) else { return nil }
        guard let v = E(rawValue: s) else { throw RPCError.invalidParams("\(key) has an unknown value '\(s)'", field: key) }
        return v
    }
}

/// RFC 3339 timestamps on the wire: UTC with milliseconds.
enum RFC3339 {
    static func format(_ d: Date) -> String {
        d.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    static func format(_ d: Date?) -> JSONValue {
        d.map { .string(format($0)) } ?? .null
    }

    static func parse(_ s: String) -> Date? {
        if let d = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(s) { return d }
        return try? Date.ISO8601FormatStyle().parse(s)
    }
}
