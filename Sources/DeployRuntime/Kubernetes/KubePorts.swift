import DeployCore
import JSON
import Synchronization

// The Kubernetes runtime behind the engine's ports, so the same rollout machine and runner drive it:
//
// - a slot (`blue`, `green`) is the Deployment of the version started there, found by its
//   `model-deployer/slot` label (the Deployment itself is named from model, environment and version);
// - routing all traffic to a slot is one JSON patch of the stable Service's selector; a canary step scales
//   the two versions to a replica split and widens the selector to both (KubeCanary.swift);
// - a slot's address is the Service that reaches it: the stable Service when it selects the version, the
//   preview Service while the version is being validated, else `deployment/NAME` (reachable through no
//   Service: probes only read its available replicas);
// - probes and smoke tests go through the API server's service proxy (`kubectl get|create --raw`).

extension RuntimePorts {
    /// The ports of an environment that runs on Kubernetes through `kube`; models and bentos still come
    /// from `catalog` (the agent plans from the BentoML store; the cluster pulls the image built from it).
    public static func kubernetes(_ kube: KubeRuntime, catalog: any ModelCatalog) -> RuntimePorts {
        RuntimePorts(slots: KubeSlotRuntime(kube), router: KubeTrafficRouter(kube), catalog: catalog, prober: KubeProber(kube))
    }
}

/// A version's Deployment as the slot ports see it.
struct KubeSlotObject {
    var ref: SlotRef
    var name: String
    var version: String
    var bentoTag: String
    var replicas: Int
    var available: Int
    var generation: Int64

    init?(_ item: JSONValue, namespace: String) {
        guard item["kind"]?.stringValue == "Deployment", let name = item["metadata"]?["name"]?.stringValue,
              let slot = item["metadata"]?["labels"]?[KubeNames.slotLabel]?.stringValue,
              let a = item["metadata"]?["annotations"], let model = a[KubeManifests.modelAnnotation]?.stringValue,
              let env = a[KubeManifests.environmentAnnotation]?.stringValue, let version = a[KubeManifests.versionAnnotation]?.stringValue
        else { return nil }
        self.ref = SlotRef(modelName: model, environment: env, id: SlotID(rawValue: slot))
        self.name = name
        self.version = version
        self.bentoTag = a[KubeManifests.bentoTagAnnotation]?.stringValue ?? ""
        self.replicas = Int(item["spec"]?["replicas"]?.intValue ?? 0)
        self.available = Int(item["status"]?["availableReplicas"]?.intValue ?? 0)
        self.generation = item["metadata"]?["generation"]?.intValue ?? 1
    }
}

/// Slots as Deployments (see the file's header).
public struct KubeSlotRuntime: SlotRuntime {
    /// The runtime of the environment.
    public let kube: KubeRuntime

    /// Slot ports over `kube`.
    public init(_ kube: KubeRuntime) { self.kube = kube }

    /// Applies the version's Deployment labelled with the slot (resources and replicas from the plan and
    /// the policy) and points the preview Service at it.
    /// - Throws: `slot_busy` (the same version runs in the other slot: one Deployment per version),
    ///   `kube_invalid_config` (no plan requirements), the runtime's `kube_*` and `kubectl_*` errors.
    public func start(_ launch: SlotLaunch) async throws(RuntimeError) -> RunningSlot {
        let ref = launch.ref
        guard let requirements = launch.requirements else {
            throw RuntimeError(code: "kube_invalid_config", message: "a Kubernetes slot needs the plan's requirements (memory, cpu, gpu)")
        }
        let name = try KubeNames.deploymentName(modelName: ref.modelName, environment: ref.environment, version: launch.version)
        let existing = try await kube.kubectl.get("deployment", name)
        if let existing, let other = existing["metadata"]?["labels"]?[KubeNames.slotLabel]?.stringValue, other != ref.id.rawValue,
           (existing["spec"]?["replicas"]?.intValue ?? 0) > 0 {
            throw RuntimeError(code: "slot_busy",
                               message: "\(launch.version) already runs in slot \(other) as deployment \(name) (one Deployment per version)")
        }
        let spec = KubeVersionSpec(modelName: ref.modelName, environment: ref.environment, version: launch.version,
                                   bentoTag: launch.bentoTag, deploymentID: launch.deploymentID,
                                   resources: KubeResources(requirements), slot: ref.id.rawValue)
        _ = try await kube.start(spec, existing: existing)
        let preview = try KubeNames.previewServiceName(modelName: ref.modelName, environment: ref.environment)
        return RunningSlot(ref: ref, bentoTag: launch.bentoTag, address: SlotAddress(host: preview, port: kube.target.servicePort), alive: true)
    }

    /// Follows the Deployment's status (observed generation, available replicas, the progress deadline)
    /// until it is available or stuck; a stuck rollout's reason (image pull, unschedulable, crash loop) is
    /// the result's `lastError`, in words.
    public func waitReady(_ slot: RunningSlot, deadlineSeconds: Double, probeTimeoutMs: Int, intervalMs: Int) async -> ReadinessResult {
        let found: KubeSlotObject?
        do throws(RuntimeError) { found = try await object(slot.ref) } catch {
            return ReadinessResult(ready: false, elapsedMs: 0, attempts: 1, lastError: error.description)
        }
        guard let found else {
            return ReadinessResult(ready: false, elapsedMs: 0, attempts: 1, lastError: "no Deployment is labelled slot \(slot.ref.id)")
        }
        let handle = KubeVersionHandle(
            spec: KubeVersionSpec(modelName: slot.ref.modelName, environment: slot.ref.environment, version: found.version,
                                  bentoTag: found.bentoTag, deploymentID: "", resources: KubeResources(memoryMB: 1), slot: slot.ref.id.rawValue),
            deploymentName: found.name, generation: found.generation)
        // Each poll is a kubectl process: not more often than twice a second.
        let r = await kube.waitReady(handle, deadlineSeconds: deadlineSeconds, intervalMs: max(intervalMs, 500))
        return ReadinessResult(ready: r.ready, elapsedMs: r.elapsedMs, attempts: r.polls,
                               lastError: r.ready ? nil : "deployment \(found.name): \(r.verdict.reason)")
    }

    /// Scales the slot's Deployment to 0 and takes the slot label off (the object stays, for history and a
    /// later redeploy of the version). Never the version the stable Service selects: `false` then.
    public func stop(_ ref: SlotRef, graceSeconds: Double) async -> Bool {
        do throws(RuntimeError) {
            // One list answers both questions (and a `state` read of it a moment ago answers again).
            let items = try await kube.kubectl.list("deployments,services",
                                                    selector: KubeManifests.ownedSelector(modelName: ref.modelName, environment: ref.environment),
                                                    reusingWithinMs: Self.reuseReadMs)
            guard let found = items.compactMap({ KubeSlotObject($0, namespace: kube.target.namespace) }).first(where: { $0.ref == ref }) else {
                return true
            }
            let stable = try KubeNames.serviceName(modelName: ref.modelName, environment: ref.environment)
            if let svc = items.first(where: { $0["kind"]?.stringValue == "Service" && $0["metadata"]?["name"]?.stringValue == stable }),
               kube.versionsServed(by: svc)?.contains(KubeNames.labelValue(found.version)) ?? true {
                return false
            }
            let patch: JSONValue = .object(["metadata": .object(["labels": .object([KubeNames.slotLabel: .null])]), "spec": ["replicas": 0]])
            _ = try await kube.kubectl.mergePatch("deployment", found.name, patch)
            return true
        } catch {
            return false
        }
    }

    /// How old a read of the (model, environment)'s Deployments and Services `state` answers from may be,
    /// when no other kubectl ran since (`Kubectl.list(_:selector:reusingWithinMs:)`). A warm rollback asks
    /// for the previous slot's state, its readiness, and its state again before the switch, back to back:
    /// one read answers all three (measured through the agent: 4 kubectl runs, p50 552 ms, down to 2).
    static let reuseReadMs: Double = 1000

    /// The slot's Deployment and the Service that reaches it, from one list of the model's and
    /// environment's Deployments and Services (a read of the same list a moment ago, with no kubectl run
    /// since, answers again; see ``reuseReadMs``). `alive`: scaled up with an available replica.
    public func state(_ ref: SlotRef) async -> RunningSlot? {
        do throws(RuntimeError) {
            let items = try await kube.kubectl.list("deployments,services",
                                                    selector: KubeManifests.ownedSelector(modelName: ref.modelName, environment: ref.environment),
                                                    reusingWithinMs: Self.reuseReadMs)
            let ns = kube.target.namespace
            guard let found = items.compactMap({ KubeSlotObject($0, namespace: ns) }).first(where: { $0.ref == ref }) else { return nil }
            return running(found, services: items.filter { $0["kind"]?.stringValue == "Service" })
        } catch {
            return nil
        }
    }

    public func listSlots() async -> [RunningSlot] {
        do throws(RuntimeError) {
            let items = try await kube.kubectl.list(
                "deployments", selector: "\(KubeNames.managedByLabel)=\(KubeNames.managedByValue),\(KubeNames.slotLabel)")
            return items.compactMap { KubeSlotObject($0, namespace: kube.target.namespace) }.map { running($0, services: []) }
        } catch {
            return []
        }
    }

    /// The Pods' logs live in the cluster; the message says where.
    public func logTail(_ slot: RunningSlot, bytes: Int) async -> String {
        "(the Pods' logs are in the cluster: kubectl -n \(kube.target.namespace) logs -l \(KubeNames.slotLabel)=\(slot.ref.id.rawValue))"
    }

    func object(_ ref: SlotRef) async throws(RuntimeError) -> KubeSlotObject? {
        let selector = KubeManifests.ownedSelector(modelName: ref.modelName, environment: ref.environment)
            + ",\(KubeNames.slotLabel)=\(ref.id.rawValue)"
        return try await kube.kubectl.list("deployments", selector: selector)
            .compactMap { KubeSlotObject($0, namespace: kube.target.namespace) }.first { $0.ref == ref }
    }

    func running(_ o: KubeSlotObject, services: [JSONValue]) -> RunningSlot {
        let label = KubeNames.labelValue(o.version)
        let selecting = services.filter { kube.versionSelected(by: $0) == label }
        let role = { (s: JSONValue) in s["metadata"]?["labels"]?[KubeNames.roleLabel]?.stringValue }
        let host = selecting.first { role($0) == "active" }?["metadata"]?["name"]?.stringValue
            ?? selecting.first { role($0) == "preview" }?["metadata"]?["name"]?.stringValue
            ?? "deployment/\(o.name)"
        return RunningSlot(ref: o.ref, bentoTag: o.bentoTag, address: SlotAddress(host: host, port: kube.target.servicePort),
                           alive: o.replicas > 0 && o.available > 0)
    }
}

/// The stable Service as the router: a switch is one JSON patch of its selector (all or nothing); a canary's
/// weighted split is by replica ratio, the selector widened to both versions (KubeCanary.swift).
public final class KubeTrafficRouter: TrafficRouter {
    /// The runtime of the environment.
    public let kube: KubeRuntime
    /// The slot each endpoint's last successful switch selected, as the API server answered the patch.
    let switched = Mutex<[String: SlotID]>([:])

    /// A router over `kube`.
    public init(_ kube: KubeRuntime) { self.kube = kube }

    /// Nothing to start: the API server and kube-proxy are the router.
    public func ensureRunning() async throws(RuntimeError) {}

    /// One backend at 100: points the stable Service at it (creating the Service when there is none; ending
    /// a canary's split first, see KubeCanary.swift). Two backends with weights: a canary step by replica
    /// ratio (``applySplit(_:_:)``).
    /// - Throws: `invalid_weights`, `weights_unsupported` (more than two versions), `kube_not_owned`,
    ///   `kube_not_available`, `kube_timeout`, `kube_*` and `kubectl_*` errors.
    public func apply(_ route: RouteSpec) async throws(RuntimeError) {
        let taking = route.backends.filter { $0.weight > 0 }
        guard !taking.isEmpty, route.backends.allSatisfy({ (0...100).contains($0.weight) }), taking.reduce(0, { $0 + $1.weight }) == 100 else {
            throw RuntimeError(code: "invalid_weights", message: "the weights of a route must be 0...100 and add up to 100")
        }
        guard taking.count <= 2 else {
            throw RuntimeError(code: "weights_unsupported", message: "a canary on Kubernetes splits between two versions, not \(taking.count)")
        }
        if taking.count == 2 { return try await applySplit(route, taking) }
        let primary = taking[0]
        let (m, e) = (route.modelName, route.environment)
        let narrowing = try await prepareNarrowing(route, primary: primary)
        do {
            _ = try await kube.routeOwned(modelName: m, environment: e, to: primary.version, endingCanary: narrowing.annotated)
        } catch where error.code == "kube_not_found" {
            try await kube.ensureStableService(modelName: m, environment: e, version: primary.version)
            _ = try await kube.routeOwned(modelName: m, environment: e, to: primary.version)
        }
        switched.withLock { $0[Self.key(m, e)] = primary.slot }
        // The version a canary shrank and that now stays warm gets its full size back.
        for name in narrowing.shrunk { _ = try await kube.scale(name, to: max(1, kube.target.replicas)) }
    }

    /// The API server's answer to the patch is its read-back (the Service as stored selects the slot's
    /// version); kube-proxy and the endpoints controller follow it asynchronously.
    public func verify(listenPort: Int, serving slot: SlotID, timeoutMs: Int) async -> Bool {
        switched.withLock { $0.values.contains(slot) }
    }

    public func route(modelName: String, environment: String) async -> RouteSpec? {
        do throws(RuntimeError) {
            let items = try await kube.kubectl.list("deployments,services",
                                                    selector: KubeManifests.ownedSelector(modelName: modelName, environment: environment))
            guard let svc = items.first(where: { $0["kind"]?.stringValue == "Service"
                      && $0["metadata"]?["labels"]?[KubeNames.roleLabel]?.stringValue == "active" }),
                  let name = svc["metadata"]?["name"]?.stringValue else { return nil }
            guard let selected = kube.versionSelected(by: svc) else {
                // A canary's split: its annotation says what was asked.
                guard let state = KubeCanaryState(service: svc) else { return nil }
                return RouteSpec(modelName: modelName, environment: environment, listenPort: kube.target.servicePort, backends: state.sides.map {
                    WeightedBackend(slot: SlotID(rawValue: $0.slot), address: SlotAddress(host: name, port: kube.target.servicePort),
                                    version: $0.version, weight: $0.weight)
                })
            }
            let slot = items.compactMap { KubeSlotObject($0, namespace: kube.target.namespace) }
                .first { KubeNames.labelValue($0.version) == selected }
            return RouteSpec(modelName: modelName, environment: environment, listenPort: kube.target.servicePort, backends: [
                WeightedBackend(slot: slot?.ref.id ?? SlotID(rawValue: ""), address: SlotAddress(host: name, port: kube.target.servicePort),
                                version: slot?.version ?? selected),
            ])
        } catch {
            return nil
        }
    }

    public func routes() async -> [RouteSpec] {
        guard let services = try? await kube.kubectl.list(
            "services", selector: "\(KubeNames.managedByLabel)=\(KubeNames.managedByValue),\(KubeNames.roleLabel)=active") else { return [] }
        var out: [RouteSpec] = []
        for s in services {
            guard let a = s["metadata"]?["annotations"], let m = a[KubeManifests.modelAnnotation]?.stringValue,
                  let e = a[KubeManifests.environmentAnnotation]?.stringValue, let r = await route(modelName: m, environment: e) else { continue }
            out.append(r)
        }
        return out
    }

    /// Deletes the stable and preview Services of the endpoint (only ours; the Deployments stay).
    public func removeRoute(modelName: String, environment: String) async throws(RuntimeError) {
        for name in [try KubeNames.serviceName(modelName: modelName, environment: environment),
                     try KubeNames.previewServiceName(modelName: modelName, environment: environment)] {
            guard let svc = try await kube.kubectl.get("service", name) else { continue }
            try kube.requireOwned(svc, modelName: modelName, environment: environment)
            try await kube.kubectl.delete("service", name)
        }
        _ = switched.withLock { $0.removeValue(forKey: Self.key(modelName, environment)) }
    }

    public func needsRestart() async -> Bool { false }

    /// Every endpoint listens on the Service port of the environment.
    public func listenPort(preferred: Int, modelName: String, environment: String) async -> Int { kube.target.servicePort }

    /// The stable Service (the prober reaches it through the API server's service proxy).
    public func endpointAddress(listenPort: Int, modelName: String, environment: String) -> SlotAddress {
        SlotAddress(host: (try? KubeNames.serviceName(modelName: modelName, environment: environment)) ?? "", port: listenPort)
    }

    /// The Service's in-cluster DNS name.
    public func endpointURL(listenPort: Int, modelName: String, environment: String) -> String {
        let svc = (try? KubeNames.serviceName(modelName: modelName, environment: environment)) ?? ""
        return "http://\(svc).\(kube.target.namespace).svc:\(listenPort)"
    }

    public func stats(modelName: String, environment: String) async -> [BackendStats]? { nil }

    /// By replica ratio (see KubeCanary.swift): approximate shares.
    public var splitsTraffic: Bool { true }

    /// Nothing counts a Service's traffic per version: the analysis probes each version's Pods.
    public var measuresByProbes: Bool { true }

    static func key(_ m: String, _ e: String) -> String { m + "\u{0}" + e }
}

/// Probes through the API server's service proxy: an address's host is a Service in the runtime's namespace.
public struct KubeProber: Prober {
    /// The runtime of the environment.
    public let kube: KubeRuntime

    /// A prober over `kube`.
    public init(_ kube: KubeRuntime) { self.kube = kube }

    public func smoke(_ address: SlotAddress, checks: [SmokeTest], timeoutMs: Int) async -> [SmokeResult] {
        guard let service = Self.service(address) else {
            return checks.map { SmokeResult(api: $0.api, passed: false, status: nil, latencyMs: 0, answer: nil,
                                            message: "no Service selects \(address.host); it cannot be called") }
        }
        return await kube.smoke(service: service, checks: checks)
    }

    /// A short load of calls through the service proxy, `concurrency` at a time. Each call is one kubectl
    /// process, so the latencies include its start-up (the baseline and the bake are measured alike).
    public func measure(_ address: SlotAddress, load: ProbeLoad) async -> Metrics {
        guard let service = Self.service(address) else { return Metrics(p50Ms: 0, p95Ms: 0, p99Ms: 0, errorRate: 1, rps: 0) }
        let n = load.api == nil ? max(1, load.requests / 2) : max(1, load.requests)
        let workers = max(1, min(load.concurrency, n))
        let start = monotonicMs()
        let path = load.api.map { "/" + $0.drop { $0 == "/" } } ?? load.healthPath
        let body = load.api == nil ? nil : load.input
        let results = await withTaskGroup(of: [Double?].self) { group in
            for w in 0..<workers {
                let share = n / workers + (w < n % workers ? 1 : 0)
                group.addTask {
                    var out: [Double?] = []
                    for _ in 0..<share {
                        let t = monotonicMs()
                        do throws(RuntimeError) {
                            _ = try await kube.call(service: service, path: path, body: body)
                            out.append(monotonicMs() - t)
                        } catch {
                            out.append(nil)
                        }
                    }
                    return out
                }
            }
            var all: [Double?] = []
            for await part in group { all += part }
            return all
        }
        let latencies = results.compactMap { $0 }.sorted()
        let elapsed = max((monotonicMs() - start) / 1000, 0.001)
        return Metrics(p50Ms: Metrics.percentile(latencies, 0.5), p95Ms: Metrics.percentile(latencies, 0.95),
                       p99Ms: Metrics.percentile(latencies, 0.99), errorRate: Double(results.count - latencies.count) / Double(max(results.count, 1)),
                       rps: Double(results.count) / elapsed)
    }

    /// Through a Service: `path` answers 2xx through the proxy. A version no Service selects
    /// (`deployment/NAME`): its Deployment has an available replica.
    public func isReady(_ address: SlotAddress, path: String, timeoutMs: Int) async -> Bool {
        if address.host.hasPrefix("deployment/") {
            let name = String(address.host.dropFirst("deployment/".count))
            // The slot state that gave this address read the Deployment a moment ago: the same answer again.
            var found = kube.kubectl.recentObject(kind: "Deployment", name: name, withinMs: KubeSlotRuntime.reuseReadMs)
            if found == nil { found = try? await kube.kubectl.get("deployment", name) }
            guard let d = found else { return false }
            return (d["spec"]?["replicas"]?.intValue ?? 0) > 0 && (d["status"]?["availableReplicas"]?.intValue ?? 0) > 0
        }
        guard let service = Self.service(address) else { return false }
        do throws(RuntimeError) {
            _ = try await kube.call(service: service, path: path)
            return true
        } catch {
            return false
        }
    }

    static func service(_ address: SlotAddress) -> String? {
        KubeNames.isDNS1035Label(address.host) ? address.host : nil
    }
}
