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

    /// The most bytes a person or agent name may take (the contract's `Actor.maxLength`).
    public static let actorMaxBytes = 256

    /// Checks a person or agent name (`requested_by`, `approver`): 1 to 256 UTF-8 bytes and at most 128
    /// characters, not blank, and free of anything that makes two names look alike or one look like
    /// another: control characters, format characters (zero-width spaces and joiners, bidi overrides and
    /// isolates, the BOM), other default-ignorable code points, line and paragraph separators, private-use
    /// and unassigned code points.
    public static func validateActor(_ s: String, field: String) -> String? {
        if s.isEmpty { return "\(field) must not be empty" }
        let bytes = s.utf8.count
        if bytes > actorMaxBytes { return "\(field) is \(bytes) bytes long; at most \(actorMaxBytes) are allowed" }
        let count = s.count
        if count > 128 { return "\(field) is \(count) characters long; at most 128 are allowed" }
        for u in s.unicodeScalars {
            let props = u.properties
            switch props.generalCategory {
            case .control, .lineSeparator, .paragraphSeparator:
                return "\(field) must not contain control characters (U+\(hex(u)))"
            case .format:
                return "\(field) must not contain invisible or bidirectional formatting characters (U+\(hex(u)))"
            case .privateUse, .unassigned, .surrogate:
                return "\(field) must not contain private-use or unassigned code points (U+\(hex(u)))"
            default:
                if props.isDefaultIgnorableCodePoint {
                    return "\(field) must not contain invisible characters (U+\(hex(u)))"
                }
            }
        }
        if s.allSatisfy({ $0.isWhitespace }) { return "\(field) must not be blank" }
        return nil
    }

    /// The form in which two identities are compared: `Alice`, `alice`, ` alice ` and a differently
    /// composed `é` are one person.
    ///
    /// Canonically equivalent strings already compare equal in Swift; on top of that this trims surrounding
    /// whitespace, drops default-ignorable code points (names in an old ledger may predate
    /// ``validateActor(_:field:)``) and folds case (upper- then lower-casing, which maps `ß` and `SS`,
    /// `ς` and `Σ` together, as Unicode case folding does).
    public static func identityKey(_ s: String) -> String {
        var kept = String.UnicodeScalarView()
        for u in s.unicodeScalars where !u.properties.isDefaultIgnorableCodePoint && u.properties.generalCategory != .format {
            kept.append(u)
        }
        let trimmed = String(kept).trimmingCharacters(while: { $0.isWhitespace })
        return trimmed.uppercased().lowercased()
    }

    /// Whether `a` and `b` name the same person (see ``identityKey(_:)``).
    public static func sameIdentity(_ a: String, _ b: String) -> Bool {
        identityKey(a) == identityKey(b)
    }

    /// A smoke test's API as BentoML names it: the route form `/classify` (as BentoML's docs show it) becomes
    /// `classify`; anything else is returned unchanged for ``validateAPI(_:field:)`` to judge.
    public static func apiName(_ s: String) -> String {
        s.hasPrefix("/") ? String(s.dropFirst()) : s
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

    private static func hex(_ u: Unicode.Scalar) -> String {
        let h = String(u.value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - h.count)) + h
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

extension String {
    /// The string without leading and trailing characters matching `drop`.
    func trimmingCharacters(while drop: (Character) -> Bool) -> String {
        guard let first = firstIndex(where: { !drop($0) }), let last = lastIndex(where: { !drop($0) }) else { return "" }
        return String(self[first...last])
    }
}
