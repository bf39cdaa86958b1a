import JSON
import DeployCore

/// One object the runtime made, as found in the cluster by its labels.
public struct KubeObjectRef: Sendable, Hashable {
    /// `Deployment`, `Service`, `ReplicaSet` or `Pod`.
    public var kind: String
    /// Object name.
    public var name: String
    /// Namespace.
    public var namespace: String
    /// The version label, when the object belongs to one version.
    public var version: String?
    /// The deployment-id label, when present.
    public var deploymentID: String?
    /// Deployments: `spec.replicas`; Services: nil.
    public var replicas: Int?
    /// Services: the version their selector points at.
    public var selectsVersion: String?

    /// The value as JSON (for status and history).
    public var json: JSONValue {
        .object(["kind": .string(kind), "name": .string(name), "namespace": .string(namespace), "version": .string(version),
                 "deployment_id": .string(deploymentID), "replicas": replicas.map { .integer($0) } ?? .null,
                 "selects_version": .string(selectsVersion)])
    }
}

/// A started version: what `waitReady`, `route` and `stop` refer to.
public struct KubeVersionHandle: Sendable, Hashable {
    /// The spec it was started from.
    public var spec: KubeVersionSpec
    /// The Deployment's name.
    public var deploymentName: String
    /// The Deployment's `metadata.generation` after the apply (readiness waits until the controller saw it).
    public var generation: Int64
}

/// The outcome of waiting for a version to become available (an expected outcome, not an error).
public struct KubeReadiness: Sendable, Hashable {
    /// `true` once every desired replica is updated and available.
    public var ready: Bool
    /// The last verdict, with its reason in words.
    public var verdict: KubeRolloutVerdict
    /// Time spent waiting, ms.
    public var elapsedMs: Double
    /// Status reads made.
    public var polls: Int
}

/// The outcome of a Service selector switch.
public struct KubeSwitch: Sendable, Hashable {
    /// The Service.
    public var service: String
    /// The version it selected before, nil when none of ours.
    public var previousVersion: String?
    /// The version it selects now.
    public var version: String
    /// Time the switch took (one conditional patch), ms.
    public var elapsedMs: Double
}

/// The Kubernetes runtime: each version a Deployment, blue-green by switching a stable Service's selector
/// (Argo Rollouts' mechanism, with a preview Service for smoke tests before the switch).
///
/// Maps onto the slot-runtime ports as: start a slot = `start`, wait ready = `waitReady`, stop = `stop`
/// (scale to 0) / `remove`, route traffic to one slot = `route`, call the slot = `call` / `smoke`
/// (through the API server's service proxy). The engine drives it through the ports of KubePorts.swift.
///
/// Safety: it only ever modifies or deletes objects carrying `app.kubernetes.io/managed-by=model-deployer`
/// and the labels of the model and environment it was asked about; an object of the same name made by
/// someone else is reported (`kube_not_owned`), never touched.
public struct KubeRuntime: Sendable {
    /// The kubectl used for every call.
    public var kubectl: Kubectl
    /// Where the versions run.
    public var target: KubeTarget

    /// A runtime for `target`, talking through `kubectl` (whose namespace must be the target's).
    /// - Throws: `kube_invalid_config`.
    public init(kubectl: Kubectl, target: KubeTarget) throws(RuntimeError) {
        try target.validate()
        guard kubectl.namespace == target.namespace, kubectl.context == target.context else {
            throw .kubeConfig("kubectl is set up for namespace \(kubectl.namespace), the target is \(target.namespace)")
        }
        self.kubectl = kubectl
        self.target = target
    }

    // MARK: - start a slot

    /// Applies the version's Deployment (server-side apply) and makes sure the stable Service exists (a new
    /// Service selects this version: nothing else can be live yet). The preview Service is pointed at this
    /// version so smoke tests reach it before the switch.
    /// - Throws: `invalid_name`, `kube_invalid_config`, `kube_not_owned`, kubectl errors.
    public func start(_ spec: KubeVersionSpec) async throws(RuntimeError) -> KubeVersionHandle {
        let name = try KubeNames.deploymentName(modelName: spec.modelName, environment: spec.environment, version: spec.version)
        return try await start(spec, existing: try await kubectl.get("deployment", name))
    }

    /// `start` with the version's Deployment as just read by the caller (`existing`, nil when absent). The
    /// Services come from one list by label (ours only; a missing one is created, which fails for a foreign
    /// object of the same name): 4 kubectl runs (get, list, patch, apply) where one read per object made 6.
    func start(_ spec: KubeVersionSpec, existing: JSONValue?) async throws(RuntimeError) -> KubeVersionHandle {
        let manifest = try KubeManifests.deployment(spec, target: target)
        let name = manifest["metadata"]?["name"]?.stringValue ?? ""
        if let existing {
            try requireOwned(existing, modelName: spec.modelName, environment: spec.environment)
        }
        let services = try await kubectl.list("services", selector: KubeManifests.ownedSelector(modelName: spec.modelName, environment: spec.environment))
        _ = try await ensureService(modelName: spec.modelName, environment: spec.environment, version: spec.version, preview: false, owned: services)
        let current = try await ensureService(modelName: spec.modelName, environment: spec.environment, version: spec.version,
                                              preview: true, owned: services)
        let preview = try KubeNames.previewServiceName(modelName: spec.modelName, environment: spec.environment)
        if current.map(versionSelected(by:)) != .some(KubeNames.labelValue(spec.version)) {
            _ = try await switchSelector(service: preview, modelName: spec.modelName, environment: spec.environment,
                                         to: spec.version, expecting: nil, current: current)
        }
        let stored = try await kubectl.apply(manifest)
        return KubeVersionHandle(spec: spec, deploymentName: name, generation: stored["metadata"]?["generation"]?.intValue ?? 1)
    }

    // MARK: - wait ready

    /// The rollout verdict of a version now (one read of the Deployment; Pods and events only when it is
    /// not available, to say why).
    public func rolloutStatus(deploymentName: String) async throws(RuntimeError) -> KubeRolloutVerdict {
        guard let dep = try await kubectl.get("deployment", deploymentName) else {
            throw RuntimeError(code: "kube_not_found", message: "deployment \(deploymentName) does not exist in \(target.namespace)")
        }
        let quick = KubeRolloutStatus.evaluate(deployment: dep, pods: [], events: [])
        if quick.phase == .available { return quick }
        let selector = (dep["spec"]?["selector"]?["matchLabels"]?.objectValue ?? [:])
            .sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.stringValue ?? "")" }.joined(separator: ",")
        let pods = selector.isEmpty ? [] : try await kubectl.list("pods", selector: selector)
        var events: [JSONValue] = []
        if !pods.isEmpty {
            // Events are best effort: a cluster may forbid reading them, and the verdict stands without.
            do throws(RuntimeError) {
                let names = Set(pods.compactMap { $0["metadata"]?["name"]?.stringValue })
                events = try await kubectl.list("events", selector: "", fieldSelector: "involvedObject.kind=Pod")
                    .filter { names.contains($0["involvedObject"]?["name"]?.stringValue ?? "") }
            } catch {}
        }
        return KubeRolloutStatus.evaluate(deployment: dep, pods: pods, events: events)
    }

    /// Follows the Deployment's status until it is available, stuck (the controller's progress deadline
    /// passed), or `deadlineSeconds` elapse. Never throws: a failed read is the verdict's reason.
    public func waitReady(_ handle: KubeVersionHandle, deadlineSeconds: Double, intervalMs: Int = 500) async -> KubeReadiness {
        let start = monotonicMs()
        var polls = 0
        var last = KubeRolloutVerdict(phase: .progressing, reason: "not read yet", stuckKind: nil,
                                      desired: target.replicas, updated: 0, ready: 0, available: 0)
        while true {
            polls += 1
            do throws(RuntimeError) {
                last = try await rolloutStatus(deploymentName: handle.deploymentName)
            } catch {
                last.reason = "cannot read deployment \(handle.deploymentName): \(error.description)"
            }
            if last.phase == .available { return KubeReadiness(ready: true, verdict: last, elapsedMs: monotonicMs() - start, polls: polls) }
            if last.phase == .stuck { break }
            if monotonicMs() - start >= deadlineSeconds * 1000 {
                last.reason = "not available after \(Int(deadlineSeconds)) s: " + last.reason
                break
            }
            if Task.isCancelled { last.reason = "cancelled: " + last.reason; break }
            await pause(milliseconds: intervalMs)
        }
        return KubeReadiness(ready: false, verdict: last, elapsedMs: monotonicMs() - start, polls: polls)
    }

    // MARK: - route traffic to one slot

    /// Points the stable Service at `version` with one conditional JSON patch: when `expecting` is given the
    /// patch only applies if the Service still selects that version (another agent that switched first
    /// makes this fail with `kube_conflict` instead of being silently overwritten).
    /// - Throws: `kube_not_found` (no Service), `kube_not_owned`, `kube_conflict`, kubectl errors.
    public func route(modelName: String, environment: String, to version: String,
                      expecting: String?) async throws(RuntimeError) -> KubeSwitch {
        let name = try KubeNames.serviceName(modelName: modelName, environment: environment)
        return try await switchSelector(service: name, modelName: modelName, environment: environment, to: version, expecting: expecting)
    }

    /// Rollback is the same switch in the other direction: back to `previousVersion`, conditional on the
    /// Service still selecting `from`. One kubectl call (the conditional JSON patch): the previous
    /// Deployment is still scaled up while it is kept warm, so nothing needs scaling or reading first. The
    /// caller knows whether it is warm (the engine's registry and keep-warm time; ``availableReplicas(modelName:environment:version:)``
    /// reads it from the cluster when in doubt).
    /// - Throws: as `route`.
    public func rollback(modelName: String, environment: String, from current: String,
                         to previousVersion: String) async throws(RuntimeError) -> KubeSwitch {
        try await route(modelName: modelName, environment: environment, to: previousVersion, expecting: current)
    }

    /// The available replicas of `version`'s Deployment (0 when it was scaled down after keep-warm).
    /// - Throws: `kube_not_found` (no such Deployment), `kube_not_owned`, kubectl errors.
    public func availableReplicas(modelName: String, environment: String, version: String) async throws(RuntimeError) -> Int {
        let dep = try KubeNames.deploymentName(modelName: modelName, environment: environment, version: version)
        guard let obj = try await kubectl.get("deployment", dep) else {
            throw RuntimeError(code: "kube_not_found", message: "deployment \(dep) of \(version) is gone")
        }
        try requireOwned(obj, modelName: modelName, environment: environment)
        guard (obj["spec"]?["replicas"]?.intValue ?? 0) > 0 else { return 0 }
        return Int(obj["status"]?["availableReplicas"]?.intValue ?? 0)
    }

    /// Points the stable Service at `version` in one kubectl call whatever it selects now: the JSON patch's
    /// `test` operations still make the API server refuse a Service that is not ours. For a caller that
    /// already holds the lock on the switch (the engine's ledger: one rollout per model and environment).
    /// - Throws: `kube_not_found` (no Service), `kube_not_owned`, kubectl errors.
    /// With `endingCanary`, the same patch removes the Service's canary annotation (see KubeCanary.swift).
    public func routeOwned(modelName: String, environment: String, to version: String,
                           endingCanary: Bool = false) async throws(RuntimeError) -> KubeSwitch {
        try KubeNames.checkIdentity(modelName: modelName, environment: environment, version: version)
        let service = try KubeNames.serviceName(modelName: modelName, environment: environment)
        let start = monotonicMs()
        var ops = ownershipTests(modelName: modelName, environment: environment)
        let selector = KubeNames.selector(modelName: modelName, environment: environment, version: version)
        ops.append(["op": "replace", "path": "/spec/selector", "value": .object(selector.mapValues { .string($0) })])
        if endingCanary {
            ops.append(["op": "remove", "path": .string("/metadata/annotations/" + pointerEscaped(KubeCanaryState.annotation))])
        }
        let stored: JSONValue
        do {
            stored = try await kubectl.jsonPatch("service", service, ops)
        } catch where error.code == "kube_invalid_object" {
            // A failed `test`: say whose Service it is.
            guard let now = try await kubectl.get("service", service) else {
                throw RuntimeError(code: "kube_not_found", message: "service \(service) does not exist in \(target.namespace)")
            }
            try requireOwned(now, modelName: modelName, environment: environment)
            throw error
        }
        guard versionSelected(by: stored) == KubeNames.labelValue(version) else {
            throw RuntimeError(code: "kube_bad_response", message: "service \(service) does not select \(version) after the patch")
        }
        return KubeSwitch(service: service, previousVersion: nil, version: version, elapsedMs: monotonicMs() - start)
    }

    /// Creates the stable Service of (model, environment) selecting `version` when it does not exist.
    public func ensureStableService(modelName: String, environment: String, version: String) async throws(RuntimeError) {
        try await ensureService(modelName: modelName, environment: environment, version: version, preview: false)
    }

    func ownershipTests(modelName: String, environment: String) -> [JSONValue] {
        let owned = KubeManifests.commonLabels(modelName: modelName, environment: environment)
        return [KubeNames.managedByLabel, KubeNames.modelLabel, KubeNames.environmentLabel].map { key in
            ["op": "test", "path": .string("/metadata/labels/" + pointerEscaped(key)), "value": owned[key] ?? .null]
        }
    }

    /// `true` when the stable Service selects `version` now.
    private func isSelected(modelName: String, environment: String, version: String) async throws(RuntimeError) -> Bool {
        try await currentVersion(modelName: modelName, environment: environment) == KubeNames.labelValue(version)
    }

    /// The version label the stable Service selects now (the exact version whenever it is a valid label
    /// value, as BentoML versions are; else its `KubeNames.labelValue` form), or nil when there is no Service.
    public func currentVersion(modelName: String, environment: String) async throws(RuntimeError) -> String? {
        let name = try KubeNames.serviceName(modelName: modelName, environment: environment)
        guard let svc = try await kubectl.get("service", name) else { return nil }
        try requireOwned(svc, modelName: modelName, environment: environment)
        return versionSelected(by: svc)
    }

    // MARK: - stop

    /// Sets the version's replicas (keep-warm keeps the previous version up; 0 retires it but keeps the
    /// object, so a later rollback can scale it up again).
    /// - Throws: `kube_not_found`, `kube_not_owned`, `kube_in_use` (scaling to 0 the version the Service
    ///   selects), kubectl errors.
    public func scale(modelName: String, environment: String, version: String, replicas: Int) async throws(RuntimeError) {
        guard (0...1000).contains(replicas) else { throw .kubeConfig("replicas must be 0..1000, got \(replicas)") }
        let dep = try KubeNames.deploymentName(modelName: modelName, environment: environment, version: version)
        guard let obj = try await kubectl.get("deployment", dep) else {
            throw RuntimeError(code: "kube_not_found", message: "deployment \(dep) of \(version) does not exist")
        }
        try requireOwned(obj, modelName: modelName, environment: environment)
        if replicas == 0, try await isSelected(modelName: modelName, environment: environment, version: version) {
            throw RuntimeError(code: "kube_in_use", message: "\(version) is what the Service selects; not scaling it to 0")
        }
        _ = try await kubectl.mergePatch("deployment", dep, ["spec": ["replicas": .integer(replicas)]])
    }

    /// Stop a slot: scale the version to 0 (the object stays for history and rollback).
    public func stop(modelName: String, environment: String, version: String) async throws(RuntimeError) {
        try await scale(modelName: modelName, environment: environment, version: version, replicas: 0)
    }

    /// Keep-warm, then retire: waits `keepWarm`, then scales `version` to 0 unless the Service selects it
    /// again by then (a rollback brought it back). Returns `true` when it scaled it down.
    public func retire(modelName: String, environment: String, version: String, keepWarm: Duration) async throws(RuntimeError) -> Bool {
        await pause(milliseconds: Int(keepWarm.secondsDouble * 1000))
        if try await isSelected(modelName: modelName, environment: environment, version: version) { return false }
        try await stop(modelName: modelName, environment: environment, version: version)
        return true
    }

    /// Deletes the version's Deployment (a failed rollout's torn down), only when it is ours and not selected.
    /// - Throws: `kube_not_owned`, `kube_in_use`, kubectl errors.
    public func remove(modelName: String, environment: String, version: String) async throws(RuntimeError) {
        let dep = try KubeNames.deploymentName(modelName: modelName, environment: environment, version: version)
        guard let obj = try await kubectl.get("deployment", dep) else { return }
        try requireOwned(obj, modelName: modelName, environment: environment)
        if try await isSelected(modelName: modelName, environment: environment, version: version) {
            throw RuntimeError(code: "kube_in_use", message: "\(version) is what the Service selects; not deleting it")
        }
        try await kubectl.delete("deployment", dep)
    }

    // MARK: - list

    /// Everything the runtime made for (model, environment), found by label: Deployments, Services,
    /// ReplicaSets and Pods (the controller copies the Pod template's labels onto the latter two).
    public func list(modelName: String, environment: String) async throws(RuntimeError) -> [KubeObjectRef] {
        try RuntimeNames.check(modelName, "model name")
        try RuntimeNames.check(environment, "environment")
        let selector = KubeManifests.ownedSelector(modelName: modelName, environment: environment)
        let items = try await kubectl.list("deployments,services,replicasets,pods", selector: selector)
        return items.compactMap { item -> KubeObjectRef? in
            guard let kind = item["kind"]?.stringValue, let name = item["metadata"]?["name"]?.stringValue else { return nil }
            let labels = item["metadata"]?["labels"]
            let exact = item["metadata"]?["annotations"]?[KubeManifests.versionAnnotation]?.stringValue
            return KubeObjectRef(kind: kind, name: name, namespace: item["metadata"]?["namespace"]?.stringValue ?? target.namespace,
                                 version: exact ?? labels?[KubeNames.versionLabel]?.stringValue,
                                 deploymentID: labels?[KubeNames.deploymentIDLabel]?.stringValue,
                                 replicas: kind == "Deployment" || kind == "ReplicaSet" ? item["spec"]?["replicas"]?.intValue.map { Int($0) } : nil,
                                 selectsVersion: kind == "Service" ? versionSelected(by: item) : nil)
        }.sorted { ($0.kind, $0.name) < ($1.kind, $1.name) }
    }

    // MARK: - call the slot

    /// The API server path that proxies to `path` of a Service's `http` port.
    public func proxyPath(service: String, path: String) throws(RuntimeError) -> String {
        guard KubeNames.isDNS1035Label(service) else { throw .invalidName("service '\(service)' is not an RFC 1035 label") }
        let rest = path.drop(while: { $0 == "/" })
        return "/api/v1/namespaces/\(target.namespace)/services/\(service):http/proxy/\(rest)"
    }

    /// Calls `path` of the stable Service (or, with `preview`, of the version being rolled out) through the
    /// API server's service proxy: GET with `kubectl get --raw`, POST with `kubectl create --raw` (JSON body).
    /// No port-forward, no ingress: only the RBAC verb on `services/proxy`.
    public func call(modelName: String, environment: String, preview: Bool, path: String,
                     body: JSONValue? = nil) async throws(RuntimeError) -> [UInt8] {
        let svc = preview ? try KubeNames.previewServiceName(modelName: modelName, environment: environment)
                          : try KubeNames.serviceName(modelName: modelName, environment: environment)
        return try await call(service: svc, path: path, body: body)
    }

    /// Calls `path` of the Service named `service` through the API server's service proxy.
    public func call(service: String, path: String, body: JSONValue? = nil) async throws(RuntimeError) -> [UInt8] {
        let raw = try proxyPath(service: service, path: path)
        if let body { return try await kubectl.rawPost(raw, body: body.jsonBytes) }
        return try await kubectl.rawGet(raw)
    }

    /// Waits until the endpoints controller lists at least one ready address for the Service (it follows
    /// Pod readiness asynchronously, so a just-available Deployment may not be reachable yet).
    /// - Returns: `true` when an address appeared within `deadlineSeconds`.
    public func waitEndpoints(modelName: String, environment: String, preview: Bool,
                              deadlineSeconds: Double = 10, intervalMs: Int = 100) async throws(RuntimeError) -> Bool {
        let svc = preview ? try KubeNames.previewServiceName(modelName: modelName, environment: environment)
                          : try KubeNames.serviceName(modelName: modelName, environment: environment)
        return try await waitEndpoints(service: svc, deadlineSeconds: deadlineSeconds, intervalMs: intervalMs)
    }

    /// Waits until the Service named `service` has a ready endpoint address.
    public func waitEndpoints(service svc: String, deadlineSeconds: Double = 10, intervalMs: Int = 100) async throws(RuntimeError) -> Bool {
        let start = monotonicMs()
        while true {
            let ep = try await kubectl.get("endpoints", svc)
            let ready = (ep?["subsets"]?.arrayValue ?? []).contains { !($0["addresses"]?.arrayValue ?? []).isEmpty }
            if ready { return true }
            if monotonicMs() - start >= deadlineSeconds * 1000 || Task.isCancelled { return false }
            await pause(milliseconds: intervalMs)
        }
    }

    /// Smoke tests through the service proxy, with the same pass rules as the local runtime. Waits up to
    /// `endpointsDeadlineSeconds` for the Service to have a ready endpoint first.
    public func smoke(modelName: String, environment: String, preview: Bool, checks: [SmokeCheck],
                      endpointsDeadlineSeconds: Double = 10) async -> [SmokeResult] {
        let svc: String
        do throws(RuntimeError) {
            svc = preview ? try KubeNames.previewServiceName(modelName: modelName, environment: environment)
                          : try KubeNames.serviceName(modelName: modelName, environment: environment)
        } catch {
            return checks.map { SmokeResult(api: $0.api, passed: false, status: nil, latencyMs: 0, answer: nil, message: error.description) }
        }
        return await smoke(service: svc, checks: checks, endpointsDeadlineSeconds: endpointsDeadlineSeconds)
    }

    /// Smoke tests against the Service named `service` through the service proxy.
    public func smoke(service: String, checks: [SmokeCheck], endpointsDeadlineSeconds: Double = 10) async -> [SmokeResult] {
        var results: [SmokeResult] = []
        do throws(RuntimeError) {
            if try await !waitEndpoints(service: service, deadlineSeconds: endpointsDeadlineSeconds) {
                return checks.map { SmokeResult(api: $0.api, passed: false, status: nil, latencyMs: 0, answer: nil,
                                                message: "the Service has no ready endpoint after \(Int(endpointsDeadlineSeconds)) s") }
            }
        } catch {
            return checks.map { SmokeResult(api: $0.api, passed: false, status: nil, latencyMs: 0, answer: nil, message: error.description) }
        }
        for check in checks {
            let start = monotonicMs()
            do throws(RuntimeError) {
                let bytes = try await call(service: service, path: String(check.api), body: check.input)
                let ms = monotonicMs() - start
                let answer = try? JSONValue.parse(bytes)
                if let expect = check.expect {
                    let ok = answer.map { jsonEquivalent($0, expect) } ?? false
                    let text = String(decoding: bytes.prefix(300), as: UTF8.self)
                    results.append(SmokeResult(api: check.api, passed: ok, status: 200, latencyMs: ms, answer: answer,
                                               message: ok ? "answer matches" : "expected \(expect.jsonString), got \(text)"))
                } else {
                    results.append(SmokeResult(api: check.api, passed: true, status: 200, latencyMs: ms, answer: answer, message: "2xx"))
                }
            } catch {
                results.append(SmokeResult(api: check.api, passed: false, status: nil, latencyMs: monotonicMs() - start,
                                           answer: nil, message: error.description))
            }
        }
        return results
    }

    // MARK: - internals

    private func ensureService(modelName: String, environment: String, version: String, preview: Bool) async throws(RuntimeError) {
        _ = try await ensureService(modelName: modelName, environment: environment, version: version, preview: preview, owned: nil)
    }

    /// Creates the Service when it does not exist. `owned`: the (model, environment)'s Services as just
    /// listed by label, so no read by name is needed (one not among them is created: a foreign object of
    /// that name makes the create fail, and is then reported). Returns the Service as it was, nil when created.
    private func ensureService(modelName: String, environment: String, version: String, preview: Bool,
                               owned: [JSONValue]?) async throws(RuntimeError) -> JSONValue? {
        let manifest = try KubeManifests.service(modelName: modelName, environment: environment, selecting: version,
                                                 target: target, preview: preview)
        let name = manifest["metadata"]?["name"]?.stringValue ?? ""
        let found: JSONValue?
        if let owned {
            found = owned.first { $0["kind"]?.stringValue == "Service" && $0["metadata"]?["name"]?.stringValue == name }
        } else {
            found = try await kubectl.get("service", name)
        }
        if let existing = found {
            try requireOwned(existing, modelName: modelName, environment: environment)
            return existing
        }
        // Create, not apply: if another agent made it in the meantime this fails with AlreadyExists instead
        // of taking its selector over.
        do {
            _ = try await kubectl.create(manifest)
            return nil
        } catch where error.code == "kube_conflict" {
            guard let existing = try await kubectl.get("service", name) else { throw error }
            try requireOwned(existing, modelName: modelName, environment: environment)
            return existing
        }
    }

    /// One JSON patch replaces the selector. With `expecting`, that patch is the whole switch (one kubectl
    /// call): `test` operations make the API server itself check that the Service is ours (managed-by,
    /// model and environment labels) and still selects `expecting`. Without it, a read comes first and the
    /// patch is conditional on the `resourceVersion` read.
    private func switchSelector(service: String, modelName: String, environment: String, to version: String,
                                expecting: String?, current: JSONValue? = nil) async throws(RuntimeError) -> KubeSwitch {
        try KubeNames.checkIdentity(modelName: modelName, environment: environment, version: version)
        if let expecting {
            try KubeNames.checkIdentity(modelName: modelName, environment: environment, version: expecting)
        }
        let start = monotonicMs()
        let selector = KubeNames.selector(modelName: modelName, environment: environment, version: version)
        var ops: [JSONValue] = []
        var before: String? = expecting
        if let expecting {
            ops = ownershipTests(modelName: modelName, environment: environment)
            ops.append(["op": "test", "path": .string("/spec/selector/" + pointerEscaped(KubeNames.versionLabel)),
                        "value": .string(KubeNames.labelValue(expecting))])
        } else {
            // `current`: the caller read it just now; the resourceVersion test below catches any change since.
            var read = current
            if read == nil { read = try await kubectl.get("service", service) }
            guard let svc = read else {
                throw RuntimeError(code: "kube_not_found", message: "service \(service) does not exist in \(target.namespace)")
            }
            try requireOwned(svc, modelName: modelName, environment: environment)
            before = versionSelected(by: svc)
            if let rv = svc["metadata"]?["resourceVersion"]?.stringValue {
                // Unconditional for the caller, but still not blind: nobody may have changed it since our read.
                ops.append(["op": "test", "path": "/metadata/resourceVersion", "value": .string(rv)])
            }
        }
        ops.append(["op": "replace", "path": "/spec/selector", "value": .object(selector.mapValues { .string($0) })])
        do {
            _ = try await kubectl.jsonPatch("service", service, ops)
        } catch where error.code == "kube_invalid_object" || error.code == "kube_conflict" {
            // A failed `test` operation comes back as an invalid request: re-read to say which one failed.
            guard let now = try await kubectl.get("service", service) else {
                throw RuntimeError(code: "kube_not_found", message: "service \(service) does not exist in \(target.namespace)")
            }
            try requireOwned(now, modelName: modelName, environment: environment)
            let selected = versionSelected(by: now)
            if selected != before.map(KubeNames.labelValue) || expecting == nil {
                throw RuntimeError(code: "kube_conflict",
                                   message: "service \(service) selects \(selected ?? "nothing"), not \(before ?? "nothing"): another switch happened first")
            }
            throw error
        }
        return KubeSwitch(service: service, previousVersion: before, version: version, elapsedMs: monotonicMs() - start)
    }

    /// JSON-pointer escaping of one path segment (RFC 6901): `~` -> `~0`, `/` -> `~1`.
    func pointerEscaped(_ key: String) -> String {
        key.replacingOccurrences("~", "~0").replacingOccurrences("/", "~1")
    }

    /// The exact version a Service selects: the selector's version label mapped back through our
    /// Deployments' annotations is overkill; the label is the exact version whenever it is a valid label
    /// value, which BentoML versions always are.
    func versionSelected(by service: JSONValue) -> String? {
        service["spec"]?["selector"]?[KubeNames.versionLabel]?.stringValue
    }

    func requireOwned(_ object: JSONValue, modelName: String, environment: String) throws(RuntimeError) {
        let labels = object["metadata"]?["labels"]
        let kind = object["kind"]?.stringValue ?? "object"
        let name = object["metadata"]?["name"]?.stringValue ?? "?"
        guard labels?[KubeNames.managedByLabel]?.stringValue == KubeNames.managedByValue,
              labels?[KubeNames.modelLabel]?.stringValue == KubeNames.labelValue(modelName),
              labels?[KubeNames.environmentLabel]?.stringValue == KubeNames.labelValue(environment) else {
            throw RuntimeError(code: "kube_not_owned",
                               message: "\(kind) \(name) in \(target.namespace) exists but was not made by model-deployer for \(modelName)/\(environment); not touching it")
        }
    }
}

extension String {
    fileprivate func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        split(separator: Character(target), omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
