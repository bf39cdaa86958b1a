import JSON

/// Validation of every name that may reach a path, a process argument, a proxy config or SQL.
///
/// Model names, versions and environments follow BentoML's own rule `^[a-z0-9][a-z0-9_.-]{0,62}$`,
/// checked byte by byte (no regex engine). Validators return a human message, or `nil` when valid.
public enum Names {
    /// The pattern every model name, version and environment name must match, as shown in messages.
    public static let pattern = "^[a-z0-9][a-z0-9_.-]{0,62}$"

    /// Checks `s` against ``pattern``.
    /// - Parameters:
    ///   - s: the value to check.
    ///   - field: the wire name of the field, used in the message (e.g. `model_name`).
    /// - Returns: a message saying what is wrong, or `nil` when `s` is valid.
    public static func validate(_ s: String, field: String) -> String? {
        let bytes = Array(s.utf8)
        if bytes.isEmpty { return "\(field) must not be empty (pattern \(pattern))" }
        if bytes.count > 63 { return "\(field) is \(bytes.count) bytes long; at most 63 are allowed (pattern \(pattern))" }
        if !isLowerAlnum(bytes[0]) {
            return "\(field) \(quoted(s)) must start with a lower-case letter or a digit (pattern \(pattern))"
        }
        for b in bytes.dropFirst() where !(isLowerAlnum(b) || b == UInt8(ascii: "_") || b == UInt8(ascii: ".") || b == UInt8(ascii: "-")) {
            return "\(field) \(quoted(s)) may contain only a-z, 0-9, '_', '.' and '-' (pattern \(pattern))"
        }
        return nil
    }

    /// Checks an environment name (same rule as model names).
    public static func validateEnvironment(_ s: String, field: String = "environment") -> String? {
        validate(s, field: field)
    }

    /// Checks a BentoML tag `name:version`; both halves follow ``pattern``.
    public static func validateTag(_ s: String, field: String) -> String? {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return "\(field) \(quoted(s)) must be a tag of the form name:version" }
        if let m = validate(String(parts[0]), field: "\(field) name") { return m }
        if let m = validate(String(parts[1]), field: "\(field) version") { return m }
        return nil
    }

    /// Checks a person or agent name (`requested_by`, `approver`): 1 to 128 characters, no control characters.
    public static func validateActor(_ s: String, field: String) -> String? {
        if s.isEmpty { return "\(field) must not be empty" }
        let count = s.count
        if count > 128 { return "\(field) is \(count) characters long; at most 128 are allowed" }
        for u in s.unicodeScalars where u.properties.generalCategory == .control || u.value == 0x2028 || u.value == 0x2029 {
            return "\(field) must not contain control characters"
        }
        if s.allSatisfy({ $0.isWhitespace }) { return "\(field) must not be blank" }
        return nil
    }

    /// Checks a BentoML API name used in a smoke test: a Python identifier of at most 64 characters.
    public static func validateAPI(_ s: String, field: String = "api") -> String? {
        let bytes = Array(s.utf8)
        func ok(_ b: UInt8, first: Bool) -> Bool {
            (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || b == UInt8(ascii: "_") || (!first && b >= 0x30 && b <= 0x39)
        }
        guard !bytes.isEmpty, bytes.count <= 64, ok(bytes[0], first: true), bytes.dropFirst().allSatisfy({ ok($0, first: false) }) else {
            return "\(field) \(quoted(s)) must be an identifier (letters, digits, '_'; not starting with a digit; at most 64)"
        }
        return nil
    }

    private static func isLowerAlnum(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
    }

    /// The value as a JSON string literal (control characters escaped), cut to 80 characters.
    static func quoted(_ s: String) -> String {
        let cut = s.count > 80 ? String(s.prefix(80)) + "..." : s
        return JSONValue.string(cut).jsonString
    }
}
