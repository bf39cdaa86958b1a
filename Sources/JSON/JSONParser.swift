/// Why a byte sequence is not JSON.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The byte offset at which parsing failed.
    public var offset: Int
    /// A short human-readable reason.
    public var reason: String
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

extension JSONValue {
    /// Parses one JSON text (RFC 8259) from UTF-8 bytes; surrounding white space is allowed.
    ///
    /// Strings must be valid UTF-8; nesting deeper than `maxDepth` is refused rather than risking the stack.
    public static func parse<C: Collection>(_ bytes: C, maxDepth: Int = 512) throws(JSONParseError) -> JSONValue
    where C.Element == UInt8 {
        try withParser(bytes, maxDepth: maxDepth) { (p: inout JSONParser) throws(JSONParseError) in try p.parseDocument() }
    }

    /// Runs `body` with a parser over the bytes (copied only when they are not contiguous).
    private static func withParser<C: Collection, T>(
        _ bytes: C, maxDepth: Int, _ body: (inout JSONParser) throws(JSONParseError) -> T
    ) throws(JSONParseError) -> T where C.Element == UInt8 {
        let result: Result<T, JSONParseError>? = bytes.withContiguousStorageIfAvailable { buf in
            Result { () throws(JSONParseError) -> T in
                var p = JSONParser(buf, maxDepth: maxDepth)
                return try body(&p)
            }
        }
        if let result { return try result.get() }
        let copy = Array(bytes)
        return try copy.withUnsafeBufferPointer { buf throws(JSONParseError) -> T in
            var p = JSONParser(buf, maxDepth: maxDepth)
            return try body(&p)
        }
    }

    /// Parses one JSON text; when it is an object, returns its members in order as pairs instead of a
    /// dictionary (`.members`), which saves hashing for callers that look at a few known keys (a JSON-RPC
    /// envelope). Any other value comes back as `.value`. Duplicate keys are all kept, in order.
    ///
    /// A top-level array comes back as `.elements`, each object element as members too (a JSON-RPC batch);
    /// one with more than `maxElements` elements stops parsing there and comes back as `.tooManyElements`,
    /// so that refusing a huge batch does not first cost the memory of all its elements.
    public static func parseTopLevel<C: Collection>(
        _ bytes: C, maxDepth: Int = 512, maxElements: Int = .max
    ) throws(JSONParseError) -> JSONTopLevel
    where C.Element == UInt8 {
        // Written out rather than through withParser: this is the per-request hot path and the closure costs.
        let result: Result<JSONTopLevel, JSONParseError>? = bytes.withContiguousStorageIfAvailable { buf in
            Result { () throws(JSONParseError) -> JSONTopLevel in
                var p = JSONParser(buf, maxDepth: maxDepth)
                return try p.parseTopLevelDocument(maxElements: maxElements)
            }
        }
        if let result { return try result.get() }
        return try parseTopLevel(Array(bytes), maxDepth: maxDepth, maxElements: maxElements)
    }

    /// `parseTopLevel` over a buffer, without the generic entry: the optimizer does not specialize the
    /// generic one across modules, and calling it cost a witness-table dispatch per request (100
    /// instructions of a ping's 6,000, measured with callgrind).
    public static func parseTopLevel(
        _ buf: UnsafeBufferPointer<UInt8>, maxDepth: Int = 512, maxElements: Int = .max
    ) throws(JSONParseError) -> JSONTopLevel {
        var p = JSONParser(buf, maxDepth: maxDepth)
        return try p.parseTopLevelDocument(maxElements: maxElements)
    }

    /// Parses one JSON text from a string.
    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8))
    }
}

/// One member of a JSON object, in document order.
public struct JSONMember: Sendable, Hashable {
    public var key: String
    public var value: JSONValue
    public init(key: String, value: JSONValue) {
        self.key = key
        self.value = value
    }
}

/// A parsed JSON text whose top-level object (if any) is kept as ordered members.
public enum JSONTopLevel: Sendable {
    /// An object's members. `idText` is the text of the member `"id"` as it appeared in the input when
    /// it is a number its value cannot write back identically (`-0`, `1e400`, integers beyond 64 bits,
    /// `1.50`), so that a JSON-RPC id can be echoed exactly; nil otherwise (the common case costs nothing).
    case members([JSONMember], idText: String?)
    case value(JSONValue)
    /// A top-level array; each element that is an object is kept as `.members`, anything else as `.value`.
    case elements([JSONTopLevel])
    /// A top-level array with more elements than the caller allowed; the rest of the text was not read.
    case tooManyElements
}

/// A recursive-descent parser over a byte buffer. Allocates only for the values it returns.
struct JSONParser {
    let buf: UnsafeBufferPointer<UInt8>
    var i = 0
    let maxDepth: Int
    var depth = 0

    init(_ buf: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.buf = buf
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        let v = try parseValue()
        skipWhitespace()
        if i != buf.count { throw fail("unexpected data after the JSON value") }
        return v
    }

    mutating func parseTopLevelDocument(maxElements: Int = .max) throws(JSONParseError) -> JSONTopLevel {
        skipWhitespace()
        let top: JSONTopLevel
        if i < buf.count, buf[i] == UInt8(ascii: "[") {
            try enter()
            i += 1
            var elements: [JSONTopLevel] = []
            skipWhitespace()
            if i < buf.count, buf[i] == UInt8(ascii: "]") {
                i += 1
            } else {
                while true {
                    skipWhitespace()
                    if elements.count == maxElements { return .tooManyElements }
                    elements.append(try parseMembersOrValue())
                    skipWhitespace()
                    guard i < buf.count else { throw fail("unexpected end of input") }
                    if buf[i] == UInt8(ascii: ",") { i += 1; continue }
                    if buf[i] == UInt8(ascii: "]") { i += 1; break }
                    throw fail("expected ',' or ']'")
                }
            }
            depth -= 1
            top = .elements(elements)
        } else {
            top = try parseMembersOrValue()
        }
        skipWhitespace()
        if i != buf.count { throw fail("unexpected data after the JSON value") }
        return top
    }

    /// An object as ordered members (numbers keep their text when it matters), anything else as a value.
    @inline(__always) mutating func parseMembersOrValue() throws(JSONParseError) -> JSONTopLevel {
        guard i < buf.count, buf[i] == UInt8(ascii: "{") else { return .value(try parseValue()) }
        try enter()
        i += 1
        var members: [JSONMember] = []
        members.reserveCapacity(4)
        var idText: String?
        skipWhitespace()
        if i < buf.count, buf[i] == UInt8(ascii: "}") {
            i += 1
        } else {
            while true {
                skipWhitespace()
                guard i < buf.count, buf[i] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
                let key = try parseString()
                skipWhitespace()
                guard i < buf.count, buf[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                i += 1
                skipWhitespace()
                let valueStart = i
                let value = try parseValue()
                // A byte test first: this runs for every member of every request, and most values are not numbers.
                // The key is compared last: an integer id (the common case) never gets that far.
                let c = buf[valueStart]
                if c == UInt8(ascii: "-") || isDigit(c) {
                    switch value {
                    case .double where key == "id":
                        idText = String(decoding: UnsafeBufferPointer(rebasing: buf[valueStart..<i]), as: UTF8.self)
                    case .int(0) where c == UInt8(ascii: "-") && key == "id":
                        idText = "-0"
                    default:
                        break  // any other integer was read from its canonical text (leading zeros are refused)
                    }
                }
                members.append(JSONMember(key: key, value: value))
                skipWhitespace()
                guard i < buf.count else { throw fail("unexpected end of input") }
                if buf[i] == UInt8(ascii: ",") { i += 1; continue }
                if buf[i] == UInt8(ascii: "}") { i += 1; break }
                throw fail("expected ',' or '}'")
            }
        }
        depth -= 1
        return .members(members, idText: idText)
    }

    func fail(_ reason: String) -> JSONParseError { JSONParseError(offset: i, reason: reason) }

    @inline(__always) mutating func skipWhitespace() {
        while i < buf.count {
            let c = buf[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { break }
        }
    }

    mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard i < buf.count else { throw fail("unexpected end of input") }
        switch buf[i] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected character")
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let n = word.utf8CodeUnitCount
        guard i + n <= buf.count else { throw fail("unexpected end of input") }
        let p = word.utf8Start
        for k in 0..<n where buf[i + k] != p[k] { throw fail("invalid literal") }
        i += n
    }

    @inline(__always) mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > maxDepth { throw fail("nesting deeper than \(maxDepth)") }
    }

    mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enter()
        i += 1
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if i < buf.count, buf[i] == UInt8(ascii: "}") {
            i += 1; depth -= 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard i < buf.count, buf[i] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let key = try parseString()
            skipWhitespace()
            guard i < buf.count, buf[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            i += 1
            skipWhitespace()
            members[key] = try parseValue()
            skipWhitespace()
            guard i < buf.count else { throw fail("unexpected end of input") }
            if buf[i] == UInt8(ascii: ",") { i += 1; continue }
            if buf[i] == UInt8(ascii: "}") { i += 1; break }
            throw fail("expected ',' or '}'")
        }
        depth -= 1
        return .object(members)
    }

    mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enter()
        i += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if i < buf.count, buf[i] == UInt8(ascii: "]") {
            i += 1; depth -= 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            skipWhitespace()
            guard i < buf.count else { throw fail("unexpected end of input") }
            if buf[i] == UInt8(ascii: ",") { i += 1; continue }
            if buf[i] == UInt8(ascii: "]") { i += 1; break }
            throw fail("expected ',' or ']'")
        }
        depth -= 1
        return .array(elements)
    }

    mutating func parseString() throws(JSONParseError) -> String {
        i += 1  // opening quote
        let start = i
        // Fast path: no escapes.
        while i < buf.count {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: buf[start..<i])
                i += 1
                guard let s = Self.validatedString(slice) else {
                    throw JSONParseError(offset: start, reason: "string is not valid UTF-8")
                }
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw fail("control character in string") }
            i += 1
        }
        guard i < buf.count else { throw fail("unterminated string") }
        // Slow path with escapes.
        var out: [UInt8] = Array(UnsafeBufferPointer(rebasing: buf[start..<i]))
        while i < buf.count {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                guard let s = out.withUnsafeBufferPointer({ Self.validatedString($0) }) else {
                    throw JSONParseError(offset: start, reason: "string is not valid UTF-8")
                }
                return s
            }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") {
                out.append(c); i += 1; continue
            }
            i += 1
            guard i < buf.count else { throw fail("unterminated escape") }
            let e = buf[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard i + 1 < buf.count, buf[i] == UInt8(ascii: "\\"), buf[i + 1] == UInt8(ascii: "u") else {
                        throw fail("lone surrogate in string")
                    }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw fail("invalid surrogate pair") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw fail("lone surrogate in string")
                }
                guard let u = Unicode.Scalar(scalar) else { throw fail("invalid unicode escape") }
                out.append(contentsOf: String(Character(u)).utf8)
            default:
                throw fail("invalid escape")
            }
        }
        throw fail("unterminated string")
    }

    /// The string for UTF-8 bytes, or nil when they are not valid UTF-8. ASCII (the common case) takes
    /// the fast specialized path; otherwise the decoded string must re-encode to the very same bytes
    /// (decoding repairs invalid sequences, which changes them).
    static func validatedString(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        var ascii = true
        for b in bytes where b >= 0x80 {
            ascii = false
            break
        }
        let s = String(decoding: bytes, as: UTF8.self)
        if ascii { return s }
        return s.utf8.elementsEqual(bytes) ? s : nil
    }

    mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard i + 4 <= buf.count else { throw fail("truncated unicode escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = buf[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid hex digit in unicode escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = i
        var negative = false
        if buf[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        guard i < buf.count, isDigit(buf[i]) else { throw fail("invalid number") }
        if buf[i] == UInt8(ascii: "0") {
            i += 1
            if i < buf.count, isDigit(buf[i]) { throw fail("leading zero in number") }
        } else {
            while i < buf.count, isDigit(buf[i]) { i += 1 }
        }
        var integral = true
        if i < buf.count, buf[i] == UInt8(ascii: ".") {
            integral = false
            i += 1
            guard i < buf.count, isDigit(buf[i]) else { throw fail("invalid fraction") }
            while i < buf.count, isDigit(buf[i]) { i += 1 }
        }
        if i < buf.count, buf[i] == UInt8(ascii: "e") || buf[i] == UInt8(ascii: "E") {
            integral = false
            i += 1
            if i < buf.count, buf[i] == UInt8(ascii: "+") || buf[i] == UInt8(ascii: "-") { i += 1 }
            guard i < buf.count, isDigit(buf[i]) else { throw fail("invalid exponent") }
            while i < buf.count, isDigit(buf[i]) { i += 1 }
        }
        if integral, i - start <= 18 {
            // At most 18 digits always fits in Int64: accumulate directly.
            var v: Int64 = 0
            var k = negative ? start + 1 : start
            while k < i { v = v &* 10 &+ Int64(buf[k] &- UInt8(ascii: "0")); k += 1 }
            return .int(negative ? -v : v)
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<i]), as: UTF8.self)
        if integral, let v = Int64(text) { return .int(v) }
        guard let d = Double(text) else { throw JSONParseError(offset: start, reason: "invalid number") }
        return .double(d)
    }

    @inline(__always) func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
}
