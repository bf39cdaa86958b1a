import DeployCore
import JSON
import Testing

/// RFC 8785: what a signature or a hash covers must be byte-identical in every client.
@Suite struct CanonicalJSONTests {
    /// Number forms from RFC 8785 appendix B and ECMAScript's Number.prototype.toString.
    @Test(arguments: [
        (0.0, "0"), (-0.0, "0"), (5e-324, "5e-324"), (-5e-324, "-5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"), (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"), (9.999999999999997e22, "9.999999999999997e+22"),
        (1e23, "1e+23"), (999999999999999700000.0, "999999999999999700000"), (1e21, "1e+21"),
        (0.000001, "0.000001"), (9.999999999999997e-7, "9.999999999999997e-7"), (1e-7, "1e-7"),
        (333333333.3333333, "333333333.3333333"), (0.1, "0.1"), (-1.5, "-1.5"), (5.0, "5"), (100.0, "100"),
        (123.456, "123.456"), (0.5, "0.5"),
    ])
    func numbers(value: Double, text: String) {
        #expect(CanonicalJSON.string(.double(value)) == text)
    }

    @Test func integersAreExactUpTo2To53() {
        #expect(CanonicalJSON.string(.int(9_007_199_254_740_992)) == "9007199254740992")
        #expect(CanonicalJSON.string(.int(-42)) == "-42")
        // Beyond 2^53 a JSON number is a double: written as the double it is.
        #expect(CanonicalJSON.string(.int(1_000_000_000_000_000_000)) == "1000000000000000000")
        #expect(CanonicalJSON.string(.int(Int64.max)) == "9223372036854776000")
    }

    /// RFC 8785 section 3.2.3: members sorted by UTF-16 code units, so U+1F600 (D83D DE00) sorts before U+FB33.
    @Test func membersSortByUTF16CodeUnits() {
        let v: JSONValue = [
            "\u{20ac}": "Euro Sign", "\r": "Carriage Return", "\u{fb33}": "Hebrew Letter Dalet With Dagesh", "1": "One",
            "\u{1F600}": "Emoji: Grinning Face", "\u{0080}": "Control", "\u{00f6}": "Latin Small Letter O With Diaeresis",
        ]
        let text = CanonicalJSON.string(v)
        let order = ["\"\\r\"", "\"1\"", "\"\u{0080}\"", "\"\u{00f6}\"", "\"\u{20ac}\"", "\"\u{1F600}\"", "\"\u{fb33}\""]
        let positions = order.map { text.range(of: $0)?.lowerBound }
        #expect(positions.allSatisfy { $0 != nil })
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted())
    }

    @Test func stringsEscapeAsJSONStringify() {
        #expect(CanonicalJSON.string(.string("a\"b\\c\u{08}\u{0C}\n\r\t\u{01}\u{1F}/é€")) == "\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0001\\u001f/é€\"")
    }

    @Test func noWhitespaceAndNestedSorting() {
        let v: JSONValue = ["b": [1, 2.5, .null, true], "a": ["z": "x", "y": false]]
        #expect(CanonicalJSON.string(v) == #"{"a":{"y":false,"z":"x"},"b":[1,2.5,null,true]}"#)
    }

    /// What the ledger stores and reads back (including Postgres' jsonb number forms) canonicalises the same.
    @Test func survivesAJSONRoundTrip() throws {
        let v: JSONValue = ["p95": 12.5, "tiny": 1e-7, "big": 1e20, "whole": 5.0, "n": 3]
        let reparsed = try JSONValue.parse(v.jsonString)
        #expect(CanonicalJSON.bytes(reparsed) == CanonicalJSON.bytes(v))
        let jsonbStyle = try JSONValue.parse(#"{"big": 100000000000000000000, "n": 3, "p95": 12.5, "tiny": 0.0000001, "whole": 5.0}"#)
        #expect(CanonicalJSON.bytes(jsonbStyle) == CanonicalJSON.bytes(v))
    }
}
