import JSON

/// A node of the small YAML subset BentoML writes (PyYAML `safe_dump` block style).
public indirect enum YAMLNode: Sendable, Hashable {
    /// A scalar with its text; `quoted` scalars are always strings.
    case scalar(String, quoted: Bool)
    /// A mapping, in file order.
    case mapping([(String, YAMLNode)])
    /// A sequence.
    case sequence([YAMLNode])

    public static func == (a: YAMLNode, b: YAMLNode) -> Bool {
        switch (a, b) {
        case let (.scalar(x, qx), .scalar(y, qy)): return x == y && qx == qy
        case let (.sequence(x), .sequence(y)): return x == y
        case let (.mapping(x), .mapping(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public func hash(into h: inout Hasher) {
        switch self {
        case let .scalar(s, q): h.combine(0); h.combine(s); h.combine(q)
        case let .sequence(x): h.combine(1); h.combine(x)
        case let .mapping(x): h.combine(2); for (k, v) in x { h.combine(k); h.combine(v) }
        }
    }

    /// The member `key` of a mapping.
    public subscript(key: String) -> YAMLNode? {
        if case .mapping(let m) = self { return m.first { $0.0 == key }?.1 }
        return nil
    }

    /// The scalar text (`null`/`~` give nil).
    public var string: String? {
        if case let .scalar(s, quoted) = self { return !quoted && (s == "null" || s == "~" || s.isEmpty) ? nil : s }
        return nil
    }

    /// Elements of a sequence (empty for anything else).
    public var items: [YAMLNode] {
        if case .sequence(let s) = self { return s }
        return []
    }

    /// Pairs of a mapping (empty for anything else).
    public var pairs: [(String, YAMLNode)] {
        if case .mapping(let m) = self { return m }
        return []
    }

    /// The node as JSON: plain scalars become null/bool/int/double where they read as such.
    public var json: JSONValue {
        switch self {
        case let .scalar(s, quoted):
            if quoted { return .string(s) }
            switch s {
            case "", "null", "~", "Null", "NULL": return .null
            case "true", "True", "TRUE": return .bool(true)
            case "false", "False", "FALSE": return .bool(false)
            default: break
            }
            if let i = Int64(s) { return .int(i) }
            if s.contains(where: { $0.isNumber }), !s.contains(where: { $0.isLetter && $0 != "e" && $0 != "E" }),
               let d = Double(s) { return .double(d) }
            if s == ".inf" { return .double(.infinity) }
            return .string(s)
        case let .sequence(items): return .array(items.map(\.json))
        case let .mapping(pairs):
            var o: [String: JSONValue] = [:]
            for (k, v) in pairs { o[k] = v.json }
            return .object(o)
        }
    }
}

/// A line-oriented reader for block-style YAML: mappings, sequences (also at the parent key's indent),
/// plain, single- and double-quoted scalars (multi-line too), `[]`/`{}` and simple flow sequences.
/// Anchors, tags and block scalars (`|`, `>`) are not supported (BentoML does not write them).
public enum MiniYAML {
    struct Line { var indent: Int; var text: String }

    /// Parses a document; an empty document is an empty mapping.
    public static func parse(_ text: String) -> YAMLNode {
        var lines: [Line] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var s = Substring(raw)
            if s.last == "\r" { s.removeLast() }
            let indent = s.prefix(while: { $0 == " " }).count
            let body = s.dropFirst(indent)
            if body.hasPrefix("#") || body == "---" { continue }
            lines.append(Line(indent: indent, text: String(body)))
        }
        var p = Parser(lines: lines)
        p.skipBlank()
        guard p.i < p.lines.count else { return .mapping([]) }
        return p.node(indent: p.lines[p.i].indent)
    }

    struct Parser {
        var lines: [Line]
        var i = 0

        mutating func skipBlank() {
            while i < lines.count && lines[i].text.trimmingSpaces.isEmpty { i += 1 }
        }

        mutating func node(indent: Int) -> YAMLNode {
            skipBlank()
            guard i < lines.count else { return .scalar("", quoted: false) }
            let line = lines[i]
            if line.text == "-" || line.text.hasPrefix("- ") { return sequence(indent: line.indent) }
            if keySplit(line.text) != nil { return mapping(indent: line.indent) }
            i += 1
            return scalar(line.text, parentIndent: indent - 1)
        }

        mutating func sequence(indent: Int) -> YAMLNode {
            var items: [YAMLNode] = []
            while true {
                skipBlank()
                guard i < lines.count, lines[i].indent == indent,
                      lines[i].text == "-" || lines[i].text.hasPrefix("- ") else { break }
                let rest = String(lines[i].text.dropFirst(1)).trimmingSpaces
                if rest.isEmpty {
                    i += 1
                    skipBlank()
                    if i < lines.count && lines[i].indent > indent { items.append(node(indent: lines[i].indent)) }
                    else { items.append(.scalar("", quoted: false)) }
                } else {
                    // Re-read the item's content as a line of its own, indented past the dash.
                    let offset = lines[i].text.count - lines[i].text.dropFirst(1).drop(while: { $0 == " " }).count
                    lines[i] = Line(indent: indent + offset, text: rest)
                    items.append(node(indent: indent + offset))
                }
            }
            return .sequence(items)
        }

        mutating func mapping(indent: Int) -> YAMLNode {
            var pairs: [(String, YAMLNode)] = []
            while true {
                skipBlank()
                guard i < lines.count, lines[i].indent == indent,
                      !(lines[i].text == "-" || lines[i].text.hasPrefix("- ")),
                      let (key, value) = keySplit(lines[i].text) else { break }
                i += 1
                if value.isEmpty {
                    skipBlank()
                    if i < lines.count, lines[i].indent > indent {
                        pairs.append((key, node(indent: lines[i].indent)))
                    } else if i < lines.count, lines[i].indent == indent,
                              lines[i].text == "-" || lines[i].text.hasPrefix("- ") {
                        pairs.append((key, sequence(indent: indent)))
                    } else {
                        pairs.append((key, .scalar("", quoted: false)))
                    }
                } else {
                    pairs.append((key, scalar(value, parentIndent: indent)))
                }
            }
            return .mapping(pairs)
        }

        /// A scalar starting with `first`; continuation lines are those indented past `parentIndent`.
        mutating func scalar(_ first: String, parentIndent: Int) -> YAMLNode {
            var text = first
            if text.hasPrefix("'") || text.hasPrefix("\"") {
                let quote = text.first!
                while !isClosed(text, quote: quote), i < lines.count {
                    let next = lines[i].text.trimmingSpaces
                    text += next.isEmpty ? "\n" : (text.hasSuffix("\n") ? next : " " + next)
                    i += 1
                }
                return .scalar(unquote(text, quote: quote), quoted: true)
            }
            if text == "[]" { return .sequence([]) }
            if text == "{}" { return .mapping([]) }
            if text.hasPrefix("[") && text.hasSuffix("]") {
                let inner = text.dropFirst().dropLast()
                return .sequence(inner.split(separator: ",").map { part in
                    let t = part.trimmingSpaces
                    if let q = t.first, q == "'" || q == "\"" { return .scalar(unquote(t, quote: q), quoted: true) }
                    return .scalar(t, quoted: false)
                })
            }
            while i < lines.count, lines[i].indent > parentIndent, !lines[i].text.trimmingSpaces.isEmpty {
                // Plain multi-line scalar: folded with spaces.
                text += " " + lines[i].text.trimmingSpaces
                i += 1
            }
            if let hash = text.firstRange(of: " #") { text = String(text[..<hash.lowerBound]) }
            return .scalar(text.trimmingSpaces, quoted: false)
        }

        func isClosed(_ text: String, quote: Character) -> Bool {
            let chars = Array(text.dropFirst())
            var k = 0
            while k < chars.count {
                if quote == "\"" && chars[k] == "\\" { k += 2; continue }
                if chars[k] == quote {
                    if quote == "'" && k + 1 < chars.count && chars[k + 1] == "'" { k += 2; continue }
                    return true
                }
                k += 1
            }
            return false
        }

        func unquote(_ text: String, quote: Character) -> String {
            var body = Substring(text.trimmingSpaces).dropFirst()
            if body.last == quote { body = body.dropLast() }
            if quote == "'" { return body.replacingOccurrences("''", "'") }
            var out = ""
            var it = body.makeIterator()
            while let c = it.next() {
                guard c == "\\" else { out.append(c); continue }
                switch it.next() {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "\"": out.append("\"")
                case "\\": out.append("\\")
                case "/": out.append("/")
                case let other?: out.append("\\"); out.append(other)
                case nil: break
                }
            }
            return out
        }

        /// `key: value` / `key:` outside quotes, or nil for a non-mapping line.
        func keySplit(_ text: String) -> (String, String)? {
            if let q = text.first, q == "'" || q == "\"" {
                let chars = Array(text)
                var k = 1
                while k < chars.count {
                    if chars[k] == q {
                        if q == "'" && k + 1 < chars.count && chars[k + 1] == "'" { k += 2; continue }
                        break
                    }
                    if q == "\"" && chars[k] == "\\" { k += 1 }
                    k += 1
                }
                guard k + 1 < chars.count, chars[k + 1] == ":",
                      k + 2 == chars.count || chars[k + 2] == " " else { return nil }
                let key = unquote(String(chars[0...k]), quote: q)
                return (key, String(chars[(k + 2)...]).trimmingSpaces)
            }
            if text.hasPrefix("[") || text.hasPrefix("{") { return nil }
            var prev: Character = " "
            var idx = text.startIndex
            while idx < text.endIndex {
                let c = text[idx]
                if c == "#" && prev == " " && idx != text.startIndex { return nil }
                if c == ":" {
                    let after = text.index(after: idx)
                    if after == text.endIndex || text[after] == " " {
                        return (String(text[..<idx]).trimmingSpaces, String(text[after...]).trimmingSpaces)
                    }
                }
                prev = c
                idx = text.index(after: idx)
            }
            return nil
        }
    }
}

extension Substring {
    func replacingOccurrences(_ a: String, _ b: String) -> String {
        var out = ""
        var rest = self[...]
        while let r = rest.firstRange(of: a) {
            out += rest[..<r.lowerBound]
            out += b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
