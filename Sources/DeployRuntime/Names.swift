import DeployCore

/// The runtime's checks on names that reach a path, a process argument or the proxy configuration. The
/// name rule is the core's (``Names``), so the agent's validation and the runtime's never drift apart.
public enum RuntimeNames {
    /// `true` when `name` matches ``Names/pattern`` (model and environment names).
    public static func isValidName(_ name: String) -> Bool {
        Names.validate(name, field: "name") == nil
    }

    /// `true` when `version` is safe inside a quoted nginx string and a header:
    /// `^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$`.
    public static func isValidVersion(_ version: String) -> Bool {
        let b = Array(version.utf8)
        guard (1...128).contains(b.count), isAlnum(b[0]) else { return false }
        return b.allSatisfy { isAlnum($0) || "_.:+-".utf8.contains($0) }
    }

    /// `true` for a BentoML tag `name:version` (or a bare `name`) with lowercase name and version parts.
    public static func isValidTag(_ tag: String) -> Bool {
        let parts = tag.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2 else { return false }
        return parts.allSatisfy { isValidStoreComponent(String($0)) }
    }

    /// A store path component: a valid name that is not `.` or `..` (BentoML versions may be up to 63 chars).
    static func isValidStoreComponent(_ s: String) -> Bool {
        isValidName(s) && s != "." && s != ".."
    }

    /// Throws `invalid_name` unless `name` is a valid model/environment name.
    static func check(_ name: String, _ what: String) throws(RuntimeError) {
        guard isValidName(name) else {
            throw .invalidName("\(what) '\(name)' must match \(Names.pattern)")
        }
    }

    /// An nginx/file identifier for (model, environment) that cannot collide: `_` escapes every
    /// non-alphanumeric character (`_u` `_d` `_h`) and `_s` separates the two names.
    public static func routeIdentifier(modelName: String, environment: String) -> String {
        func escape(_ s: String) -> String {
            var out = ""
            for c in s.unicodeScalars {
                switch c {
                case "_": out += "_u"
                case ".": out += "_d"
                case "-": out += "_h"
                default: out.unicodeScalars.append(c)
                }
            }
            return out
        }
        return escape(modelName) + "_s" + escape(environment)
    }

    private static func isLowerAlnum(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
    }
    private static func isAlnum(_ c: UInt8) -> Bool {
        isLowerAlnum(c) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
    }
}
