import DeployCore
import JSON

/// A model version in the BentoML store (from `models/<name>/<version>/model.yaml`): the core's facts,
/// read here, used as they are by the planner.
public typealias ModelInfo = ModelFacts

extension ModelFacts {
    /// `name:version`.
    public var tag: String { "\(name):\(version)" }
}

/// A bento in the BentoML store (from `bentos/<name>/<version>/bento.yaml`).
public struct BentoInfo: Sendable, Hashable {
    /// `name:version`.
    public var tag: String
    /// Bento name.
    public var name: String
    /// Bento version.
    public var version: String
    /// Model tags the bento serves (`services[].models[].tag`, `models[]`, and a `model_tag` build argument).
    public var models: [String]
    /// API names (`schema.routes[].name`, or `apis[].name` in older bentos).
    public var apis: [String]
    /// The entry service's `config.resources`, when declared.
    public var resources: JSONValue?
    /// User labels.
    public var labels: [String: String]
    /// `creation_time` as written by BentoML (RFC 3339).
    public var creationTime: String
}

/// Reads the BentoML store directly from its files (fast; no CLI, no Python).
public struct BentoStoreReader: Sendable {
    /// The store root (`BENTOML_HOME`).
    public let home: String

    /// A reader for the store at `home`.
    public init(home: String) { self.home = home }

    /// The model `name:version`; `version == "latest"` is the newest by `creation_time`.
    /// - Throws: `model_not_found`, `invalid_name`.
    public func model(name: String, version: String) throws(RuntimeError) -> ModelInfo {
        guard RuntimeNames.isValidStoreComponent(name), RuntimeNames.isValidStoreComponent(version) else {
            throw .invalidName("model tag '\(name):\(version)' is not a valid BentoML tag")
        }
        if version == "latest" {
            let all = models(name: name)
            guard let newest = all.max(by: { Self.isOlder($0.creationTime, $1.creationTime) }) else {
                throw RuntimeError(code: "model_not_found", message: "no version of model '\(name)' in \(home)")
            }
            return newest
        }
        let dir = "\(home)/models/\(name)/\(version)"
        guard let info = readModel(dir: dir) else {
            throw RuntimeError(code: "model_not_found", message: "model \(name):\(version) not found in \(home)")
        }
        return info
    }

    /// Every version of model `name` (unsorted).
    public func models(name: String) -> [ModelInfo] {
        guard RuntimeNames.isValidStoreComponent(name) else { return [] }
        let base = "\(home)/models/\(name)"
        return FileIO.list(base).filter { $0 != "latest" }.compactMap { readModel(dir: "\(base)/\($0)") }
    }

    /// Every bento in the store.
    /// - Throws: `store_invalid` when the store directory does not exist.
    public func bentos() throws(RuntimeError) -> [BentoInfo] {
        let base = "\(home)/bentos"
        guard FileIO.isDirectory(home) else {
            throw RuntimeError(code: "store_invalid", message: "BentoML store \(home) does not exist")
        }
        var out: [BentoInfo] = []
        for name in FileIO.list(base) where FileIO.isDirectory("\(base)/\(name)") {
            for version in FileIO.list("\(base)/\(name)") where version != "latest" {
                if let b = readBento(dir: "\(base)/\(name)/\(version)") { out.append(b) }
            }
        }
        return out
    }

    /// The bento `name:version` (`latest` or a bare name resolve to the newest by `creation_time`).
    /// - Throws: `bento_not_found`, `invalid_name`.
    public func bento(tag: String) throws(RuntimeError) -> BentoInfo {
        guard RuntimeNames.isValidTag(tag) else { throw .invalidName("bento tag '\(tag)' is not a valid BentoML tag") }
        let parts = tag.split(separator: ":").map(String.init)
        let name = parts[0]
        let version = parts.count > 1 ? parts[1] : "latest"
        if version == "latest" {
            let base = "\(home)/bentos/\(name)"
            let all = FileIO.list(base).filter { $0 != "latest" }.compactMap { readBento(dir: "\(base)/\($0)") }
            guard let newest = all.max(by: { Self.isOlder($0.creationTime, $1.creationTime) }) else {
                throw RuntimeError(code: "bento_not_found", message: "no bento named '\(name)' in \(home)")
            }
            return newest
        }
        guard let b = readBento(dir: "\(home)/bentos/\(name)/\(version)") else {
            throw RuntimeError(code: "bento_not_found", message: "bento \(name):\(version) not found in \(home)")
        }
        return b
    }

    /// The newest bento (by `creation_time`) that serves `modelTag` (`name:version`; `name:latest` resolves first).
    public func newestBento(serving modelTag: String) throws(RuntimeError) -> BentoInfo? {
        guard RuntimeNames.isValidTag(modelTag) else { throw .invalidName("model tag '\(modelTag)' is not a valid BentoML tag") }
        var tag = modelTag
        let parts = modelTag.split(separator: ":").map(String.init)
        if parts.count == 1 || parts[1] == "latest" { tag = try model(name: parts[0], version: "latest").tag }
        return try bentos().filter { $0.models.contains(tag) }
            .max(by: { Self.isOlder($0.creationTime, $1.creationTime) })
    }

    // MARK: - parsing

    func readModel(dir: String) -> ModelInfo? {
        guard let text = FileIO.readString("\(dir)/model.yaml") else { return nil }
        return Self.parseModel(text, sizeBytes: FileIO.treeSize(dir))
    }

    func readBento(dir: String) -> BentoInfo? {
        guard let text = FileIO.readString("\(dir)/bento.yaml") else { return nil }
        return Self.parseBento(text)
    }

    /// Parses a `model.yaml` document.
    public static func parseModel(_ text: String, sizeBytes: Int64? = nil) -> ModelInfo? {
        let doc = MiniYAML.parse(text)
        guard let name = doc["name"]?.string, let version = doc["version"]?.string else { return nil }
        return ModelFacts(name: name, version: version, module: doc["module"]?.string, sizeBytes: sizeBytes,
                         labels: stringMap(doc["labels"]), metadata: doc["metadata"]?.json ?? .object([:]),
                         creationTime: doc["creation_time"]?.string)
    }

    /// Parses a `bento.yaml` document.
    public static func parseBento(_ text: String) -> BentoInfo? {
        let doc = MiniYAML.parse(text)
        guard let name = doc["name"]?.string, let version = doc["version"]?.string else { return nil }
        var models: [String] = []
        func add(_ t: String?) { if let t, !t.isEmpty, !models.contains(t) { models.append(t) } }
        for m in doc["models"]?.items ?? [] { add(m["tag"]?.string ?? m.string) }
        var resources: JSONValue?
        let entry = doc["entry_service"]?.string
        for svc in doc["services"]?.items ?? [] {
            for m in svc["models"]?.items ?? [] { add(m["tag"]?.string ?? m.string) }
            if let r = svc["config"]?["resources"], resources == nil || svc["name"]?.string == entry { resources = r.json }
        }
        add(doc["args"]?["model_tag"]?.string)
        var apis: [String] = (doc["schema"]?["routes"]?.items ?? []).compactMap { $0["name"]?.string }
        if apis.isEmpty { apis = (doc["apis"]?.items ?? []).compactMap { $0["name"]?.string } }
        return BentoInfo(tag: "\(name):\(version)", name: name, version: version, models: models, apis: apis,
                         resources: resources, labels: stringMap(doc["labels"]),
                         creationTime: doc["creation_time"]?.string ?? "")
    }

    private static func stringMap(_ node: YAMLNode?) -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in node?.pairs ?? [] { out[k] = v.string ?? "" }
        return out
    }

    /// Orders RFC 3339 timestamps by instant (falls back to text order when unparsable).
    static func isOlder(_ a: String?, _ b: String?) -> Bool {
        let (a, b) = (a ?? "", b ?? "")
        if let x = epochSeconds(a), let y = epochSeconds(b) { return x < y }
        return a < b
    }

    /// Seconds since 1970 for `YYYY-MM-DDTHH:MM:SS[.frac][Z|±HH:MM]`.
    static func epochSeconds(_ s: String) -> Double? {
        let c = Array(s.utf8)
        func num(_ from: Int, _ len: Int) -> Int? {
            guard from + len <= c.count else { return nil }
            var v = 0
            for k in from..<(from + len) {
                guard c[k] >= 48 && c[k] <= 57 else { return nil }
                v = v * 10 + Int(c[k] - 48)
            }
            return v
        }
        guard c.count >= 19, let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2),
              let h = num(11, 2), let mi = num(14, 2), let sec = num(17, 2) else { return nil }
        var i = 19
        var frac = 0.0
        if i < c.count && c[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            while i < c.count && c[i] >= 48 && c[i] <= 57 { frac += Double(c[i] - 48) * scale; scale /= 10; i += 1 }
        }
        var offset = 0
        if i < c.count && (c[i] == UInt8(ascii: "+") || c[i] == UInt8(ascii: "-")) {
            guard let oh = num(i + 1, 2), let om = num(i + 4, 2) else { return nil }
            offset = (oh * 3600 + om * 60) * (c[i] == UInt8(ascii: "-") ? -1 : 1)
        }
        // Days from civil (Howard Hinnant).
        let yy = mo <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return Double(days * 86400 + h * 3600 + mi * 60 + sec - offset) + frac
    }
}

// MARK: - ModelCatalog

/// The local BentoML store as the engine's catalog.
public struct LocalCatalog: ModelCatalog {
    /// The store.
    public let store: BentoStoreReader

    /// A catalog over the store at `home` (`BENTOML_HOME`).
    public init(home: String) { self.store = BentoStoreReader(home: home) }

    public func model(name: String, version: String) throws(RuntimeError) -> ModelFacts {
        try store.model(name: name, version: version)
    }

    public func bento(tag: String) throws(RuntimeError) -> BentoFacts {
        try store.bento(tag: tag).facts
    }

    public func newestBento(serving modelTag: String) throws(RuntimeError) -> BentoFacts? {
        try store.newestBento(serving: modelTag)?.facts
    }

    public func hostFacts() -> HostFacts {
        let h = readHostFacts()
        return HostFacts(freeMemoryMB: h.freeMemoryMB, cpuCount: h.cpuCount)
    }
}

extension BentoInfo {
    /// What the planner needs to know about this bento.
    public var facts: BentoFacts { BentoFacts(tag: tag, resources: resources, apis: apis, models: models) }
}
