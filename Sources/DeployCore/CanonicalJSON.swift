import JSON

/// The JSON Canonicalization Scheme (RFC 8785): the one byte sequence a signature or a hash covers.
///
/// Signed requests, signed approvals and the event hash chain are all computed over this form, so any
/// client (Python, `jq`, another language) that produces RFC 8785 bytes from the same value gets the same
/// digest: no whitespace, object members sorted by their UTF-16 code units, strings escaped as
/// ECMAScript's `JSON.stringify` does, numbers written as ECMAScript's `Number.prototype.toString`.
public enum CanonicalJSON {
    /// The canonical bytes of `value`.
    public static func bytes(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        write(value, to: &out)
        return out
    }

    /// The canonical text of `value`.
    public static func string(_ value: JSONValue) -> String {
        String(decoding: bytes(value), as: UTF8.self)
    }

    static func write(_ v: JSONValue, to out: inout [UInt8]) {
        switch v {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): out.append(contentsOf: number(i).utf8)
        case .double(let d): out.append(contentsOf: number(d).utf8)
        case .string(let s): writeString(s, to: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, e) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(e, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            let keys = o.keys.sorted { Array($0.utf16).lexicographicallyPrecedes(Array($1.utf16)) }
            for (i, k) in keys.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                writeString(k, to: &out)
                out.append(UInt8(ascii: ":"))
                write(o[k]!, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeString(_ s: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20:
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(b >> 4)], hex[Int(b & 0xF)]])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// An integer as RFC 8785 writes it: exact below 2^53, as the nearest double beyond (every JSON
    /// number is an IEEE double there).
    static func number(_ i: Int64) -> String {
        if i.magnitude <= 9_007_199_254_740_992 { return String(i) }
        return number(Double(i))
    }

    /// A double as ECMAScript's `Number.prototype.toString` writes it, from the shortest round-trip digits
    /// (which Swift's `description` already finds). Non-finite values have no JSON form and become `null`.
    static func number(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == 0 { return "0" }
        let (negative, digits, exponent) = decompose(d)
        // value = 0.d1d2...dk x 10^n
        let k = digits.count
        let n = exponent
        var s: String
        if k <= n && n <= 21 {
            s = digits + String(repeating: "0", count: n - k)
        } else if 0 < n && n <= 21 {
            s = String(digits.prefix(n)) + "." + String(digits.dropFirst(n))
        } else if -6 < n && n <= 0 {
            s = "0." + String(repeating: "0", count: -n) + digits
        } else {
            let e = n - 1
            s = String(digits.prefix(1)) + (k > 1 ? "." + String(digits.dropFirst()) : "") + "e" + (e >= 0 ? "+" : "-") + String(e.magnitude)
        }
        return negative ? "-" + s : s
    }

    /// The shortest round-trip digits of `d` (no leading or trailing zeros) and `n` with d = 0.digits x 10^n.
    static func decompose(_ d: Double) -> (negative: Bool, digits: String, exponent: Int) {
        var text = Array(d.magnitude.description)
        var exp = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exp = Int(String(text[(e + 1)...])) ?? 0
            text = Array(text[..<e])
        }
        let point = text.firstIndex(of: ".") ?? text.count
        var digits = Array(text[..<point]) + (point < text.count ? Array(text[(point + 1)...]) : [])
        var n = point + exp
        while let f = digits.first, f == "0" {
            digits.removeFirst()
            n -= 1
        }
        while let l = digits.last, l == "0" { digits.removeLast() }
        return (d < 0, String(digits), n)
    }
}
