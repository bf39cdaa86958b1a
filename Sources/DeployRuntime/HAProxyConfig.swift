import JSON

/// One server of a weighted route: a slot process listening on a loopback port.
public struct HAProxyServer: Sendable, Hashable {
    /// The slot id; it is the HAProxy server name and the `X-Model-Deployer-Slot` answer header
    /// (`^[a-z0-9][a-z0-9_.-]{0,62}$`, e.g. `blue`, `green`, `c-1a2b3c`).
    public var name: String
    /// The slot's port on 127.0.0.1.
    public var port: Int
    /// Share of traffic relative to the other servers' weights, 0...256 (0: kept warm, no traffic).
    public var weight: Int
    /// The version label sent in `X-Model-Deployer-Version`.
    public var version: String

    /// Creates a backend value.
    public init(name: String, port: Int, weight: Int, version: String) {
        self.name = name
        self.port = port
        self.weight = weight
        self.version = version
    }
}

/// The desired state of one (model, environment) endpoint: its stable port and its weighted servers.
public struct HAProxyRoute: Sendable, Hashable {
    /// Model name.
    public var modelName: String
    /// Environment name.
    public var environment: String
    /// The stable endpoint's port (HAProxy listens on 127.0.0.1:port).
    public var port: Int
    /// The servers, in the order they were given.
    public var backends: [HAProxyServer]
    /// The loopback port where this endpoint's HAProxy serves its Prometheus exporter (`GET /metrics`),
    /// apart from `port` (whose `/metrics` is the model's own, BentoML's); nil for a route written before
    /// metrics existed, until its process is next replaced.
    public var metricsPort: Int?

    /// Creates a route value.
    public init(modelName: String, environment: String, port: Int, backends: [HAProxyServer], metricsPort: Int? = nil) {
        self.modelName = modelName
        self.environment = environment
        self.port = port
        self.backends = backends
        self.metricsPort = metricsPort
    }

    /// The frontend/backend/map identifier (collision-free, see `RuntimeNames.routeIdentifier`).
    public var identifier: String { RuntimeNames.routeIdentifier(modelName: modelName, environment: environment) }
    /// The HAProxy backend name.
    public var backendName: String { "be_" + identifier }
    /// The HAProxy frontend name.
    public var frontendName: String { "fe_" + identifier }
}

/// Pure parts of the HAProxy router: validation, config and state-file rendering, and the ordering of
/// runtime commands. Nothing here touches a process or a file.
public enum HAProxyConfig {
    /// Highest weight HAProxy accepts for a server.
    public static let maxWeight = 256

    /// Checks everything that reaches the config or a runtime command.
    /// - Throws: `invalid_name` for a bad model/environment/server name, version or port, or a duplicate server
    ///   name or port; `invalid_weights` for a weight outside 0...256 or a route whose weights sum to 0.
    public static func validate(_ route: HAProxyRoute) throws(RuntimeError) {
        try RuntimeNames.check(route.modelName, "model name")
        try RuntimeNames.check(route.environment, "environment")
        guard (1...65535).contains(route.port) else { throw .invalidName("router port \(route.port) must be 1-65535") }
        if let m = route.metricsPort {
            guard (1...65535).contains(m), m != route.port, !route.backends.contains(where: { $0.port == m }) else {
                throw .invalidName("metrics port \(m) must be 1-65535 and differ from the endpoint's and its backends' ports")
            }
        }
        guard !route.backends.isEmpty else {
            throw RuntimeError(code: "invalid_weights", message: "a route needs at least one backend (remove the route instead)")
        }
        var names = Set<String>()
        var ports = Set<Int>()
        for b in route.backends {
            try RuntimeNames.check(b.name, "backend name")
            guard RuntimeNames.isValidVersion(b.version) else { throw .invalidName("version '\(b.version)' is not valid") }
            guard (1...65535).contains(b.port) else { throw .invalidName("backend port \(b.port) must be 1-65535") }
            guard b.port != route.port else { throw .invalidName("backend \(b.name) cannot use the router port \(b.port)") }
            guard names.insert(b.name).inserted else { throw .invalidName("backend name '\(b.name)' appears twice") }
            guard ports.insert(b.port).inserted else { throw .invalidName("backend port \(b.port) appears twice") }
            guard (0...maxWeight).contains(b.weight) else {
                throw RuntimeError(code: "invalid_weights", message: "weight \(b.weight) of \(b.name) must be 0-\(maxWeight)")
            }
        }
        // A route whose weights all are 0 answers 503 to everyone; that is never a traffic shift anyone wants.
        guard route.backends.contains(where: { $0.weight > 0 }) else {
            throw RuntimeError(code: "invalid_weights", message: "at least one backend needs a weight above 0")
        }
    }

    /// Unix socket paths are limited to 107 bytes; a longer home cannot host the router.
    static func checkSocketPath(_ path: String) throws(RuntimeError) {
        guard path.utf8.count <= 107 else {
            throw RuntimeError(code: "router_config_invalid", message: "socket path \(path) is longer than 107 bytes; use a shorter home")
        }
    }

    /// The files of the HAProxy process serving the endpoint on `port` (one process per endpoint, so adding
    /// or removing an endpoint never reloads another one; named by port to keep socket paths short).
    public static func processFiles(prefix: String, port: Int) -> (config: String, pid: String, socket: String) {
        let base = prefix + "/ep-\(port)"
        return (base + ".cfg", base + ".pid", base + ".sock")
    }

    /// The config of the HAProxy process serving `route`, under `prefix` (absolute, no trailing slash).
    ///
    /// Client keep-alive stays on: traffic changes are runtime commands, so nothing closes idle client
    /// connections. `retry-on conn-failure empty-response` with `redispatch` lets a request that met a slot
    /// closing an idle connection (or a slot just gone) go to another server instead of failing; inference
    /// requests are safe to resend.
    /// - Parameter logPort: the loopback UDP port the agent reads request logs on.
    public static func render(prefix: String, route: HAProxyRoute, logPort: Int) throws(RuntimeError) -> String {
        try validate(route)
        guard (1...65535).contains(logPort) else { throw .invalidName("log port \(logPort) must be 1-65535") }
        let files = processFiles(prefix: prefix, port: route.port)
        try checkSocketPath(files.socket)
        var out = """
        # Generated by model-deployer from routes.json; rewritten when this endpoint's process starts. Do not
        # edit: weights change at run time over \(files.socket).
        # model-deployer route: model=\(route.modelName) environment=\(route.environment)
        global
            pidfile \(files.pid)
            stats socket \(files.socket) mode 600 level admin
            stats timeout 10s
            log 127.0.0.1:\(logPort) len 1024 format raw local0
            maxconn 4096

        defaults
            mode http
            log global
            log-format "%b %s %ST %Ta"
            option http-keep-alive
            option redispatch 1
            retries 3
            retry-on conn-failure empty-response
            timeout connect 2s
            timeout client 120s
            timeout server 120s
            timeout http-request 30s
            timeout http-keep-alive 30s
            timeout queue 10s

        frontend \(route.frontendName)
            bind 127.0.0.1:\(route.port)
            default_backend \(route.backendName)

        backend \(route.backendName)
            balance roundrobin
            http-response set-header X-Model-Deployer-Slot %[srv_name]
            http-response set-header X-Model-Deployer-Version %[srv_name,map(\(mapPath(prefix: prefix, route: route)),unknown)]

        """
        for b in route.backends {
            out += "    server \(b.name) 127.0.0.1:\(b.port) weight \(b.weight)\n"
        }
        return out + metricsFrontend(route)
    }

    /// The endpoint's Prometheus exporter (HAProxy's built-in `prometheus-exporter` service, `USE_PROMEX`) on
    /// its own loopback port: per-server (= per-slot) request, response-code, error and time metrics of the
    /// backend, labelled `proxy="be_<id>"`, `server="<slot>"`. Empty when the route has no metrics port.
    public static func metricsFrontend(_ route: HAProxyRoute) -> String {
        guard let m = route.metricsPort else { return "" }
        return """

        frontend metrics
            bind 127.0.0.1:\(m)
            no log
            http-request use-service prometheus-exporter if { path /metrics }
            http-request return status 404 content-type text/plain string "GET /metrics\\n"

        """
    }

    /// The map file (server name -> version) of `route`.
    public static func mapPath(prefix: String, route: HAProxyRoute) -> String {
        prefix + "/maps/" + route.identifier + ".map"
    }

    /// The map file's content.
    public static func renderMap(_ route: HAProxyRoute) -> String {
        route.backends.map { "\($0.name) \($0.version)\n" }.joined()
    }

    // MARK: - state file

    /// The router's own state (`routes.json`): every route with its servers and weights, so a restarted
    /// HAProxy is given a config that serves what the last change left.
    public static func encodeState(_ routes: [HAProxyRoute]) -> [UInt8] {
        let list: [JSONValue] = routes.sorted(by: { $0.identifier < $1.identifier }).map { r in
            .object([
                "model": .string(r.modelName), "environment": .string(r.environment), "port": .integer(r.port),
                "metrics_port": r.metricsPort.map { .integer($0) } ?? .null,
                "backends": .array(r.backends.map { b in
                    .object(["name": .string(b.name), "port": .integer(b.port), "weight": .integer(b.weight),
                             "version": .string(b.version)])
                }),
            ])
        }
        return JSONValue.object(["format": 1, "routes": .array(list)]).jsonBytes + [10]
    }

    /// Parses `routes.json`; every route is validated again (the file may have been edited by hand).
    /// - Throws: `router_state_invalid` when the file is not a state file this version wrote.
    public static func decodeState(_ bytes: [UInt8]) throws(RuntimeError) -> [HAProxyRoute] {
        func bad(_ why: String) -> RuntimeError { RuntimeError(code: "router_state_invalid", message: "routes.json: \(why)") }
        let root: JSONValue
        do { root = try JSONValue.parse(bytes) } catch { throw bad(error.description) }
        guard root["format"]?.intValue == 1, let list = root["routes"]?.arrayValue else { throw bad("not a format 1 state file") }
        var routes: [HAProxyRoute] = []
        var seen = Set<String>()
        for item in list {
            guard let model = item["model"]?.stringValue, let env = item["environment"]?.stringValue,
                  let port = item["port"]?.intValue, let backends = item["backends"]?.arrayValue else {
                throw bad("a route lacks model, environment, port or backends")
            }
            var bs: [HAProxyServer] = []
            for b in backends {
                guard let name = b["name"]?.stringValue, let bp = b["port"]?.intValue, let w = b["weight"]?.intValue,
                      let v = b["version"]?.stringValue, let bpi = Int(exactly: bp), let wi = Int(exactly: w) else {
                    throw bad("a backend of \(model)/\(env) lacks name, port, weight or version")
                }
                bs.append(HAProxyServer(name: name, port: bpi, weight: wi, version: v))
            }
            guard let pi = Int(exactly: port) else { throw bad("port of \(model)/\(env) is out of range") }
            var metricsPort: Int?
            if let m = item["metrics_port"], !m.isNull {
                guard let mi = m.intValue.flatMap({ Int(exactly: $0) }) else { throw bad("metrics_port of \(model)/\(env) is not a port") }
                metricsPort = mi
            }
            let route = HAProxyRoute(modelName: model, environment: env, port: pi, backends: bs, metricsPort: metricsPort)
            do { try validate(route) } catch { throw bad(error.message) }
            guard seen.insert(route.identifier).inserted else { throw bad("\(model)/\(env) appears twice") }
            routes.append(route)
        }
        return routes
    }
}

/// A server as HAProxy reports it at run time (`show servers state`).
public struct HAProxyServerState: Sendable, Hashable {
    /// Server name (the slot id).
    public var name: String
    /// Its port on 127.0.0.1.
    public var port: Int
    /// The weight set by configuration or `set server ... weight`.
    public var weight: Int
    /// `false` while the server is in maintenance (disabled, or added and not yet enabled) or draining.
    public var enabled: Bool

    /// Creates a server state value.
    public init(name: String, port: Int, weight: Int, enabled: Bool) {
        self.name = name
        self.port = port
        self.weight = weight
        self.enabled = enabled
    }
}

/// One runtime change to a backend, in the order `HAProxyPlan.steps` puts them.
public enum HAProxyStep: Sendable, Hashable {
    /// `add server` (created in maintenance, so it takes no traffic yet) and its version in the map.
    case add(server: String, port: Int, weight: Int, version: String)
    /// `set map` for a server whose version label changed.
    case setVersion(server: String, version: String)
    /// `set server ... addr 127.0.0.1 port P` for a server name that now points at another port.
    case setAddress(server: String, port: Int)
    /// `set server ... weight W`.
    case setWeight(server: String, weight: Int)
    /// `enable server` (leave maintenance).
    case enable(server: String)
    /// `disable server`, wait until its sessions have ended, `del server`, `del map`.
    case disableDrainDelete(server: String)
}

/// Orders the runtime commands that turn the servers HAProxy has into the ones wanted.
public enum HAProxyPlan {
    /// The steps from `current` to `desired`, safe under load:
    /// 1. new servers are added (in maintenance) with their weight and version, then enabled;
    /// 2. weights that rise (and servers leaving maintenance) are applied before any weight falls, so the sum
    ///    of enabled weights never drops to 0 while `desired` has a positive weight;
    /// 3. weights that fall;
    /// 4. servers no longer wanted are disabled, drained and deleted last.
    public static func steps(current: [HAProxyServerState], currentVersions: [String: String],
                             desired: [HAProxyServer]) -> [HAProxyStep] {
        let byName = Dictionary(current.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let wanted = Set(desired.map(\.name))
        var raise: [HAProxyStep] = []
        var lower: [HAProxyStep] = []
        for d in desired {
            guard let c = byName[d.name] else {
                raise += [.add(server: d.name, port: d.port, weight: d.weight, version: d.version), .enable(server: d.name)]
                continue
            }
            var prelude: [HAProxyStep] = []
            if currentVersions[d.name] != d.version { prelude.append(.setVersion(server: d.name, version: d.version)) }
            if c.port != d.port { prelude.append(.setAddress(server: d.name, port: d.port)) }
            let effective = c.enabled ? c.weight : 0
            if d.weight >= effective {
                raise += prelude
                if d.weight != c.weight { raise.append(.setWeight(server: d.name, weight: d.weight)) }
                if !c.enabled { raise.append(.enable(server: d.name)) }
            } else {
                lower += prelude
                lower.append(.setWeight(server: d.name, weight: d.weight))
            }
        }
        let remove = current.filter { !wanted.contains($0.name) }.map { HAProxyStep.disableDrainDelete(server: $0.name) }
        return raise + lower + remove
    }
}
