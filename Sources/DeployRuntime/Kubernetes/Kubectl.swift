import Glibc
import JSON
import Synchronization

/// The agent's only way to the cluster: `kubectl`, so the user's kubeconfig, auth plugins and TLS settings
/// apply unchanged and the agent carries no TLS or credential code. Two transports:
///
/// - `proxy` (default): one long-running `kubectl proxy --unix-socket` per configuration (``KubeProxy``);
///   each call is one HTTP request on that socket: reads are GETs, server-side apply a PATCH with
///   `application/apply-patch+yaml`, patches JSON or merge patches, all under the field manager.
/// - `exec` (`MODEL_DEPLOYER_KUBE_TRANSPORT=exec`): one kubectl process per call with argument arrays,
///   `--context` (when set) and `-n`, `-o json` reads, `apply --server-side` writes.
///
/// Both give the same answers and the same error codes; every call has a short timeout. Failures are
/// `RuntimeError`s with a stable code and kubectl's own stderr in the message:
/// `kubectl_not_found`, `kubectl_timeout`, `kubectl_failed`, `kube_not_found`, `kube_conflict`,
/// `kube_invalid_object`, `kube_forbidden`, `kube_unreachable`, `kube_service_unavailable` (the service
/// proxy found no ready endpoint), `kube_bad_response`.
public struct Kubectl: Sendable {
    /// The field manager of every write.
    public static let fieldManager = "model-deployer"
    /// Resolved path of the kubectl executable.
    public var executable: String
    /// kubeconfig context, or nil for the current one.
    public var context: String?
    /// Namespace for namespaced calls.
    public var namespace: String
    /// Environment of the child (KUBECONFIG and PATH matter).
    public var environment: [String: String]
    /// Deadline of one call.
    public var timeout: Duration
    /// How calls reach the API server.
    public var transport: Transport
    /// The shared `kubectl proxy` of this configuration (proxy transport).
    let proxy: KubeProxy?

    /// How `Kubectl` reaches the API server (`MODEL_DEPLOYER_KUBE_TRANSPORT`).
    public enum Transport: String, Sendable {
        /// One kubectl process per call.
        case exec
        /// HTTP on the Unix socket of one long-running `kubectl proxy`.
        case proxy
    }
    /// The last list read and the runs since (shared by copies of this value; see ``list(_:selector:reusingWithinMs:)``).
    let recent = RecentRead()

    /// A kubectl for `namespace`. The executable is `MODEL_DEPLOYER_KUBECTL` when set, else `kubectl` on PATH.
    /// The transport is `MODEL_DEPLOYER_KUBE_TRANSPORT` (`proxy`, the default, or `exec`); the proxy's
    /// socket, pid and log files go to `stateDirectory` (default `$MODEL_DEPLOYER_HOME/kube`, else
    /// `/tmp/model-deployer-<uid>/kube`). Nothing starts before the first call.
    /// - Throws: `kubectl_not_found`, `kube_invalid_config` (a bad namespace, context or transport).
    public init(context: String?, namespace: String, environment: [String: String]? = nil,
                timeout: Duration = .seconds(15), stateDirectory: String? = nil) throws(RuntimeError) {
        let env = environment ?? ProcessLauncher.currentEnvironment()
        let name = env["MODEL_DEPLOYER_KUBECTL"].flatMap { $0.isEmpty ? nil : $0 } ?? "kubectl"
        do {
            self.executable = try ProcessLauncher.resolve(name, environment: env)
        } catch {
            throw RuntimeError(code: "kubectl_not_found",
                               message: "\(name) not found (set MODEL_DEPLOYER_KUBECTL or put kubectl on PATH): \(error.message)")
        }
        try KubeTarget(context: context, namespace: namespace, imageTemplate: "x").validate()
        self.context = context
        self.namespace = namespace
        self.environment = env
        self.timeout = timeout
        switch env["MODEL_DEPLOYER_KUBE_TRANSPORT"] ?? "" {
        case "", "proxy": transport = .proxy
        case "exec": transport = .exec
        case let other: throw .kubeConfig("MODEL_DEPLOYER_KUBE_TRANSPORT is '\(other)'; use proxy or exec")
        }
        if transport == .proxy {
            let home = env["MODEL_DEPLOYER_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            let dir = stateDirectory ?? home.map { $0 + "/kube" } ?? KubeProxy.tmpRoot + "/kube"
            proxy = KubeProxy.shared(executable: executable, context: context, environment: env, stateDirectory: dir)
        } else {
            proxy = nil
        }
    }

    /// Runs kubectl with `arguments` (after the global flags) and returns stdout.
    /// - Throws: see the type's documentation.
    public func run(_ arguments: [String], stdin: [UInt8] = [], namespaced: Bool = true) async throws(RuntimeError) -> [UInt8] {
        var args: [String] = []
        if let context { args += ["--context", context] }
        if namespaced { args += ["-n", namespace] }
        // kubectl sends --request-timeout as a `?timeout=` query parameter, which the service proxy would
        // pass on to the model server; raw calls rely on the process deadline alone.
        if !arguments.contains("--raw") { args += ["--request-timeout", "\(Int(timeout.components.seconds))s"] }
        args += arguments
        recent.runStarted()
        let startedAt = wallClockSeconds()
        let t0 = monotonicMs()
        let result: Result<CommandOutput, RuntimeError>
        do throws(RuntimeError) {
            result = .success(try await CommandRunner.run(path: executable, arguments: args, environment: environment, stdin: stdin,
                                                          timeoutMs: Double(timeout.components.seconds) * 1000 + 2000))
        } catch {
            result = .failure(error)
        }
        if traced { trace(arguments, startedAt: startedAt, ms: monotonicMs() - t0, status: (try? result.get())?.status) }
        let out = try result.get()
        guard out.status == 0 else { throw Kubectl.classify(stderr: out.stderr, status: out.status, arguments: arguments) }
        return out.stdout
    }

    /// `true` when the agent logs at debug level (`MODEL_DEPLOYER_LOG_LEVEL=debug` in kubectl's environment):
    /// then every kubectl run is one JSON line on stderr, so a benchmark can tell the agent's own time from
    /// kubectl's (Benchmarks/kube-bench/agent_bench.py).
    var traced: Bool { environment["MODEL_DEPLOYER_LOG_LEVEL"]?.lowercased() == "debug" }

    /// One log line per kubectl run: when it started (wall clock, s), how long it took (ms), its verb and
    /// kind (never the patch or body: they may carry a model's inputs).
    private func trace(_ arguments: [String], startedAt: Double, ms: Double, status: Int32?) {
        let what = arguments.prefix { !$0.hasPrefix("-") }.prefix(2).joined(separator: " ")
        trace(what: what, raw: arguments.contains("--raw"), startedAt: startedAt, ms: ms,
              extra: ["transport": "exec", "exit": status.map { .int(Int64($0)) } ?? .null])
    }

    /// The line itself; the proxy transport logs `what` as the exec one would (`get deployment`, `apply`,
    /// `patch service`) plus the HTTP status and method.
    private func trace(what: String, raw: Bool, startedAt: Double, ms: Double, extra: [String: JSONValue]) {
        var fields: [String: JSONValue] = ["ts": .double(startedAt), "level": "debug", "msg": "kubectl", "component": "kubectl",
                                           "kubectl": .string(what), "raw": .bool(raw), "ms": .double((ms * 10).rounded() / 10)]
        for (k, v) in extra { fields[k] = v }
        let line = JSONValue.object(fields)
        var bytes = line.jsonBytes
        bytes.append(0x0A)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    /// Runs kubectl and parses its stdout as JSON.
    public func json(_ arguments: [String], stdin: [UInt8] = [], namespaced: Bool = true) async throws(RuntimeError) -> JSONValue {
        let bytes = try await run(arguments, stdin: stdin, namespaced: namespaced)
        do {
            return try JSONValue.parse(bytes)
        } catch {
            throw RuntimeError(code: "kube_bad_response",
                               message: "kubectl \(arguments.first ?? "") printed no JSON: \(error.description)")
        }
    }

    /// Server-side apply of one object under the field manager `model-deployer`, taking over fields another
    /// manager changed (the agent owns these objects). Returns the object as stored.
    public func apply(_ object: JSONValue) async throws(RuntimeError) -> JSONValue {
        guard let proxy else {
            return try await json(["apply", "--server-side", "--field-manager=\(Kubectl.fieldManager)", "--force-conflicts",
                                   "-o", "json", "-f", "-"], stdin: object.jsonBytes)
        }
        let r = try KubeAPI.resource(of: object)
        let path = try KubeAPI.objectPath(r, namespace: namespace, name: object["metadata"]?["name"]?.stringValue ?? "")
        return try await requestJSON(proxy, "PATCH", path + KubeAPI.applyQuery, contentType: "application/apply-patch+yaml",
                                     body: object.jsonBytes, what: "apply")
    }

    /// Creates one object (fails with `kube_conflict` when it exists). Returns the object as stored.
    public func create(_ object: JSONValue) async throws(RuntimeError) -> JSONValue {
        guard let proxy else {
            return try await json(["create", "--field-manager=\(Kubectl.fieldManager)", "-o", "json", "-f", "-"], stdin: object.jsonBytes)
        }
        let r = try KubeAPI.resource(of: object)
        try KubeAPI.checkName(object["metadata"]?["name"]?.stringValue ?? "")
        return try await requestJSON(proxy, "POST", r.collection(namespace: namespace) + KubeAPI.writeQuery,
                                     contentType: "application/json", body: object.jsonBytes, what: "create")
    }

    /// `kubectl get KIND NAME -o json`, or nil when it does not exist.
    public func get(_ kind: String, _ name: String) async throws(RuntimeError) -> JSONValue? {
        do {
            guard let proxy else { return try await json(["get", kind, name, "-o", "json"]) }
            let path = try KubeAPI.objectPath(try KubeAPI.resource(kind), namespace: namespace, name: name)
            return try await requestJSON(proxy, "GET", path, what: "get \(kind)")
        } catch where error.code == "kube_not_found" {
            return nil
        }
    }

    /// The items of `kubectl get KINDS -l SELECTOR -o json` (every object of those kinds when `selector` is empty;
    /// `fieldSelector` narrows further, e.g. `involvedObject.kind=Pod` for events).
    ///
    /// With `reusingWithinMs`, the same list read by this kubectl less than that long ago is answered again
    /// without a new call, as long as no other call (a write above all) started since that read did: a
    /// rollback asks "is the previous version warm?" and then "is it still running?" back to back. The
    /// answer is as old as a new read would be by the time the caller acts on it.
    public func list(_ kinds: String, selector: String, fieldSelector: String = "",
                     reusingWithinMs: Double? = nil) async throws(RuntimeError) -> [JSONValue] {
        let key = [kinds, selector, fieldSelector]
        if let reusingWithinMs, let items = recent.items(key, withinMs: reusingWithinMs) { return items }
        let before = recent.generation
        var items: [JSONValue] = []
        var calls = 0
        if let proxy {
            // One request per kind, in the order given (as kubectl prints them).
            for kind in kinds.split(separator: ",").map(String.init) {
                let r = try KubeAPI.resource(kind)
                let path = try KubeAPI.listPath(r, namespace: namespace, labelSelector: selector, fieldSelector: fieldSelector)
                items += try KubeAPI.items(ofList: try await requestJSON(proxy, "GET", path, what: "get \(kind)"), r)
                calls += 1
            }
        } else {
            let list = try await json(["get", kinds] + (selector.isEmpty ? [] : ["-l", selector])
                                      + (fieldSelector.isEmpty ? [] : ["--field-selector", fieldSelector]) + ["-o", "json"])
            guard let found = list["items"]?.arrayValue else {
                throw RuntimeError(code: "kube_bad_response", message: "kubectl get \(kinds) returned no items list")
            }
            items = found
            calls = 1
        }
        recent.store(key, items, generation: before + calls)
        return items
    }

    /// The object `kind`/`name` as the last list read (see ``list(_:selector:fieldSelector:reusingWithinMs:)``) found it,
    /// when that read is younger than `withinMs` and no other call started since; else nil (read it).
    func recentObject(kind: String, name: String, withinMs: Double) -> JSONValue? {
        recent.object(kind: kind, name: name, withinMs: withinMs)
    }

    /// A JSON patch (RFC 6902) of one object; `test` operations in it make the patch conditional.
    public func jsonPatch(_ kind: String, _ name: String, _ operations: [JSONValue]) async throws(RuntimeError) -> JSONValue {
        guard let proxy else {
            return try await json(["patch", kind, name, "--type=json", "--field-manager=\(Kubectl.fieldManager)",
                                   "-p", JSONValue.array(operations).jsonString, "-o", "json"])
        }
        let path = try KubeAPI.objectPath(try KubeAPI.resource(kind), namespace: namespace, name: name)
        return try await requestJSON(proxy, "PATCH", path + KubeAPI.writeQuery, contentType: "application/json-patch+json",
                                     body: JSONValue.array(operations).jsonBytes, what: "patch \(kind)")
    }

    /// A merge patch (RFC 7386) of one object.
    public func mergePatch(_ kind: String, _ name: String, _ patch: JSONValue) async throws(RuntimeError) -> JSONValue {
        guard let proxy else {
            return try await json(["patch", kind, name, "--type=merge", "--field-manager=\(Kubectl.fieldManager)",
                                   "-p", patch.jsonString, "-o", "json"])
        }
        let path = try KubeAPI.objectPath(try KubeAPI.resource(kind), namespace: namespace, name: name)
        return try await requestJSON(proxy, "PATCH", path + KubeAPI.writeQuery, contentType: "application/merge-patch+json",
                                     body: patch.jsonBytes, what: "patch \(kind)")
    }

    /// `kubectl delete KIND NAME` (no error when already gone; dependents are deleted in the background).
    public func delete(_ kind: String, _ name: String) async throws(RuntimeError) {
        guard let proxy else {
            _ = try await run(["delete", kind, name, "--ignore-not-found", "--wait=false"])
            return
        }
        let path = try KubeAPI.objectPath(try KubeAPI.resource(kind), namespace: namespace, name: name)
        do {
            _ = try await request(proxy, "DELETE", path, contentType: "application/json", body: KubeAPI.deleteOptions.jsonBytes,
                                  what: "delete \(kind)")
        } catch where error.code == "kube_not_found" {}
    }

    /// GET through the API server (`kubectl get --raw PATH`); returns the body. `headers` go with the
    /// request on the proxy transport only (kubectl's `--raw` sends none of its caller's).
    public func rawGet(_ path: String, headers: [String: String] = [:]) async throws(RuntimeError) -> [UInt8] {
        try Kubectl.checkRawPath(path)
        guard let proxy else { return try await run(["get", "--raw", path], namespaced: false) }
        return try await request(proxy, "GET", path, what: "get", raw: true, extraHeaders: headers)
    }

    /// POST through the API server (`kubectl create --raw PATH -f -`, body on stdin); returns the body.
    /// `headers` as for ``rawGet(_:headers:)``.
    public func rawPost(_ path: String, body: [UInt8], headers: [String: String] = [:]) async throws(RuntimeError) -> [UInt8] {
        try Kubectl.checkRawPath(path)
        guard let proxy else { return try await run(["create", "--raw", path, "-f", "-"], stdin: body, namespaced: false) }
        return try await request(proxy, "POST", path, contentType: "application/json", body: body, what: "create", raw: true,
                                 extraHeaders: headers)
    }

    // MARK: - proxy transport

    /// One request through the proxy, parsed as JSON.
    private func requestJSON(_ proxy: KubeProxy, _ method: String, _ path: String, contentType: String? = nil,
                             body: [UInt8]? = nil, what: String) async throws(RuntimeError) -> JSONValue {
        let bytes = try await request(proxy, method, path, contentType: contentType, body: body, what: what)
        do {
            return try JSONValue.parse(bytes)
        } catch {
            throw RuntimeError(code: "kube_bad_response", message: "\(method) \(path): the API server's answer is not JSON: \(error.description)")
        }
    }

    /// One request through the proxy: the body of a 2xx answer, else the classified error (see
    /// ``KubeAPI/classify(status:body:what:)``). Traced like a kubectl run.
    private func request(_ proxy: KubeProxy, _ method: String, _ path: String, contentType: String? = nil,
                         body: [UInt8]? = nil, what: String, raw: Bool = false,
                         extraHeaders: [String: String] = [:]) async throws(RuntimeError) -> [UInt8] {
        recent.runStarted()
        let startedAt = wallClockSeconds()
        let t0 = monotonicMs()
        var headers = extraHeaders.merging(["Accept": "application/json"]) { _, ours in ours }
        if let contentType { headers["Content-Type"] = contentType }
        let timeoutMs = Int(timeout.components.seconds) * 1000
        let sent = headers
        let result = await Blocking.run { () -> Result<HTTPResponse, RuntimeError> in
            Result { () throws(RuntimeError) -> HTTPResponse in
                try Kubectl.proxyRequestSync(proxy, method: method, path: path, headers: sent, body: body, timeoutMs: timeoutMs)
            }
        }
        if traced {
            trace(what: what, raw: raw, startedAt: startedAt, ms: monotonicMs() - t0,
                  extra: ["transport": "proxy", "method": .string(method),
                          "http": (try? result.get()).map { .int(Int64($0.status)) } ?? .null])
        }
        let response = try result.get()
        guard response.isSuccess else {
            throw KubeAPI.classify(status: response.status, body: response.body, what: "\(method) \(what)")
        }
        return response.body
    }

    /// The blocking body of a proxy request. A socket that refuses the connection (the proxy died) gets the
    /// proxy restarted once and the request sent again: it never reached the API server, so a write is not
    /// doubled. A connection the proxy broke off (reset, closed without an answer: it died while the
    /// request was in flight) is retried the same way for a GET only; a write may have reached the server,
    /// so it fails with `kube_unreachable` (its caller's next read tells what happened) and the next call
    /// finds the dead proxy and restarts it.
    static func proxyRequestSync(_ proxy: KubeProxy, method: String, path: String, headers: [String: String], body: [UInt8]?,
                                 timeoutMs: Int) throws(RuntimeError) -> HTTPResponse {
        var (socket, generation) = try proxy.socket()
        var restarted = false
        while true {
            do {
                return try HTTPClient.requestSync(method: method, unixSocket: socket, path: path, headers: headers, body: body,
                                                  timeoutMs: timeoutMs)
            } catch {
                switch error.code {
                case "connection_refused" where !restarted:
                    restarted = true
                    (socket, generation) = try proxy.restart(after: generation)
                case "connection_refused":
                    throw RuntimeError(code: "kube_unreachable",
                                       message: "kubectl proxy was restarted but its socket \(socket) still refuses connections: \(error.message)")
                case "http_failed" where method == "GET" && !restarted:
                    restarted = true
                    (socket, generation) = try proxy.restart(after: generation)
                case "http_timeout":
                    throw RuntimeError(code: "kubectl_timeout", message: "\(method) \(path) through kubectl proxy did not finish in \(timeoutMs) ms")
                default:
                    throw RuntimeError(code: "kube_unreachable",
                                       message: "\(method) \(path) through kubectl proxy (\(socket)) failed: \(error.message)")
                }
            }
        }
    }

    static func checkRawPath(_ path: String) throws(RuntimeError) {
        guard path.hasPrefix("/"), !path.contains(".."),
              !path.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7f || $0 == UInt8(ascii: "#") }) else {
            throw RuntimeError(code: "invalid_name", message: "raw API path '\(path)' is not a plain absolute path")
        }
    }

    /// Maps kubectl's stderr to a stable code. kubectl prints `Error from server (Reason): ...` for API
    /// errors; the reason in parentheses is Kubernetes' own stable `StatusReason`.
    static func classify(stderr: String, status: Int32, arguments: [String]) -> RuntimeError {
        let text = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        let shown = text.count > 2000 ? String(text.prefix(2000)) + "..." : text
        let what = "kubectl \(arguments.prefix(3).joined(separator: " ")) exited \(status): \(shown)"
        let code: String
        if text.contains("(NotFound)") || text.contains(" not found") && text.contains("Error from server") {
            code = "kube_not_found"
        } else if text.contains("(Conflict)") || text.contains("(AlreadyExists)") {
            code = "kube_conflict"
        } else if text.contains("(Invalid)") || text.contains("is invalid") || text.contains("(BadRequest)") {
            // Also a JSON patch whose `test` operation failed ("The request is invalid"): the caller that
            // sent the test re-reads the object to tell a lost race from a bad patch.
            code = "kube_invalid_object"
        } else if text.contains("(ServiceUnavailable)") {
            code = "kube_service_unavailable"
        } else if text.contains("(Forbidden)") || text.contains("(Unauthorized)") {
            code = "kube_forbidden"
        } else if text.contains("connection refused") || text.contains("Unable to connect to the server")
                    || text.contains("dial tcp") || text.contains("i/o timeout") || text.contains("context deadline exceeded") {
            code = "kube_unreachable"
        } else {
            code = "kubectl_failed"
        }
        return RuntimeError(code: code, message: what)
    }
}

private extension String {
    func trimmingCharacters(in _: WhitespaceSet) -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}

private enum WhitespaceSet { case whitespacesAndNewlines }

/// Wall-clock seconds (for log lines a reader matches against its own clock).
func wallClockSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// The last list a kubectl read, valid until any other kubectl run starts (see `Kubectl.list`).
final class RecentRead: Sendable {
    private struct Entry {
        var key: [String]
        var items: [JSONValue]
        var atMs: Double
        var generation: Int
    }

    private let state = Mutex<(generation: Int, entry: Entry?)>((0, nil))

    /// Runs started so far.
    var generation: Int { state.withLock { $0.generation } }

    /// A kubectl run starts: whatever was read before may be changed by it.
    func runStarted() {
        state.withLock { $0.generation += 1 }
    }

    /// Keeps `items` as the answer to `key`, read by the run numbered `generation` (only if no other run
    /// started after it).
    func store(_ key: [String], _ items: [JSONValue], generation: Int) {
        state.withLock { s in
            guard s.generation == generation else { s.entry = nil; return }
            s.entry = Entry(key: key, items: items, atMs: monotonicMs(), generation: generation)
        }
    }

    func items(_ key: [String], withinMs: Double) -> [JSONValue]? {
        state.withLock { s in
            guard let e = s.entry, e.key == key, e.generation == s.generation, monotonicMs() - e.atMs < withinMs else { return nil }
            return e.items
        }
    }

    func object(kind: String, name: String, withinMs: Double) -> JSONValue? {
        state.withLock { s in
            guard let e = s.entry, e.generation == s.generation, monotonicMs() - e.atMs < withinMs else { return nil }
            return e.items.first { $0["kind"]?.stringValue == kind && $0["metadata"]?["name"]?.stringValue == name }
        }
    }
}
