import Testing
import JSON

@Suite struct JSONParsingTests {
    @Test func parsesEveryKind() throws {
        let v = try JSONValue.parse(#" {"a": [1, -2.5, true, false, null, "x\u00e9\n"], "b": {}} "#)
        #expect(v["a"] == .array([.int(1), .double(-2.5), .bool(true), .bool(false), .null, .string("xé\n")]))
        #expect(v["b"] == .object([:]))
    }

    @Test func writesSortedCompactAndEscaped() {
        let v: JSONValue = ["z": 1, "a": ["q\"\\\u{01}", 1.5, 1.0], "m": nil]
        #expect(v.jsonString == #"{"a":["q\"\\\u0001",1.5,1.0],"m":null,"z":1}"#)
    }

    @Test func roundTripsUnicodeAndSurrogates() throws {
        let v = try JSONValue.parse(#""\ud83d\ude00 ok""#)
        #expect(v == .string("😀 ok"))
        #expect(try JSONValue.parse(v.jsonString) == v)
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "tru", "\"\\x\"", "\"\u{01}\"", "[1] 2", "\"\\ud800\"", "{\"a\":1,}",
    ])
    func rejectsInvalid(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test func rejectsInvalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x22, 0xFF, 0xFE, 0x22]) }
    }

    @Test func refusesDeepNesting() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(deep) }
    }

    @Test func keepsLargeIntegersExact() throws {
        #expect(try JSONValue.parse("9223372036854775807") == .int(Int64.max))
        #expect(try JSONValue.parse("-9223372036854775808") == .int(Int64.min))
        #expect(try JSONValue.parse("9223372036854775808") == .double(9223372036854775808))
        #expect(try JSONValue.parse("1e3") == .double(1000))
    }
}
