import DeployCore
@testable import DeployRuntime
import Foundation
import JSON
import Testing

// A canary by replica ratio through the router and slot ports, against the real kube-apiserver and
// kube-controller-manager (see KubeIntegrationTests.swift for what is stood in for: here a task plays the
// kubelet for every Pod of the model while the test runs, marking new Pods ready and finishing the
// deletion of those scaled away).

@Suite(.serialized, .enabled(if: KubeTestEnv.available, "needs MODEL_DEPLOYER_TEST_KUBECONFIG (scripts/kube-cluster.sh)"))
struct KubeCanaryIntegrationTests {
    typealias K = KubeIntegrationTests

    /// Plays the kubelet for every Pod of the model every 300 ms until cancelled: new Pods marked ready, Pods
    /// being scaled away deleted.
    func standInKubelet(_ f: K.Fixture) -> Task<Void, Never> {
        let all = KubeManifests.ownedSelector(modelName: K.model, environment: K.env)
        return Task {
            while !Task.isCancelled {
                _ = try? await f.kubelet.markReady(selector: all)
                try? await f.kubelet.finishTerminating(selector: all)
                try? await Task.sleep(for: .milliseconds(300))
            }
        }
    }

    /// Starts `version` in `slot` (2 replicas) and waits until it is available.
    func bringUp(_ f: K.Fixture, _ version: String, slot: String) async throws {
        var spec = K.spec(version)
        spec.slot = slot
        let handle = try await f.runtime.start(spec)
        let ready = await f.runtime.waitReady(handle, deadlineSeconds: 60, intervalMs: 200)
        #expect(ready.ready, "\(version): \(ready.verdict.reason)")
    }

    func replicas(_ f: K.Fixture) async throws -> [String: Int] {
        var out: [String: Int] = [:]
        for d in try await f.kubectl.list("deployments", selector: KubeManifests.ownedSelector(modelName: K.model, environment: K.env)) {
            if let v = d["metadata"]?["annotations"]?[KubeManifests.versionAnnotation]?.stringValue {
                out[v] = Int(d["spec"]?["replicas"]?.intValue ?? -1)
            }
        }
        return out
    }

    func route(_ backends: [(String, String, Int)]) -> RouteSpec {
        RouteSpec(modelName: K.model, environment: K.env, listenPort: 80, backends: backends.map {
            WeightedBackend(slot: SlotID(rawValue: $0.0), address: SlotAddress(host: "unused", port: 80), version: $0.1, weight: $0.2)
        })
    }

    /// The versions of the Pods the stable Service's endpoints list.
    func endpointVersions(_ f: K.Fixture) async throws -> [String: Int] {
        let service = try KubeNames.serviceName(modelName: K.model, environment: K.env)
        let ep = try await f.kubectl.get("endpoints", service)
        let names = (ep?["subsets"]?.arrayValue ?? []).flatMap { $0["addresses"]?.arrayValue ?? [] }.compactMap { $0["targetRef"]?["name"]?.stringValue }
        let pods = try await f.kubectl.list("pods", selector: KubeManifests.ownedSelector(modelName: K.model, environment: K.env))
        var out: [String: Int] = [:]
        for p in pods where names.contains(p["metadata"]?["name"]?.stringValue ?? "") {
            out[p["metadata"]?["labels"]?[KubeNames.versionLabel]?.stringValue ?? "?", default: 0] += 1
        }
        return out
    }

    @Test func aStepSelectsBothVersionsAtTheirReplicaSplitThenPromotionNarrowsBack() async throws {
        let f = try await K.Fixture()
        defer { Task { await f.tearDown() } }
        let slots = KubeSlotRuntime(f.runtime), router = KubeTrafficRouter(f.runtime)
        let kubelet = standInKubelet(f)
        defer { kubelet.cancel() }

        // v0 was live before (now the warm previous version, in teal), v1 is live (blue), v2 the candidate (green).
        try await bringUp(f, "v0", slot: "teal")
        try await bringUp(f, "v1", slot: "blue")
        try await router.apply(route([("blue", "v1", 100), ("teal", "v0", 0)]))
        try await bringUp(f, "v2", slot: "green")
        #expect(try await replicas(f) == ["v0": 2, "v1": 2, "v2": 2])

        // 25 %: the candidate gets round(2 * 25 / 75) = 1 Pod, the stable version keeps 2, the warm previous
        // version goes to 0 (and its Pods are gone) before the selector drops the version label.
        let step = route([("blue", "v1", 75), ("green", "v2", 25)])
        try await router.apply(step)
        #expect(try await replicas(f) == ["v0": 0, "v1": 2, "v2": 1])
        let service = try #require(try await f.kubectl.get("service", try KubeNames.serviceName(modelName: K.model, environment: K.env)))
        #expect(service["spec"]?["selector"]?[KubeNames.versionLabel] == nil)
        #expect(service["spec"]?["selector"]?[KubeNames.modelLabel]?.stringValue == K.model)
        #expect(await router.route(modelName: K.model, environment: K.env)?.backends.map { [$0.slot.rawValue, $0.version, "\($0.weight)"] }
                == [["blue", "v1", "75"], ["green", "v2", "25"]])
        // The real endpoints controller lists the Pods of both versions, none of v0's.
        let both = try await KubeTestEnv.eventually { () async throws -> [String: Int]? in
            let seen = try await endpointVersions(f)
            return seen == ["v1": 2, "v2": 1] ? seen : nil
        }
        #expect(both == ["v1": 2, "v2": 1])
        // Neither version the split serves can be stopped.
        #expect(await slots.stop(SlotRef(modelName: K.model, environment: K.env, id: "blue"), graceSeconds: 0) == false)
        #expect(await slots.stop(SlotRef(modelName: K.model, environment: K.env, id: "green"), graceSeconds: 0) == false)

        // The analysis's figures: probes of each version's ready Pods through the pod proxy, side by side.
        let load = ProbeLoad(api: nil, input: nil, healthPath: "/readyz", requests: 6, concurrency: 1)
        let window = try #require(await router.probeWindow(modelName: K.model, environment: K.env, backends: step.backends, load: load, durationMs: 600))
        #expect(window.map(\.slot) == ["blue", "green"])
        for s in window {
            #expect(s.window?.requests == 6 && s.window?.errors == 0 && s.window?.p95Ms != nil, "\(s)")
        }

        // 75 %: now the stable version shrinks to round(2 * 25 / 75) = 1 and the candidate has 2.
        try await router.apply(route([("blue", "v1", 25), ("green", "v2", 75)]))
        #expect(try await replicas(f) == ["v0": 0, "v1": 1, "v2": 2])

        // 100 %: the selector names v2 alone again, the annotation goes, and v1 (kept warm) gets its 2 Pods back.
        try await router.apply(route([("blue", "v1", 0), ("green", "v2", 100)]))
        let narrowed = try #require(try await f.kubectl.get("service", try KubeNames.serviceName(modelName: K.model, environment: K.env)))
        #expect(f.runtime.versionSelected(by: narrowed) == "v2")
        #expect(narrowed["metadata"]?["annotations"]?[KubeCanaryState.annotation] == nil)
        #expect(try await replicas(f) == ["v0": 0, "v1": 2, "v2": 2])
        #expect(await router.verify(listenPort: 80, serving: "green", timeoutMs: 100))
        let only = try await KubeTestEnv.eventually { () async throws -> [String: Int]? in
            let seen = try await endpointVersions(f)
            return seen == ["v2": 2] ? seen : nil
        }
        #expect(only == ["v2": 2])
    }

    @Test func abortingRestoresTheStableVersionAloneAtItsFullSize() async throws {
        let f = try await K.Fixture()
        defer { Task { await f.tearDown() } }
        let router = KubeTrafficRouter(f.runtime)
        let kubelet = standInKubelet(f)
        defer { kubelet.cancel() }
        try await bringUp(f, "v1", slot: "blue")
        try await router.apply(route([("blue", "v1", 100)]))
        try await bringUp(f, "v2", slot: "green")
        try await router.apply(route([("blue", "v1", 10), ("green", "v2", 90)]))
        #expect(try await replicas(f) == ["v1": 1, "v2": 2])
        // What the engine does on an abort: the registry's live version alone, then the candidate stopped.
        try await router.apply(route([("blue", "v1", 100)]))
        #expect(try await replicas(f)["v1"] == 2)
        let svc = try #require(try await f.kubectl.get("service", try KubeNames.serviceName(modelName: K.model, environment: K.env)))
        #expect(f.runtime.versionSelected(by: svc) == "v1" && KubeCanaryState(service: svc) == nil)
        #expect(await KubeSlotRuntime(f.runtime).stop(SlotRef(modelName: K.model, environment: K.env, id: "green"), graceSeconds: 0))
        #expect(try await replicas(f) == ["v1": 2, "v2": 0])
        // A route of three versions, or weights that do not add up, is refused and changes nothing.
        #expect(await errorCode { try await router.apply(route([("blue", "v1", 50), ("green", "v2", 40)])) } == "invalid_weights")
        #expect(try await f.kubectl.get("service", try KubeNames.serviceName(modelName: K.model, environment: K.env)).map(f.runtime.versionSelected) == "v1")
    }
}
