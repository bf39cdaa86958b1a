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

@Suite struct JSONTopLevelTests {
    func members(_ text: String) throws -> ([JSONMember], String?) {
        guard case .members(let m, let idText) = try JSONValue.parseTopLevel(Array(text.utf8)) else {
            Issue.record("not an object: \(text)")
            return ([], nil)
        }
        return (m, idText)
    }

    @Test(arguments: ["-0", "1e400", "18446744073709551616", "123456789012345678901234567890", "1.50", "1E2", "-0.0", "2.5"])
    func keepsTheTextOfAnIdTheValueCannotWriteBack(text: String) throws {
        let (m, idText) = try members("{\"x\":\(text), \"id\": \(text) }")
        #expect(m.map(\.key) == ["x", "id"])
        #expect(idText == text)
    }

    @Test(arguments: ["0", "7", "-1", "9223372036854775807", "-9223372036854775808", "\"1e400\"", "null"])
    func keepsNoTextForCanonicalIntegersAndNonNumbers(text: String) throws {
        let (m, idText) = try members("{\"id\":\(text)}")
        #expect(idText == nil)
        #expect(m[0].value.jsonString == text)
    }

    @Test func onlyTheIdKeepsItsText() throws {
        let (_, idText) = try members("{\"n\":-0,\"id\":1}")
        #expect(idText == nil)
    }

    @Test func aTopLevelArrayKeepsEachObjectAsMembers() throws {
        guard case .elements(let e) = try JSONValue.parseTopLevel(Array("[{\"id\":-0},5,[1]]".utf8)) else {
            Issue.record("not elements")
            return
        }
        #expect(e.count == 3)
        guard case .members(_, let idText) = e[0] else { Issue.record("first is not members"); return }
        #expect(idText == "-0")
        guard case .value(.int(5)) = e[1] else { Issue.record("second is not 5"); return }
        guard case .value(.array) = e[2] else { Issue.record("third is not an array"); return }
    }

    @Test func aTooLongArrayStopsAtTheLimit() throws {
        let text = "[" + Array(repeating: "{}", count: 11).joined(separator: ",") + ",this is not even JSON"
        guard case .tooManyElements = try JSONValue.parseTopLevel(Array(text.utf8), maxElements: 10) else {
            Issue.record("not refused")
            return
        }
        guard case .elements(let e) = try JSONValue.parseTopLevel(Array("[1,2,3]".utf8), maxElements: 3) else {
            Issue.record("three of three refused")
            return
        }
        #expect(e.count == 3)
    }

    @Test func aTopLevelArrayIsStillCheckedAsJSON() {
        #expect(throws: JSONParseError.self) { try JSONValue.parseTopLevel(Array("[{\"a\":1},]".utf8)) }
        #expect(throws: JSONParseError.self) { try JSONValue.parseTopLevel(Array("[1] x".utf8)) }
    }
}
