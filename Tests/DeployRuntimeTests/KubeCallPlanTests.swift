@testable import DeployRuntime
import DeployCore
import Foundation
import JSON
import Testing

/// Which kubectl runs the ports make for the engine's warm rollback and selector switch, counted with a fake
/// kubectl that logs its arguments and answers reads and patches from files.
@Suite struct KubeCallPlanTests {
    static let model = "iris_clf", env = "prod", v1 = "v1aaaa", v2 = "v2bbbb", ns = "models"

    /// A kubectl that appends its arguments (one line per run) to `runs.log` and prints `get.json` for a
    /// read, `patch.json` for a patch.
    struct Fake {
        let dir: TempDir
        let kube: KubeRuntime

        init() throws {
            dir = try TempDir("kube-plan")
            let path = dir.path + "/kubectl"
            try TempDir.writeExecutable(path, """
            #!/bin/sh
            echo "$*" >> "\(dir.path)/runs.log"
            for a in "$@"; do
              case "$a" in get) exec cat "\(dir.path)/get.json";; patch) exec cat "\(dir.path)/patch.json";; esac
            done
            exit 1

            """)
            var env = ProcessLauncher.currentEnvironment()
            env["MODEL_DEPLOYER_KUBECTL"] = path
            // The call plan is counted in kubectl runs: the exec transport.
            env["MODEL_DEPLOYER_KUBE_TRANSPORT"] = "exec"
            let kubectl = try Kubectl(context: nil, namespace: KubeCallPlanTests.ns, environment: env)
            kube = try KubeRuntime(kubectl: kubectl, target: KubeTarget(namespace: KubeCallPlanTests.ns, imageTemplate: "r/x:{bento_version}"))
        }

        /// The verb and kind of each run so far.
        func runs() -> [String] {
            let text = (try? String(contentsOfFile: dir.path + "/runs.log", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").map { line in
                let words = line.split(separator: " ").map(String.init)
                guard let i = words.firstIndex(where: { $0 == "get" || $0 == "patch" }) else { return line.description }
                return words[i...].prefix(2).joined(separator: " ")
            }
        }

        func answer(get: JSONValue, patch: JSONValue) throws {
            try TempDir.write(dir.path + "/get.json", get.jsonString)
            try TempDir.write(dir.path + "/patch.json", patch.jsonString)
        }
    }

    static func deployment(_ version: String, slot: String, available: Int) throws -> JSONValue {
        let name = try KubeNames.deploymentName(modelName: model, environment: env, version: version)
        var labels = KubeManifests.commonLabels(modelName: model, environment: env)
        labels[KubeNames.slotLabel] = .string(slot)
        labels[KubeNames.versionLabel] = .string(version)
        return ["kind": "Deployment", "metadata": ["name": .string(name), "generation": 1, "labels": .object(labels),
                                                   "annotations": [KubeManifests.modelAnnotation: .string(model),
                                                                   KubeManifests.environmentAnnotation: .string(env),
                                                                   KubeManifests.versionAnnotation: .string(version)]],
                "spec": ["replicas": 1], "status": ["availableReplicas": .int(Int64(available))]]
    }

    static func service(selecting version: String, preview: Bool = false) throws -> JSONValue {
        let name = preview ? try KubeNames.previewServiceName(modelName: model, environment: env)
                           : try KubeNames.serviceName(modelName: model, environment: env)
        var labels = KubeManifests.commonLabels(modelName: model, environment: env)
        labels[KubeNames.roleLabel] = preview ? "preview" : "active"
        let selector = KubeNames.selector(modelName: model, environment: env, version: version).mapValues { JSONValue.string($0) }
        return ["kind": "Service", "metadata": ["name": .string(name), "labels": .object(labels)], "spec": ["selector": .object(selector)]]
    }

    /// v2 live in green, v1 warm in blue; the agent rolls back to v1.
    static func cluster(v1Available: Int) throws -> JSONValue {
        ["items": [try deployment(v1, slot: "blue", available: v1Available), try deployment(v2, slot: "green", available: 1),
                   try service(selecting: v2), try service(selecting: v2, preview: true)]]
    }

    /// The engine's warm rollback asks: the previous slot's state, its readiness, its state again, then the
    /// switch. One list and one patch.
    @Test func warmRollbackIsOneReadAndOnePatch() async throws {
        let f = try Fake()
        defer { f.dir.remove() }
        try f.answer(get: try Self.cluster(v1Available: 1), patch: try Self.service(selecting: Self.v1))
        let slots = KubeSlotRuntime(f.kube), prober = KubeProber(f.kube), router = KubeTrafficRouter(f.kube)
        let ref = SlotRef(modelName: Self.model, environment: Self.env, id: SlotID(rawValue: "blue"))
        let warm = try #require(await slots.state(ref))
        #expect(warm.alive && warm.address.host.hasPrefix("deployment/"))
        #expect(await prober.isReady(warm.address, path: "/readyz", timeoutMs: 500))
        let again = try #require(await slots.state(ref))
        #expect(again.alive)
        try await router.apply(RouteSpec(modelName: Self.model, environment: Self.env, listenPort: 80,
                                         backends: [WeightedBackend(slot: again.ref.id, address: again.address, version: Self.v1)]))
        #expect(f.runs() == ["get deployments,services", "patch service"])
    }

    /// The safety check stays: a previous version with no available replica is not warm (and the read
    /// that says so is the one list).
    @Test func previousWithNoAvailableReplicaIsNotWarm() async throws {
        let f = try Fake()
        defer { f.dir.remove() }
        try f.answer(get: try Self.cluster(v1Available: 0), patch: try Self.service(selecting: Self.v1))
        let slots = KubeSlotRuntime(f.kube), prober = KubeProber(f.kube)
        let ref = SlotRef(modelName: Self.model, environment: Self.env, id: SlotID(rawValue: "blue"))
        let state = try #require(await slots.state(ref))
        #expect(!state.alive)
        #expect(await !prober.isReady(state.address, path: "/readyz", timeoutMs: 500))
        #expect(f.runs() == ["get deployments,services"])
    }

    /// Any kubectl run between two reads (a write above all) makes the second read a new one.
    @Test func aRunInBetweenMakesTheNextReadANewOne() async throws {
        let f = try Fake()
        defer { f.dir.remove() }
        try f.answer(get: try Self.cluster(v1Available: 1), patch: try Self.service(selecting: Self.v1))
        let slots = KubeSlotRuntime(f.kube), router = KubeTrafficRouter(f.kube)
        let ref = SlotRef(modelName: Self.model, environment: Self.env, id: SlotID(rawValue: "blue"))
        _ = await slots.state(ref)
        try await router.apply(RouteSpec(modelName: Self.model, environment: Self.env, listenPort: 80,
                                         backends: [WeightedBackend(slot: ref.id, address: SlotAddress(host: "x", port: 80), version: Self.v1)]))
        _ = await slots.state(ref)
        #expect(f.runs() == ["get deployments,services", "patch service", "get deployments,services"])
    }

    /// Starting a version into a slot stops what ran there first: the slot's state, then the stop, which
    /// finds the Deployment and the stable Service in that same list. One list and the scale-down patch;
    /// and never the version the stable Service selects.
    @Test func stoppingTheOldOccupantReadsOnce() async throws {
        let f = try Fake()
        defer { f.dir.remove() }
        try f.answer(get: try Self.cluster(v1Available: 1), patch: try Self.deployment(Self.v1, slot: "blue", available: 1))
        let slots = KubeSlotRuntime(f.kube)
        let blue = SlotRef(modelName: Self.model, environment: Self.env, id: SlotID(rawValue: "blue"))
        let green = SlotRef(modelName: Self.model, environment: Self.env, id: SlotID(rawValue: "green"))
        #expect(await slots.state(blue) != nil)
        #expect(await slots.stop(blue, graceSeconds: 5))
        #expect(f.runs() == ["get deployments,services", "patch deployment"])
        // v2 in green is what the Service selects: refused, after a new read (a run happened since).
        #expect(await !slots.stop(green, graceSeconds: 5))
        #expect(f.runs() == ["get deployments,services", "patch deployment", "get deployments,services"])
    }

    /// Reads older than the reuse window are made again.
    @Test func anOldReadIsNotReused() async throws {
        let f = try Fake()
        defer { f.dir.remove() }
        try f.answer(get: try Self.cluster(v1Available: 1), patch: try Self.service(selecting: Self.v1))
        let sel = KubeManifests.ownedSelector(modelName: Self.model, environment: Self.env)
        _ = try await f.kube.kubectl.list("deployments,services", selector: sel, reusingWithinMs: 50)
        _ = try await f.kube.kubectl.list("deployments,services", selector: sel, reusingWithinMs: 50)
        try await Task.sleep(for: .milliseconds(80))
        _ = try await f.kube.kubectl.list("deployments,services", selector: sel, reusingWithinMs: 50)
        // Without reuse asked for, a read is always made.
        _ = try await f.kube.kubectl.list("deployments,services", selector: sel)
        #expect(f.runs() == Array(repeating: "get deployments,services", count: 3))
    }
}
