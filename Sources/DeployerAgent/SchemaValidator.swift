import JSON
import JSONRPC
import Synchronization

/// Checks a method's params against the param schemas of `protocol/openrpc.json`, so the contract and
/// the code cannot drift: a limit added to the document is enforced by the next build.
///
/// The subset understood is what the document uses: `type` (one or a list), `enum`, `pattern`,
/// `minLength`/`maxLength` (UTF-8 bytes, since bytes are what reach the ledger), `minimum`/`maximum` and
/// their exclusive forms, `minItems`/`maxItems`/`uniqueItems`, `items`, `properties`, `required`,
/// `additionalProperties: false`, `anyOf`, `allOf` and `$ref` to `#/components/schemas/...`. Patterns match code
/// point by code point, as ECMA-262 and Python do, so the document's control-character patterns mean the
/// same here as in any client's validator. One rule holds beyond the schemas: no string anywhere in params
/// (a smoke test's free-form `input` included) may contain U+0000, which neither ledger can store.
/// A `null` member counts as absent, as the hand-written checks treat it.
///
/// Errors are -32602 `invalid_params` whose `data.field` is a path such as `requirements.memory_mb` or
/// `smoke_tests[0].api`.
struct SchemaValidator: Sendable {
    /// One compiled schema node.
    struct Node: Sendable {
        var types: Set<String>?
        var enumValues: [JSONValue]?
        var pattern: Pattern?
        var minLength: Int?
        var maxLength: Int?
        var minimum: Double?
        var maximum: Double?
        var exclusiveMinimum: Double?
        var exclusiveMaximum: Double?
        var minItems: Int?
        var maxItems: Int?
        var uniqueItems = false
        /// Zero or one element: the schema of array items.
        var items: [Node] = []
        var properties: [String: Node] = [:]
        /// Property names in document order, so the first error found is stable.
        var propertyOrder: [String] = []
        var required: [String] = []
        var closed = false
        var anyOf: [Node] = []
        /// Schemas the value must also satisfy (`allOf`), checked after this node's own keywords.
        var allOf: [Node] = []
    }

    /// A compiled `pattern`.
    final class Pattern: @unchecked Sendable {
        // Regex is immutable once built; matching does not mutate it, so sharing across tasks is safe.
        let source: String
        let regex: Regex<AnyRegexOutput>

        init(_ source: String) throws {
            self.source = source
            self.regex = try Regex(source).matchingSemantics(.unicodeScalar)
        }

        func matches(_ s: String) -> Bool { s.contains(regex) }
    }

    /// Why a schema in the document cannot be compiled (a bug in the document, caught by the tests).
    struct SchemaError: Error, CustomStringConvertible {
        var description: String
    }

    /// One method param.
    struct Param: Sendable {
        var name: String
        var required: Bool
        var schema: Node
    }

    let method: String
    let params: [Param]
    /// MCP methods accept members this document does not list (newer revisions add some); ours do not.
    let allowsUnknownParams: Bool

    /// Compiles the param schemas of `method` from the OpenRPC document.
    init(method: String, openRPC doc: JSONValue, allowsUnknownParams: Bool = false) throws(SchemaError) {
        guard let entry = doc["methods"]?.arrayValue?.first(where: { $0["name"]?.stringValue == method }) else {
            throw SchemaError(description: "method \(method) is not in the document")
        }
        let components = doc["components"]?["schemas"]?.objectValue ?? [:]
        var out: [Param] = []
        for p in entry["params"]?.arrayValue ?? [] {
            guard let name = p["name"]?.stringValue else { throw SchemaError(description: "\(method): a param without a name") }
            let node = try Self.compile(p["schema"] ?? .object([:]), components, at: "\(method).\(name)", depth: 0)
            out.append(Param(name: name, required: p["required"]?.boolValue == true, schema: node))
        }
        self.method = method
        self.params = out
        self.allowsUnknownParams = allowsUnknownParams
    }

    /// A validator for a plain object schema (e.g. the answer to an elicitation), reusing `params`' limits.
    init(method: String, params: [Param]) {
        self.method = method
        self.params = params
        self.allowsUnknownParams = false
    }

    // MARK: - Compiling

    static func compile(_ schema: JSONValue, _ components: [String: JSONValue], at path: String, depth: Int) throws(SchemaError) -> Node {
        guard depth < 32 else { throw SchemaError(description: "\(path): schema nested too deeply (a $ref cycle?)") }
        guard case .object(let o) = schema else {
            if schema == .bool(true) { return Node() }
            throw SchemaError(description: "\(path): a schema must be an object")
        }
        if let ref = o["$ref"]?.stringValue {
            let prefix = "#/components/schemas/"
            guard ref.hasPrefix(prefix), let target = components[String(ref.dropFirst(prefix.count))] else {
                throw SchemaError(description: "\(path): unresolvable $ref \(ref)")
            }
            return try compile(target, components, at: path, depth: depth + 1)
        }
        var n = Node()
        switch o["type"] {
        case .string(let t)?: n.types = [t]
        case .array(let ts)?: n.types = Set(ts.compactMap(\.stringValue))
        default: break
        }
        n.enumValues = o["enum"]?.arrayValue
        if let p = o["pattern"]?.stringValue {
            do { n.pattern = try Pattern(p) } catch { throw SchemaError(description: "\(path): pattern \(p) does not compile: \(error)") }
        }
        n.minLength = try count(o, "minLength", path)
        n.maxLength = try count(o, "maxLength", path)
        n.minimum = o["minimum"]?.doubleValue
        n.maximum = o["maximum"]?.doubleValue
        n.exclusiveMinimum = o["exclusiveMinimum"]?.doubleValue
        n.exclusiveMaximum = o["exclusiveMaximum"]?.doubleValue
        n.minItems = try count(o, "minItems", path)
        n.maxItems = try count(o, "maxItems", path)
        n.uniqueItems = o["uniqueItems"]?.boolValue ?? false
        if let items = o["items"] { n.items = [try compile(items, components, at: "\(path)[]", depth: depth + 1)] }
        if case .object(let props)? = o["properties"] {
            for key in props.keys.sorted() {
                n.properties[key] = try compile(props[key]!, components, at: "\(path).\(key)", depth: depth + 1)
            }
            n.propertyOrder = props.keys.sorted()
        }
        n.required = o["required"]?.arrayValue?.compactMap(\.stringValue) ?? []
        n.closed = o["additionalProperties"] == .bool(false)
        for alt in o["anyOf"]?.arrayValue ?? [] { n.anyOf.append(try compile(alt, components, at: path, depth: depth + 1)) }
        for part in o["allOf"]?.arrayValue ?? [] { n.allOf.append(try compile(part, components, at: path, depth: depth + 1)) }
        return n
    }

    private static func count(_ o: [String: JSONValue], _ key: String, _ path: String) throws(SchemaError) -> Int? {
        guard let v = o[key] else { return nil }
        guard let i = v.intValue, let n = Int(exactly: i), n >= 0 else { throw SchemaError(description: "\(path): \(key) must be a count") }
        return n
    }

    // MARK: - Checking

    /// Checks `params` (an object, or absent) against the method's param schemas.
    /// - Throws: -32602 `invalid_params` naming the first offending field.
    func check(_ raw: JSONValue?) throws(RPCError) {
        let members: [String: JSONValue]
        switch raw {
        case nil, .null?: members = [:]
        case .object(let o)?: members = o
        case .array?: throw RPCError.invalidParams("params must be an object with named members (by-position params are not supported)")
        default: throw RPCError.invalidParams("params must be an object")
        }
        if !allowsUnknownParams {
            let known = Set(params.map(\.name))
            for key in members.keys.sorted() where !known.contains(key) && key != "_meta" {
                throw RPCError.invalidParams(
                    "unknown param \(Self.quoted(key)); expected some of: \(params.map(\.name).sorted().joined(separator: ", "))", field: key)
            }
        }
        for p in params where p.required {
            if members[p.name] == nil || members[p.name]!.isNull { throw RPCError.invalidParams("\(p.name) is required", field: p.name) }
        }
        for p in params {
            guard let v = members[p.name], !v.isNull else { continue }
            if let problem = Self.problem(v, p.schema, path: p.name) {
                throw RPCError.invalidParams(problem.message, field: problem.path)
            }
        }
        // Members no schema describes still reach the ledger: no NUL anywhere.
        for key in members.keys.sorted() where !params.contains(where: { $0.name == key }) {
            if let path = Self.firstNUL(members[key]!, path: key) {
                throw RPCError.invalidParams("\(path) must not contain U+0000", field: path)
            }
        }
    }

    struct Problem {
        var path: String
        var message: String
    }

    static func problem(_ v: JSONValue, _ n: Node, path: String) -> Problem? {
        if let p = ownProblem(v, n, path: path) { return p }
        for part in n.allOf {
            if let p = problem(v, part, path: path) { return p }
        }
        return nil
    }

    /// Everything but `allOf`.
    private static func ownProblem(_ v: JSONValue, _ n: Node, path: String) -> Problem? {
        if !n.anyOf.isEmpty {
            var problems: [(Node, Problem)] = []
            for alt in n.anyOf {
                guard let p = problem(v, alt, path: path) else { return problemAfterAnyOf(v, n, path: path) }
                problems.append((alt, p))
            }
            // Report against the alternative of the value's own type: `status: []` is "at least 1 item",
            // not "must be a string".
            let sameType = problems.first { alt, _ in alt.types.map { ts in ts.contains { matchesType(v, $0) } } ?? false }
            return (sameType ?? problems[0]).1
        }
        return problemAfterAnyOf(v, n, path: path)
    }

    /// Everything but `anyOf`.
    private static func problemAfterAnyOf(_ v: JSONValue, _ n: Node, path: String) -> Problem? {
        if let types = n.types, !types.contains(where: { matchesType(v, $0) }) {
            if case .double(let d) = v, !d.isFinite {
                return Problem(path: path, message: "\(path) must be a finite number")
            }
            return Problem(path: path, message: "\(path) must be \(describe(types)), not \(v.typeName)")
        }
        if let e = n.enumValues, !e.contains(where: { jsonEqual($0, v) }) {
            return Problem(path: path, message: "\(path) must be one of \(e.map(\.jsonString).joined(separator: ", ")), not \(short(v))")
        }
        switch v {
        case .string(let s):
            let bytes = s.utf8.count
            if let m = n.maxLength, bytes > m { return Problem(path: path, message: "\(path) is \(bytes) bytes long; at most \(m) are allowed") }
            if let m = n.minLength, bytes < m {
                return Problem(path: path, message: m == 1 ? "\(path) must not be empty" : "\(path) must be at least \(m) bytes long")
            }
            if s.utf8.contains(0) { return Problem(path: path, message: "\(path) must not contain U+0000") }
            if let p = n.pattern, !p.matches(s) {
                return Problem(path: path, message: "\(path) \(short(v)) does not match the pattern \(p.source)")
            }
        case .int, .double:
            guard let d = v.doubleValue, d.isFinite else { return Problem(path: path, message: "\(path) must be a finite number") }
            if let m = n.minimum, d < m { return Problem(path: path, message: "\(path) must be at least \(num(m))") }
            if let m = n.exclusiveMinimum, !(d > m) { return Problem(path: path, message: "\(path) must be greater than \(num(m))") }
            if let m = n.maximum, d > m { return Problem(path: path, message: "\(path) must be at most \(num(m))") }
            if let m = n.exclusiveMaximum, !(d < m) { return Problem(path: path, message: "\(path) must be less than \(num(m))") }
        case .array(let a):
            if let m = n.minItems, a.count < m { return Problem(path: path, message: "\(path) must have at least \(m) item\(m == 1 ? "" : "s")") }
            if let m = n.maxItems, a.count > m { return Problem(path: path, message: "\(path) must have at most \(m) items, not \(a.count)") }
            for (i, item) in a.enumerated() {
                let p = "\(path)[\(i)]"
                if let itemSchema = n.items.first {
                    if item.isNull { return Problem(path: p, message: "\(p) must not be null") }
                    if let problem = problem(item, itemSchema, path: p) { return problem }
                } else if let nul = firstNUL(item, path: p) {
                    return Problem(path: nul, message: "\(nul) must not contain U+0000")
                }
            }
            if n.uniqueItems {
                for i in a.indices {
                    for j in a.indices where j > i && jsonEqual(a[i], a[j]) {
                        return Problem(path: "\(path)[\(j)]", message: "\(path) must not repeat \(short(a[j]))")
                    }
                }
            }
        case .object(let o):
            if n.closed {
                for key in o.keys.sorted() where n.properties[key] == nil {
                    return Problem(path: "\(path).\(key)", message: "\(path) has an unknown member \(quoted(key)); expected some of: \(n.propertyOrder.joined(separator: ", "))")
                }
            }
            for key in n.required where o[key] == nil {
                return Problem(path: "\(path).\(key)", message: "\(path).\(key) is required")
            }
            for key in n.propertyOrder {
                guard let member = o[key], !member.isNull else { continue }
                if let problem = problem(member, n.properties[key]!, path: "\(path).\(key)") { return problem }
            }
            for key in o.keys.sorted() where n.properties[key] == nil {
                if let nul = firstNUL(o[key]!, path: "\(path).\(key)") { return Problem(path: nul, message: "\(nul) must not contain U+0000") }
            }
            if let nul = o.keys.sorted().first(where: { $0.utf8.contains(0) }) {
                return Problem(path: path, message: "\(path) has a member name \(quoted(nul)) containing U+0000")
            }
        default:
            break
        }
        return nil
    }

    /// The path of the first string (or member name) in `v` that contains U+0000.
    static func firstNUL(_ v: JSONValue, path: String) -> String? {
        switch v {
        case .string(let s): return s.utf8.contains(0) ? path : nil
        case .array(let a):
            for (i, x) in a.enumerated() { if let p = firstNUL(x, path: "\(path)[\(i)]") { return p } }
            return nil
        case .object(let o):
            for k in o.keys.sorted() {
                if k.utf8.contains(0) { return path }
                if let p = firstNUL(o[k]!, path: "\(path).\(k)") { return p }
            }
            return nil
        default:
            return nil
        }
    }

    static func matchesType(_ v: JSONValue, _ t: String) -> Bool {
        switch (t, v) {
        case ("string", .string), ("boolean", .bool), ("array", .array), ("object", .object), ("null", .null): return true
        case ("integer", .int): return true
        case ("integer", .double(let d)): return d.isFinite && d.rounded() == d
        case ("number", .int): return true
        case ("number", .double(let d)): return d.isFinite
        default: return false
        }
    }

    /// JSON equality (1 and 1.0 are equal), for `enum` and `uniqueItems`.
    static func jsonEqual(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.int, .double), (.double, .int): return a.doubleValue == b.doubleValue
        default: return a == b
        }
    }

    private static func describe(_ types: Set<String>) -> String {
        let names = types.sorted().map { t -> String in
            switch t {
            case "integer", "object", "array": return "an \(t)"
            default: return "a \(t)"
            }
        }
        return names.joined(separator: " or ")
    }

    private static func short(_ v: JSONValue) -> String {
        let s = v.jsonString
        return s.utf8.count > 80 ? String(s.prefix(77)) + "..." : s
    }

    static func quoted(_ s: String) -> String { short(.string(s)) }

    private static func num(_ d: Double) -> String {
        if d.rounded() == d, abs(d) < 1e15, let i = Int64(exactly: d) { return String(i) }
        return String(d)
    }
}

/// The validators of every method, compiled from the contract on first use (cold start stays short).
final class ParamValidators: Sendable {
    private let openRPC: @Sendable () -> JSONValue
    private let mcpMethods: Set<String>
    private let cache = Mutex<[String: SchemaValidator]?>(nil)

    /// - Parameters:
    ///   - openRPC: the contract, asked for on first use.
    ///   - mcpMethods: methods that tolerate params the document does not list (MCP glue).
    init(openRPC: @escaping @Sendable () -> JSONValue, mcpMethods: Set<String>) {
        self.openRPC = openRPC
        self.mcpMethods = mcpMethods
    }

    /// Every method's validator; a schema that does not compile is an internal error (the tests catch it).
    func all() throws(RPCError) -> [String: SchemaValidator] {
        if let v = cache.withLock({ $0 }) { return v }
        let doc = openRPC()
        var out: [String: SchemaValidator] = [:]
        for m in doc["methods"]?.arrayValue ?? [] {
            guard let name = m["name"]?.stringValue else { continue }
            do {
                out[name] = try SchemaValidator(method: name, openRPC: doc, allowsUnknownParams: mcpMethods.contains(name))
            } catch {
                throw RPCError.internalError("the contract's schema for \(name) cannot be used: \(error.description)")
            }
        }
        let built = out
        cache.withLock { $0 = built }
        return built
    }

    /// Checks `params` of `method` (a method the document does not describe passes unchecked).
    func check(_ method: String, _ params: JSONValue?) throws(RPCError) {
        try all()[method]?.check(params)
    }

    /// The schemas of some params of `method`, e.g. to check an elicitation answer with `deploy.approve`'s limits.
    func subset(of method: String, _ names: [String]) throws(RPCError) -> SchemaValidator? {
        guard let v = try all()[method] else { return nil }
        return SchemaValidator(method: method, params: v.params.filter { names.contains($0.name) })
    }
}
