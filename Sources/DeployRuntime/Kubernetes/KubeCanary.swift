import DeployCore
import JSON

// A canary on Kubernetes without a traffic router: Argo Rollouts' basic canary, by replica ratio.
//
// - A step (two backends with weights) scales the two versions' Deployments to the ``ReplicaSplit`` of the
//   weight (the rising one first), scales every other Deployment of the (model, environment) to 0 and waits
//   until their Pods are gone, then widens the stable Service's selector to the model and environment
//   labels, so it selects the Pods of both versions. kube-proxy spreads connections over them: the share is
//   approximate, and the Service's `model-deployer/canary` annotation records what was asked (versions,
//   slots, weights, replicas).
// - One backend at 100 (promotion, or traffic back on the stable version) narrows the selector to that
//   version again; when the canary had shrunk it, it is scaled back to the environment's replicas first and
//   the narrowing waits (within the progress deadline) until they are available, so the version taking all
//   the traffic has its full size. A backend at weight 0 that the canary shrank (the stable version after a
//   promotion) is scaled back up: it is the warm rollback target.
// - Nothing counts a Service's traffic per version, so the analysis probes each version's ready Pods through
//   the API server's pod proxy (``KubeTrafficRouter/probeWindow(modelName:environment:backends:load:durationMs:)``).

/// What the stable Service's `model-deployer/canary` annotation records while it selects two versions.
struct KubeCanaryState: Sendable, Hashable {
    struct Side: Sendable, Hashable {
        var slot: String
        var version: String
        var weight: Int
        var replicas: Int
    }
    var sides: [Side]

    static let annotation = "model-deployer/canary"

    var json: JSONValue {
        .object(["backends": .array(sides.map {
            .object(["slot": .string($0.slot), "version": .string($0.version), "weight": .integer($0.weight), "replicas": .integer($0.replicas)])
        })])
    }

    /// The state a Service's annotation records; nil when it has none (or one that is not ours).
    init?(service: JSONValue) {
        guard let text = service["metadata"]?["annotations"]?[Self.annotation]?.stringValue,
              let parsed = try? JSONValue.parse(Array(text.utf8)), let list = parsed["backends"]?.arrayValue else { return nil }
        var sides: [Side] = []
        for b in list {
            guard let slot = b["slot"]?.stringValue, let version = b["version"]?.stringValue,
                  let w = b["weight"]?.intValue.flatMap({ Int(exactly: $0) }), let r = b["replicas"]?.intValue.flatMap({ Int(exactly: $0) })
            else { return nil }
            sides.append(Side(slot: slot, version: version, weight: w, replicas: r))
        }
        self.sides = sides
    }

    init(sides: [Side]) { self.sides = sides }
}

extension KubeRuntime {
    /// The versions (as label values) whose Pods the Service selects: its version label, or, while a canary
    /// widened it, the versions its annotation names; nil when it selects every version of the model (a
    /// widened selector without our annotation: nothing may be assumed unselected).
    func versionsServed(by service: JSONValue) -> Set<String>? {
        if let v = versionSelected(by: service) { return [v] }
        guard let state = KubeCanaryState(service: service) else { return nil }
        return Set(state.sides.map { KubeNames.labelValue($0.version) })
    }

    /// The API server path that proxies to `path` on port `port` of the Pod named `pod`.
    public func podProxyPath(pod: String, port: Int, path: String) throws(RuntimeError) -> String {
        guard Self.isPodName(pod) else { throw .invalidName("pod '\(pod)' is not a DNS-1123 subdomain") }
        guard (1...65535).contains(port) else { throw .invalidName("port \(port) is out of range") }
        let rest = path.drop(while: { $0 == "/" })
        return "/api/v1/namespaces/\(target.namespace)/pods/\(pod):\(port)/proxy/\(rest)"
    }

    /// Calls `path` of the container port of Pod `pod` through the API server's pod proxy (RBAC verb on
    /// `pods/proxy`), naming `version` in the `X-Model-Deployer-Version` header (proxy transport only).
    func call(pod: String, version: String, path: String, body: JSONValue?) async throws(RuntimeError) -> [UInt8] {
        let raw = try podProxyPath(pod: pod, port: target.containerPort, path: path)
        let headers = RuntimeNames.isValidVersion(version) ? [KubeTrafficRouter.versionHeader: version] : [:]
        if let body { return try await kubectl.rawPost(raw, body: body.jsonBytes, headers: headers) }
        return try await kubectl.rawGet(raw, headers: headers)
    }

    /// The ready Pods (not being deleted) of `version` of (model, environment), by name.
    func readyPods(modelName: String, environment: String, version: String) async throws(RuntimeError) -> [String] {
        let selector = KubeManifests.ownedSelector(modelName: modelName, environment: environment)
            + ",\(KubeNames.versionLabel)=\(KubeNames.labelValue(version))"
        return try await kubectl.list("pods", selector: selector).compactMap { pod -> String? in
            guard pod["metadata"]?["deletionTimestamp"] == nil, let name = pod["metadata"]?["name"]?.stringValue,
                  let conditions = pod["status"]?["conditions"]?.arrayValue,
                  conditions.contains(where: { $0["type"]?.stringValue == "Ready" && $0["status"]?.stringValue == "True" }) else { return nil }
            return name
        }.sorted()
    }

    /// Scales Deployment `name` to `replicas` (a merge patch of `spec.replicas`).
    func scale(_ name: String, to replicas: Int) async throws(RuntimeError) -> JSONValue {
        try await kubectl.mergePatch("deployment", name, ["spec": ["replicas": .integer(replicas)]])
    }

    /// Polls Deployment `name` until `done` holds for it (after the controller observed its latest
    /// generation), or `seconds` pass. Returns the last read (nil when it is gone) and whether `done` held.
    func waitDeployment(_ name: String, seconds: Double, intervalMs: Int = 100,
                        until done: (JSONValue) -> Bool) async throws(RuntimeError) -> (JSONValue?, Bool) {
        let deadline = monotonicMs() + seconds * 1000
        while true {
            let d = try await kubectl.get("deployment", name)
            guard let d else { return (nil, true) }
            let observed = (d["status"]?["observedGeneration"]?.intValue ?? 0) >= (d["metadata"]?["generation"]?.intValue ?? 1)
            if observed && done(d) { return (d, true) }
            if monotonicMs() >= deadline || Task.isCancelled { return (d, false) }
            await pause(milliseconds: intervalMs)
        }
    }

    /// Waits until every Pod of (model, environment) that is not being deleted belongs to one of `versions`
    /// (label values); Pods being deleted are already out of every Service's endpoints.
    /// - Throws: `kube_timeout` after `seconds`, naming the Pods left.
    func waitOnlyPods(of versions: Set<String>, modelName: String, environment: String, seconds: Double) async throws(RuntimeError) {
        let deadline = monotonicMs() + seconds * 1000
        let selector = KubeManifests.ownedSelector(modelName: modelName, environment: environment)
        while true {
            let left = try await kubectl.list("pods", selector: selector).filter {
                $0["metadata"]?["deletionTimestamp"] == nil
                    && !versions.contains($0["metadata"]?["labels"]?[KubeNames.versionLabel]?.stringValue ?? "")
            }.compactMap { $0["metadata"]?["name"]?.stringValue }
            if left.isEmpty { return }
            if monotonicMs() >= deadline || Task.isCancelled {
                throw RuntimeError(code: "kube_timeout",
                                   message: "Pods of other versions (\(left.prefix(3).joined(separator: ", "))) are still running \(Int(seconds)) s after their Deployments were scaled to 0; the Service is not widened")
            }
            // One GET through the proxy is 1-2 ms; the ReplicaSet controller deletes the Pods within ~100 ms.
            await pause(milliseconds: 25)
        }
    }

    static func isPodName(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard (1...253).contains(b.count) else { return false }
        return s.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { KubeNames.isDNS1123Label(String($0)) }
    }
}

extension KubeTrafficRouter {
    /// The header naming the version a probe is meant for (the model ignores it; logs can tell probes apart).
    public static let versionHeader = "X-Model-Deployer-Version"

    /// A canary step: the two versions at their ``ReplicaSplit``, every other version of the endpoint at 0,
    /// the Service selecting both (see the file's header).
    /// - Throws: `invalid_weights`, `kube_not_found` (a version has no Deployment), `kube_timeout` (Pods of
    ///   another version did not go), `kube_not_owned`, `kube_*` and `kubectl_*` errors.
    func applySplit(_ route: RouteSpec, _ sides: [WeightedBackend]) async throws(RuntimeError) {
        let n = max(1, kube.target.replicas)
        let (m, e) = (route.modelName, route.environment)
        let items = try await kube.kubectl.list("deployments,services", selector: KubeManifests.ownedSelector(modelName: m, environment: e))
        let deployments = items.compactMap { KubeSlotObject($0, namespace: kube.target.namespace) }
        let service = try KubeNames.serviceName(modelName: m, environment: e)
        guard let svc = items.first(where: { $0["kind"]?.stringValue == "Service" && $0["metadata"]?["name"]?.stringValue == service }) else {
            throw RuntimeError(code: "kube_not_found", message: "service \(service) does not exist in \(kube.target.namespace): nothing is live to split with")
        }
        try kube.requireOwned(svc, modelName: m, environment: e)
        // The second side's weight decides the split; ReplicaSplit is symmetric.
        let split = ReplicaSplit(weight: sides[1].weight, replicas: n)
        var plan: [(KubeSlotObject, Int, WeightedBackend)] = []
        for (side, replicas) in zip(sides, [split.stable, split.candidate]) {
            guard let d = deployments.first(where: { $0.ref.id == side.slot && $0.version == side.version }) else {
                throw RuntimeError(code: "kube_not_found", message: "no Deployment runs \(side.version) in slot \(side.slot)")
            }
            plan.append((d, replicas, side))
        }
        // Every other version of the endpoint leaves first (the warm previous one among them): the widened
        // selector would take its Pods in. Any Deployment of ours for the pair, slot or not.
        let keep = Set(plan.map { KubeNames.labelValue($0.0.version) })
        for d in items where d["kind"]?.stringValue == "Deployment" {
            guard let name = d["metadata"]?["name"]?.stringValue, (d["spec"]?["replicas"]?.intValue ?? 0) > 0,
                  let v = d["spec"]?["selector"]?["matchLabels"]?[KubeNames.versionLabel]?.stringValue, !keep.contains(v) else { continue }
            _ = try await kube.scale(name, to: 0)
        }
        try await kube.waitOnlyPods(of: keep, modelName: m, environment: e, seconds: 60)
        // The rising side first, so the endpoint never has fewer Pods than it had.
        for (d, replicas, _) in plan.sorted(by: { ($0.1 - $0.0.replicas) > ($1.1 - $1.0.replicas) }) where d.replicas != replicas {
            _ = try await kube.scale(d.name, to: replicas)
        }
        let state = KubeCanaryState(sides: plan.map { .init(slot: $0.2.slot.rawValue, version: $0.2.version, weight: $0.2.weight, replicas: $0.1) })
        try await widen(service: service, modelName: m, environment: e, state: state)
        switched.withLock { $0.removeValue(forKey: Self.key(m, e)) }
    }

    /// One JSON patch: the selector without the version label, the canary annotation (ownership tested by the
    /// API server, as for a switch).
    private func widen(service: String, modelName: String, environment: String, state: KubeCanaryState) async throws(RuntimeError) {
        var ops = kube.ownershipTests(modelName: modelName, environment: environment)
        var selector = KubeNames.selector(modelName: modelName, environment: environment, version: "x")
        selector.removeValue(forKey: KubeNames.versionLabel)
        ops.append(["op": "replace", "path": "/spec/selector", "value": .object(selector.mapValues { .string($0) })])
        ops.append(["op": "add", "path": .string("/metadata/annotations/" + kube.pointerEscaped(KubeCanaryState.annotation)),
                    "value": .string(state.json.jsonString)])
        let stored = try await kube.kubectl.jsonPatch("service", service, ops)
        guard kube.versionSelected(by: stored) == nil, KubeCanaryState(service: stored) == state else {
            throw RuntimeError(code: "kube_bad_response", message: "service \(service) does not select both versions after the patch")
        }
    }

    /// Before the Service selects `primary` alone again: when a canary widened it, `primary` is scaled back to
    /// the environment's replicas and awaited (within the progress deadline; at least one available Pod is
    /// required), and the annotation goes with the narrowing. Returns the backends the canary shrank that
    /// stay at weight 0 (scaled back up once the selector is narrowed).
    func prepareNarrowing(_ route: RouteSpec, primary: WeightedBackend) async throws(RuntimeError) -> (annotated: Bool, shrunk: [String]) {
        let n = max(1, kube.target.replicas)
        let (m, e) = (route.modelName, route.environment)
        // The read `state` made a moment ago answers when nothing was sent since (a blue-green switch pays no extra read).
        let items = try await kube.kubectl.list("deployments,services", selector: KubeManifests.ownedSelector(modelName: m, environment: e),
                                                reusingWithinMs: KubeSlotRuntime.reuseReadMs)
        let service = try KubeNames.serviceName(modelName: m, environment: e)
        guard let svc = items.first(where: { $0["kind"]?.stringValue == "Service" && $0["metadata"]?["name"]?.stringValue == service }),
              kube.versionSelected(by: svc) == nil else { return (false, []) }
        let deployments = items.compactMap { KubeSlotObject($0, namespace: kube.target.namespace) }
        if let d = deployments.first(where: { $0.ref.id == primary.slot && $0.version == primary.version }), d.replicas < n || d.available < n {
            if d.replicas < n { _ = try await kube.scale(d.name, to: n) }
            let seconds = Double(min(kube.target.progressDeadlineSeconds, 120))
            let (last, full) = try await kube.waitDeployment(d.name, seconds: seconds, intervalMs: 200) {
                ($0["status"]?["availableReplicas"]?.intValue ?? 0) >= Int64(n)
            }
            if !full && (last?["status"]?["availableReplicas"]?.intValue ?? 0) < 1 {
                throw RuntimeError(code: "kube_not_available",
                                   message: "deployment \(d.name) (\(d.version)) has no available Pod \(Int(seconds)) s after being scaled to \(n); the Service keeps selecting both versions")
            }
        }
        let shrunk = route.backends.filter { $0.weight == 0 }.compactMap { b in
            deployments.first { $0.ref.id == b.slot && $0.version == b.version && $0.replicas > 0 && $0.replicas < n }?.name
        }
        return (KubeCanaryState(service: svc) != nil, shrunk)
    }

    /// Per-version figures of one interval from probes: `load.requests` calls to each backend's ready Pods
    /// (round-robin), all backends side by side, evenly paced over `durationMs`. A call that does not answer
    /// 2xx counts as an error; a version with no ready Pod serves 0 requests (the interval is inconclusive).
    public func probeWindow(modelName: String, environment: String, backends: [WeightedBackend], load: ProbeLoad,
                            durationMs: Int) async -> [BackendStats]? {
        let path = load.api.map { "/" + $0.drop { $0 == "/" } } ?? load.healthPath
        let body = load.api == nil ? nil : load.input
        let n = max(1, load.requests)
        let spacingMs = Double(max(durationMs, 1)) / Double(n)
        let kube = self.kube
        return await withTaskGroup(of: BackendStats.self) { group in
            for b in backends {
                group.addTask {
                    let pods = (try? await kube.readyPods(modelName: modelName, environment: environment, version: b.version)) ?? []
                    let start = monotonicMs()
                    var latencies: [Double] = []
                    var errors = 0
                    if !pods.isEmpty {
                        for i in 0..<n {
                            let due = start + Double(i) * spacingMs
                            let now = monotonicMs()
                            if due > now { await pause(milliseconds: Int((due - now).rounded(.up))) }
                            if Task.isCancelled { break }
                            let t = monotonicMs()
                            do throws(RuntimeError) {
                                _ = try await kube.call(pod: pods[i % pods.count], version: b.version, path: path, body: body)
                            } catch {
                                errors += 1
                            }
                            latencies.append(monotonicMs() - t)
                        }
                    }
                    // The interval lasts its full length even when a version had no Pod to probe.
                    let left = start + Double(durationMs) - monotonicMs()
                    if left > 0, !Task.isCancelled { await pause(milliseconds: Int(left)) }
                    let sorted = latencies.sorted()
                    let window = WindowFigures(requests: latencies.count, errors: errors,
                                               p95Ms: sorted.isEmpty ? nil : Metrics.percentile(sorted, 0.95))
                    return BackendStats(slot: b.slot, requests: latencies.count, errors: errors, window: window)
                }
            }
            var out: [BackendStats] = []
            for await s in group { out.append(s) }
            return out.sorted { $0.slot < $1.slot }
        }
    }
}
