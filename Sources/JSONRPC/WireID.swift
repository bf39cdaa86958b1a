import JSON

/// A request id as it came on the wire, so that the answer echoes exactly the text the peer sent.
///
/// `value` is what handlers see and what ids compare by; `raw` is the number's text when `value`
/// would write it differently (`-0`, `1e400`, `18446744073709551616`, `1.50`). It is nil for strings,
/// null and integers in canonical form, which keeps the common case (small integer ids) free of
/// any extra allocation.
struct WireID: Hashable, Sendable {
    var value: JSONValue
    var raw: String?

    static let null = WireID(value: .null, raw: nil)

    /// Appends the id's JSON text.
    @inline(__always) func write(to out: inout [UInt8]) {
        if let raw { out.append(contentsOf: raw.utf8) } else { value.write(to: &out) }
    }

    /// The id's JSON text, for messages.
    var text: String { raw ?? value.jsonString }
}
