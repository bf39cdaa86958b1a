import JSON

/// Why a JSON document (a plan, a policy) does not have the expected shape.
public struct JSONShapeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where in the document, e.g. `config.rollback.bake_seconds` (empty for the root).
    public var path: String
    /// What is wrong, in a sentence.
    public var message: String

    /// An error at `path`.
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Typed access to the members of a JSON object, with errors that name the path.
struct ObjectReader {
    let members: [String: JSONValue]
    let path: String

    init(_ value: JSONValue, path: String = "") throws(JSONShapeError) {
        guard case .object(let m) = value else {
            throw JSONShapeError(path: path, message: "expected an object, got \(value.typeName)")
        }
        members = m
        self.path = path
    }

    func at(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The member, or nil when it is missing or `null`.
    func value(_ key: String) -> JSONValue? {
        guard let v = members[key], !v.isNull else { return nil }
        return v
    }

    func has(_ key: String) -> Bool { members[key] != nil }

    func require(_ key: String) throws(JSONShapeError) -> JSONValue {
        guard let v = value(key) else { throw JSONShapeError(path: at(key), message: "is required") }
        return v
    }

    func string(_ key: String) throws(JSONShapeError) -> String {
        let v = try require(key)
        guard let s = v.stringValue else { throw mismatch(key, "a string", v) }
        return s
    }

    func optionalString(_ key: String) throws(JSONShapeError) -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.stringValue else { throw mismatch(key, "a string", v) }
        return s
    }

    func int(_ key: String) throws(JSONShapeError) -> Int {
        let v = try require(key)
        guard let i = v.intValue, let n = Int(exactly: i) else { throw mismatch(key, "an integer", v) }
        return n
    }

    func optionalInt(_ key: String) throws(JSONShapeError) -> Int? {
        guard value(key) != nil else { return nil }
        return try int(key)
    }

    func optionalInt64(_ key: String) throws(JSONShapeError) -> Int64? {
        guard let v = value(key) else { return nil }
        guard let i = v.intValue else { throw mismatch(key, "an integer", v) }
        return i
    }

    func double(_ key: String) throws(JSONShapeError) -> Double {
        let v = try require(key)
        guard let d = v.doubleValue, d.isFinite else { throw mismatch(key, "a number", v) }
        return d
    }

    func optionalDouble(_ key: String) throws(JSONShapeError) -> Double? {
        guard value(key) != nil else { return nil }
        return try double(key)
    }

    func bool(_ key: String) throws(JSONShapeError) -> Bool {
        let v = try require(key)
        guard let b = v.boolValue else { throw mismatch(key, "a boolean", v) }
        return b
    }

    func optionalBool(_ key: String) throws(JSONShapeError) -> Bool? {
        guard value(key) != nil else { return nil }
        return try bool(key)
    }

    func array(_ key: String) throws(JSONShapeError) -> [JSONValue] {
        let v = try require(key)
        guard let a = v.arrayValue else { throw mismatch(key, "an array", v) }
        return a
    }

    func optionalArray(_ key: String) throws(JSONShapeError) -> [JSONValue]? {
        guard value(key) != nil else { return nil }
        return try array(key)
    }

    func strings(_ key: String) throws(JSONShapeError) -> [String] {
        var out: [String] = []
        for (i, e) in try array(key).enumerated() {
            guard let s = e.stringValue else {
                throw JSONShapeError(path: "\(at(key))[\(i)]", message: "expected a string, got \(e.typeName)")
            }
            out.append(s)
        }
        return out
    }

    func optionalStrings(_ key: String) throws(JSONShapeError) -> [String]? {
        guard value(key) != nil else { return nil }
        return try strings(key)
    }

    func object(_ key: String) throws(JSONShapeError) -> ObjectReader {
        try ObjectReader(try require(key), path: at(key))
    }

    func optionalObject(_ key: String) throws(JSONShapeError) -> ObjectReader? {
        guard let v = value(key) else { return nil }
        return try ObjectReader(v, path: at(key))
    }

    /// Refuses members outside `allowed` (a typo in a policy must not silently weaken it).
    func rejectUnknown(_ allowed: Set<String>) throws(JSONShapeError) {
        for key in members.keys.sorted() where !allowed.contains(key) {
            throw JSONShapeError(path: at(key), message: "unknown field (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    private func mismatch(_ key: String, _ expected: String, _ got: JSONValue) -> JSONShapeError {
        JSONShapeError(path: at(key), message: "expected \(expected), got \(got.typeName)")
    }
}
