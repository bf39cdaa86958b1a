import Glibc
import JSON
import Synchronization

/// The agent's only way to the cluster: `kubectl` with argument arrays, so the user's kubeconfig, auth
/// plugins and TLS settings apply unchanged and the agent carries no TLS or credential code.
///
/// Every call passes `--context` (when set) and `-n`, reads with `-o json`, writes with server-side apply
/// or patches under the field manager `model-deployer`, and has a short timeout. Failures are
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
    /// The last list read and the runs since (shared by copies of this value; see ``list(_:selector:reusingWithinMs:)``).
    let recent = RecentRead()

    /// A kubectl for `namespace`. The executable is `MODEL_DEPLOYER_KUBECTL` when set, else `kubectl` on PATH.
    /// - Throws: `kubectl_not_found`, `kube_invalid_config` (a bad namespace or context).
    public init(context: String?, namespace: String, environment: [String: String]? = nil,
                timeout: Duration = .seconds(15)) throws(RuntimeError) {
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
        let line: JSONValue = ["ts": .double(startedAt), "level": "debug", "msg": "kubectl", "component": "kubectl",
                               "kubectl": .string(what), "raw": .bool(arguments.contains("--raw")), "ms": .double((ms * 10).rounded() / 10),
                               "exit": status.map { .int(Int64($0)) } ?? .null]
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
        try await json(["apply", "--server-side", "--field-manager=\(Kubectl.fieldManager)", "--force-conflicts",
                        "-o", "json", "-f", "-"], stdin: object.jsonBytes)
    }

    /// `kubectl get KIND NAME -o json`, or nil when it does not exist.
    public func get(_ kind: String, _ name: String) async throws(RuntimeError) -> JSONValue? {
        do {
            return try await json(["get", kind, name, "-o", "json"])
        } catch where error.code == "kube_not_found" {
            return nil
        }
    }

    /// The items of `kubectl get KINDS -l SELECTOR -o json` (every object of those kinds when `selector` is empty).
    ///
    /// With `reusingWithinMs`, the same list read by this kubectl less than that long ago is answered again
    /// without a new process, as long as no other kubectl run (a write above all) started since that read
    /// did: a rollback asks "is the previous version warm?" and then "is it still running?" back to back,
    /// and each kubectl process costs 100-250 ms here, several times the API round trip. The answer is
    /// as old as a new read would be by the time the caller acts on it (one process start-up later).
    public func list(_ kinds: String, selector: String, reusingWithinMs: Double? = nil) async throws(RuntimeError) -> [JSONValue] {
        let key = [kinds, selector]
        if let reusingWithinMs, let items = recent.items(key, withinMs: reusingWithinMs) { return items }
        let generation = recent.generation + 1
        let list = try await json(["get", kinds] + (selector.isEmpty ? [] : ["-l", selector]) + ["-o", "json"])
        guard let items = list["items"]?.arrayValue else {
            throw RuntimeError(code: "kube_bad_response", message: "kubectl get \(kinds) returned no items list")
        }
        recent.store(key, items, generation: generation)
        return items
    }

    /// The object `kind`/`name` as the last list read (see ``list(_:selector:reusingWithinMs:)``) found it,
    /// when that read is younger than `withinMs` and no other kubectl run started since; else nil (read it).
    func recentObject(kind: String, name: String, withinMs: Double) -> JSONValue? {
        recent.object(kind: kind, name: name, withinMs: withinMs)
    }

    /// A JSON patch (RFC 6902) of one object; `test` operations in it make the patch conditional.
    public func jsonPatch(_ kind: String, _ name: String, _ operations: [JSONValue]) async throws(RuntimeError) -> JSONValue {
        try await json(["patch", kind, name, "--type=json", "--field-manager=\(Kubectl.fieldManager)",
                        "-p", JSONValue.array(operations).jsonString, "-o", "json"])
    }

    /// A merge patch (RFC 7386) of one object.
    public func mergePatch(_ kind: String, _ name: String, _ patch: JSONValue) async throws(RuntimeError) -> JSONValue {
        try await json(["patch", kind, name, "--type=merge", "--field-manager=\(Kubectl.fieldManager)",
                        "-p", patch.jsonString, "-o", "json"])
    }

    /// `kubectl delete KIND NAME` (no error when already gone).
    public func delete(_ kind: String, _ name: String) async throws(RuntimeError) {
        _ = try await run(["delete", kind, name, "--ignore-not-found", "--wait=false"])
    }

    /// GET through the API server (`kubectl get --raw PATH`); returns the body.
    public func rawGet(_ path: String) async throws(RuntimeError) -> [UInt8] {
        try Kubectl.checkRawPath(path)
        return try await run(["get", "--raw", path], namespaced: false)
    }

    /// POST through the API server (`kubectl create --raw PATH -f -`, body on stdin); returns the body.
    public func rawPost(_ path: String, body: [UInt8]) async throws(RuntimeError) -> [UInt8] {
        try Kubectl.checkRawPath(path)
        return try await run(["create", "--raw", path, "-f", "-"], stdin: body, namespaced: false)
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
