import DeployCore
@testable import DeployRuntime
import Foundation
import Glibc
import JSON
import Testing

// Integration tests of the Kubernetes runtime against a real kube-apiserver (1.20, with etcd) and a real
// kube-controller-manager, started by scripts/test.sh with scripts/kube-cluster.sh.
//
// STOOD IN FOR (no container runtime can run here): the kubelet and kube-scheduler. `KubeletStandIn`
// registers one Node object, binds Pods to it through the binding subresource (what kube-scheduler
// does) or writes the scheduler's PodScheduled=False/Unschedulable verdict, writes Pod status through
// the status subresource (phase Running, Ready/ContainersReady conditions, a Pod IP, container states
// ImagePullBackOff / CrashLoopBackOff), which is what a kubelet reports, and completes the deletion of
// Pods being scaled away (a kubelet's grace-period-0 delete). Where the container would answer, an
// in-process HTTP server on this host's non-loopback address does (/readyz, /livez, /echo), or, in
// realBentoMLAnswersThroughTheServiceProxy, a real `bentoml serve` of the v1 example bento. Everything else is real: server-side apply and validation, the deployment and
// replicaset controllers making ReplicaSets and Pods, the endpoints controller, the Service selector
// switch, the progress deadline, and the API server's service proxy.

enum KubeTestEnv {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }
    /// kubeconfig of the throwaway control plane (`scripts/kube-cluster.sh start` prints it).
    static var kubeconfig: String? { environment["MODEL_DEPLOYER_TEST_KUBECONFIG"].flatMap { $0.isEmpty ? nil : $0 } }
    static var available: Bool { kubeconfig != nil }
    static var isCI: Bool { environment["CI"] == "true" }

    /// The environment kubectl runs with: the test kubeconfig, and the cluster script's kubectl 1.20
    /// unless MODEL_DEPLOYER_KUBECTL says otherwise. The exec transport: a `kubectl proxy` started here
    /// would outlive the test process (the proxy transport against the real API server is tested through
    /// the agent, which stops it, in Tests/integration/test_kube_deploy.py).
    static func kubectlEnvironment() -> [String: String] {
        var env = environment
        env["KUBECONFIG"] = kubeconfig
        env["MODEL_DEPLOYER_KUBE_TRANSPORT"] = "exec"
        return env
    }

    static func kubectl(namespace: String) throws -> Kubectl {
        try Kubectl(context: nil, namespace: namespace, environment: kubectlEnvironment(), timeout: .seconds(20))
    }

    /// A fresh namespace for one test, deleted by `dropNamespace`.
    static func makeNamespace() async throws -> String {
        let ns = "md-test-" + UUID().uuidString.lowercased().prefix(8)
        let k = try kubectl(namespace: "default")
        _ = try await k.run(["create", "namespace", ns], namespaced: false)
        // The service-account controller must create "default" before Pods can be admitted.
        for _ in 0..<100 {
            if try await k.json(["get", "serviceaccounts", "-n", ns, "-o", "json"], namespaced: false)["items"]?.arrayValue?.isEmpty == false { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        return ns
    }

    static func dropNamespace(_ ns: String) async {
        guard let k = try? kubectl(namespace: "default") else { return }
        _ = try? await k.run(["delete", "namespace", ns, "--wait=false"], namespaced: false)
    }

    /// This host's first non-loopback IPv4 address: the API server refuses to proxy to loopback.
    static func hostAddress() -> String? {
        var ifap: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&ifap) == 0, let first = ifap else { return nil }
        defer { freeifaddrs(ifap) }
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let cur = p {
            if let sa = cur.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET) {
                var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                let addr = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                var a = addr
                inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
                let s = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !s.hasPrefix("127.") { return s }
            }
            p = cur.pointee.ifa_next
        }
        return nil
    }

    /// Polls `body` until it returns a value or `seconds` pass.
    static func eventually<T>(_ seconds: Double = 30, _ body: () async throws -> T?) async throws -> T? {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if let v = try await body() { return v }
            try await Task.sleep(for: .milliseconds(200))
        }
        return nil
    }
}

/// What a scheduler and a kubelet would write: a binding to a Node (`POST .../pods/NAME/binding`) and Pod
/// status through the status subresource (`PUT .../pods/NAME/status`, via `kubectl replace --raw`).
struct KubeletStandIn {
    static let nodeName = "kubelet-stand-in"
    let kubectl: Kubectl
    let podIP: String

    /// The endpoints controllers need a Pod's node to exist; the Node object is all there is of it.
    func ensureNode() async throws {
        let node: JSONValue = ["apiVersion": "v1", "kind": "Node",
                               "metadata": ["name": .string(Self.nodeName), "labels": ["model-deployer/test": "stand-in"]]]
        let code = await errorCode { _ = try await kubectl.run(["create", "-f", "-"], stdin: node.jsonBytes, namespaced: false) }
        if code != nil && code != "kube_conflict" { throw RuntimeError(code: code!, message: "cannot register the stand-in Node") }
    }

    /// Binds the Pods matching `selector` that have no node yet, as kube-scheduler would.
    func bind(selector: String) async throws {
        try await ensureNode()
        for pod in try await kubectl.list("pods", selector: selector) where pod["spec"]?["nodeName"]?.stringValue == nil {
            guard let name = pod["metadata"]?["name"]?.stringValue else { continue }
            let binding: JSONValue = ["apiVersion": "v1", "kind": "Binding", "metadata": ["name": .string(name)],
                                      "target": ["apiVersion": "v1", "kind": "Node", "name": .string(Self.nodeName)]]
            _ = try await kubectl.rawPost("/api/v1/namespaces/\(kubectl.namespace)/pods/\(name)/binding", body: binding.jsonBytes)
        }
    }

    /// Marks every Pod matching `selector` Running and Ready at `podIP`; returns how many it marked.
    @discardableResult
    func markReady(selector: String) async throws -> Int {
        try await bind(selector: selector)
        return try await update(selector: selector) { status in
            let now = Self.timestamp()
            status["phase"] = "Running"
            status["podIP"] = .string(podIP)
            status["podIPs"] = [["ip": .string(podIP)]]
            status["hostIP"] = .string(podIP)
            status["startTime"] = .string(now)
            status["conditions"] = .array(["Initialized", "Ready", "ContainersReady", "PodScheduled"].map {
                ["type": .string($0), "status": "True", "lastTransitionTime": .string(now)]
            })
            status["containerStatuses"] = [["name": "bento", "ready": true, "restartCount": 0, "image": "stand-in",
                                            "imageID": "", "started": true, "state": ["running": ["startedAt": .string(now)]]]]
        }
    }

    /// Completes the deletion of Pods the ReplicaSet controller is scaling away, as a kubelet does once
    /// their containers stopped (a bound Pod is only gone when its kubelet confirms with grace period 0).
    func finishTerminating(selector: String) async throws {
        for pod in try await kubectl.list("pods", selector: selector) where pod["metadata"]?["deletionTimestamp"] != nil {
            guard let name = pod["metadata"]?["name"]?.stringValue else { continue }
            _ = try await kubectl.run(["delete", "pod", name, "--grace-period=0", "--force", "--ignore-not-found"])
        }
    }

    /// Reports the Pods' container as unable to pull its image, as a kubelet would.
    @discardableResult
    func markImagePullBackOff(selector: String) async throws -> Int {
        try await update(selector: selector) { status in
            let now = Self.timestamp()
            status["phase"] = "Pending"
            status["conditions"] = [["type": "PodScheduled", "status": "True", "lastTransitionTime": .string(now)],
                                    ["type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": .string(now)]]
            status["containerStatuses"] = [["name": "bento", "ready": false, "restartCount": 0, "image": "registry.example/missing:1",
                                            "imageID": "", "state": ["waiting": ["reason": "ImagePullBackOff",
                                                                                 "message": "Back-off pulling image \"registry.example/missing:1\""]]]]
        }
    }

    /// What kube-scheduler reports for a Pod no node can take (it writes the PodScheduled condition).
    @discardableResult
    func markUnschedulable(selector: String) async throws -> Int {
        try await update(selector: selector) { status in
            status["phase"] = "Pending"
            status["conditions"] = [["type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": "0/3 nodes are available: 3 Insufficient memory.",
                                     "lastTransitionTime": .string(Self.timestamp())]]
        }
    }

    /// What a kubelet reports for a container that keeps exiting.
    @discardableResult
    func markCrashLoop(selector: String) async throws -> Int {
        try await bind(selector: selector)
        return try await update(selector: selector) { status in
            let now = Self.timestamp()
            status["phase"] = "Running"
            status["podIP"] = .string(podIP)
            status["conditions"] = [["type": "PodScheduled", "status": "True", "lastTransitionTime": .string(now)],
                                    ["type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": .string(now)]]
            status["containerStatuses"] = [["name": "bento", "ready": false, "restartCount": 5, "image": "registry.example/iris:1",
                                            "imageID": "", "state": ["waiting": ["reason": "CrashLoopBackOff",
                                                                                 "message": "back-off 2m40s restarting failed container"]],
                                            "lastState": ["terminated": ["exitCode": 137, "reason": "OOMKilled",
                                                                         "startedAt": .string(now), "finishedAt": .string(now)]]]]
        }
    }

    private func update(selector: String, _ change: (inout [String: JSONValue]) -> Void) async throws -> Int {
        let pods = try await kubectl.list("pods", selector: selector)
        var n = 0
        for pod in pods {
            guard let name = pod["metadata"]?["name"]?.stringValue else { continue }
            let path = "/api/v1/namespaces/\(kubectl.namespace)/pods/\(name)"
            var done = false
            var attempt = 0
            while !done {
                attempt += 1
                // Re-read each time: a controller may have changed the Pod meanwhile (resourceVersion conflict).
                let current = try JSONValue.parse(try await kubectl.rawGet(path))
                var obj = current.objectValue ?? [:]
                var status = obj["status"]?.objectValue ?? [:]
                change(&status)
                obj["status"] = .object(status)
                let body = JSONValue.object(obj).jsonBytes
                let code = await errorCode {
                    _ = try await kubectl.run(["replace", "--raw", path + "/status", "-f", "-"], stdin: body, namespaced: false)
                }
                if code == nil { n += 1; done = true } else if code != "kube_conflict" || attempt >= 5 {
                    throw RuntimeError(code: code ?? "", message: "status update of \(name) failed")
                }
            }
        }
        return n
    }

    static func timestamp() -> String {
        var t = time(nil)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        var buf = [CChar](repeating: 0, count: 32)
        strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%SZ", &tmv)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The `RuntimeError` code `body` throws, nil when it returns, the description of any other error.
func errorCode(_ body: () async throws -> Void) async -> String? {
    do { try await body(); return nil } catch { return (error as? RuntimeError)?.code ?? "\(error)" }
}

@Suite struct KubeControlPlanePresence {
    @Test func controlPlaneIsThereUnderCI() {
        // Skipping the Kubernetes tests is allowed only off CI (binaries not built on this machine).
        if KubeTestEnv.isCI {
            #expect(KubeTestEnv.available, "CI=true but MODEL_DEPLOYER_TEST_KUBECONFIG is not set: scripts/test.sh must start scripts/kube-cluster.sh")
        } else if !KubeTestEnv.available {
            print("SKIP Kubernetes integration tests: MODEL_DEPLOYER_TEST_KUBECONFIG not set (scripts/test.sh starts the control plane; scripts/kube-cluster.sh build|start DIR PORT by hand)")
        }
    }
}

@Suite(.serialized, .enabled(if: KubeTestEnv.available, "needs MODEL_DEPLOYER_TEST_KUBECONFIG (scripts/kube-cluster.sh)"))
struct KubeIntegrationTests {
    static let model = "iris_classifier", env = "production"

    static func spec(_ version: String, id: String = "018f3a2b-7c4d-7e5f-8a6b-1c2d3e4f5a6b") -> KubeVersionSpec {
        KubeVersionSpec(modelName: model, environment: env, version: version, bentoTag: "\(model):\(version)", deploymentID: id,
                        resources: KubeResources(memoryMB: 256, cpu: 0.25))
    }

    struct Fixture {
        let ns: String
        let kubectl: Kubectl
        let runtime: KubeRuntime
        let kubelet: KubeletStandIn
        let server: StandInContainer

        init(progressDeadlineSeconds: Int = 600) async throws {
            let host = try #require(KubeTestEnv.hostAddress(), "no non-loopback IPv4 address to stand in for Pod IPs")
            server = try StandInContainer(address: host)
            ns = try await KubeTestEnv.makeNamespace()
            kubectl = try KubeTestEnv.kubectl(namespace: ns)
            let target = KubeTarget(namespace: ns, imageTemplate: "registry.example/{bento_name}:{bento_version}", replicas: 2,
                                    progressDeadlineSeconds: progressDeadlineSeconds, containerPort: server.port)
            runtime = try KubeRuntime(kubectl: kubectl, target: target)
            kubelet = KubeletStandIn(kubectl: kubectl, podIP: host)
        }

        func selector(_ version: String) -> String {
            KubeNames.selector(modelName: model, environment: env, version: version).sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        }

        /// Waits for the real ReplicaSet controller to create the version's Pods, then stands in for the kubelet.
        func bringUp(_ version: String) async throws -> KubeVersionHandle {
            let handle = try await runtime.start(spec(version))
            let pods = try await KubeTestEnv.eventually { () async throws -> [JSONValue]? in
                let p = try await kubectl.list("pods", selector: selector(version))
                return p.count == 2 ? p : nil
            }
            #expect(pods?.count == 2, "the replicaset controller should have made 2 Pods for \(version)")
            #expect(try await kubelet.markReady(selector: selector(version)) == 2)
            let ready = await runtime.waitReady(handle, deadlineSeconds: 30, intervalMs: 200)
            #expect(ready.ready, "\(ready.verdict.reason)")
            return handle
        }

        func tearDown() async {
            server.close()
            await KubeTestEnv.dropNamespace(ns)
        }
    }

    @Test func blueGreenSwitchRollbackAndKeepWarm() async throws {
        let f = try await Fixture()
        defer { Task { await f.tearDown() } }
        let r = f.runtime

        // v1: created with server-side apply; the real controllers make a ReplicaSet and Pods.
        let h1 = try await r.start(Self.spec("v1"))
        #expect(h1.generation >= 1)
        let rs = try await KubeTestEnv.eventually { () async throws -> [JSONValue]? in
            let l = try await f.kubectl.list("replicasets", selector: f.selector("v1"))
            return l.isEmpty ? nil : l
        }
        #expect(rs?.count == 1)
        #expect(rs?.first?["metadata"]?["ownerReferences"]?.arrayValue?.first?["name"]?.stringValue == h1.deploymentName)

        let pods = try await KubeTestEnv.eventually { () async throws -> Bool? in
            try await f.kubectl.list("pods", selector: f.selector("v1")).count == 2 ? true : nil
        }
        #expect(pods == true, "the replicaset controller should have made 2 Pods")
        // Without a kubelet nothing becomes ready, and the verdict says why in words.
        let notYet = await r.waitReady(h1, deadlineSeconds: 1.5, intervalMs: 200)
        #expect(!notYet.ready)
        #expect(notYet.verdict.stuckKind == .notScheduled, "\(notYet.verdict.reason)")
        #expect(notYet.verdict.reason.contains("no node"))

        #expect(try await f.kubelet.markReady(selector: f.selector("v1")) == 2)
        let ready1 = await r.waitReady(h1, deadlineSeconds: 30, intervalMs: 200)
        #expect(ready1.ready && ready1.verdict.available == 2, "\(ready1.verdict.reason)")
        #expect(try await r.currentVersion(modelName: Self.model, environment: Self.env) == "v1")

        // Smoke through the API server's service proxy: POST (kubectl create --raw) and GET (get --raw).
        let smoke = await r.smoke(modelName: Self.model, environment: Self.env, preview: false,
                                  checks: [SmokeTest(api: "echo", input: ["x": [1, 2]], expect: ["x": [1, 2]])])
        #expect(smoke.count == 1 && smoke[0].passed, "\(smoke.first?.message ?? "")")
        #expect(try await r.waitEndpoints(modelName: Self.model, environment: Self.env, preview: false))
        let readyz = try await r.call(modelName: Self.model, environment: Self.env, preview: false, path: "/readyz")
        #expect(try JSONValue.parse(readyz) == ["ok": true])
        // What BentoML gets through this path: a chunked body with no Content-Type (kubectl create --raw sets none).
        #expect(f.server.contentTypes.first == "")

        // v2 comes up beside v1; the preview Service selects it, the stable one still selects v1.
        _ = try await f.bringUp("v2")
        #expect(try await r.currentVersion(modelName: Self.model, environment: Self.env) == "v1")
        let pre = await r.smoke(modelName: Self.model, environment: Self.env, preview: true,
                                checks: [SmokeTest(api: "echo", input: ["v": 2], expect: ["v": 2])])
        #expect(pre.first?.passed == true, "\(pre.first?.message ?? "")")

        // Switch: one conditional patch of the selector; the real endpoints controller follows it.
        let sw = try await r.route(modelName: Self.model, environment: Self.env, to: "v2", expecting: "v1")
        #expect(sw.previousVersion == "v1" && sw.version == "v2")
        #expect(try await r.currentVersion(modelName: Self.model, environment: Self.env) == "v2")
        let service = try KubeNames.serviceName(modelName: Self.model, environment: Self.env)
        let v2Pods = Set(try await f.kubectl.list("pods", selector: f.selector("v2")).compactMap { $0["metadata"]?["name"]?.stringValue })
        let endpointsFollow = try await KubeTestEnv.eventually { () async throws -> Bool? in
            let ep = try await f.kubectl.get("endpoints", service)
            let names = Set((ep?["subsets"]?.arrayValue ?? []).flatMap { $0["addresses"]?.arrayValue ?? [] }
                .compactMap { $0["targetRef"]?["name"]?.stringValue })
            return names == v2Pods ? true : nil
        }
        #expect(endpointsFollow == true, "the Service's endpoints should be exactly v2's Pods")

        // A second switch that still believes v1 is live loses: the JSON patch's test operation fails.
        #expect(await errorCode { _ = try await r.route(modelName: Self.model, environment: Self.env, to: "v2", expecting: "v1") } == "kube_conflict")

        // v1 is kept warm, so it cannot be scaled to 0 while... it is not live; but v2 is live and is refused.
        #expect(await errorCode { try await r.stop(modelName: Self.model, environment: Self.env, version: "v2") } == "kube_in_use")

        // Rollback: switch back to the warm v1.
        let back = try await r.rollback(modelName: Self.model, environment: Self.env, from: "v2", to: "v1")
        #expect(back.previousVersion == "v2" && back.version == "v1")
        #expect(try await r.currentVersion(modelName: Self.model, environment: Self.env) == "v1")

        // Keep-warm over: v2 (no longer live) is scaled to 0; the controller removes its Pods.
        #expect(try await r.retire(modelName: Self.model, environment: Self.env, version: "v2", keepWarm: .milliseconds(200)))
        let d2 = try await f.kubectl.get("deployment", try KubeNames.deploymentName(modelName: Self.model, environment: Self.env, version: "v2"))
        #expect(d2?["spec"]?["replicas"]?.intValue == 0)
        let drained = try await KubeTestEnv.eventually { () async throws -> Bool? in
            try await f.kubelet.finishTerminating(selector: f.selector("v2"))
            return try await f.kubectl.list("pods", selector: f.selector("v2")).isEmpty ? true : nil
        }
        #expect(drained == true)
        // A version retired to 0 is not a rollback target any more: it has no available replica (the engine
        // checks this before its one-call rollback).
        let cold = try await KubeTestEnv.eventually { () async throws -> Bool? in
            try await r.availableReplicas(modelName: Self.model, environment: Self.env, version: "v2") == 0 ? true : nil
        }
        #expect(cold == true)
        // The live version is never retired.
        #expect(try await r.retire(modelName: Self.model, environment: Self.env, version: "v1", keepWarm: .zero) == false)

        // Everything it made, found by label.
        let objects = try await r.list(modelName: Self.model, environment: Self.env)
        let kinds = Dictionary(grouping: objects, by: \.kind).mapValues(\.count)
        #expect(kinds["Deployment"] == 2 && kinds["Service"] == 2 && kinds["ReplicaSet"] == 2 && kinds["Pod"] == 2, "\(kinds)")
        #expect(objects.first { $0.kind == "Service" && $0.name == service }?.selectsVersion == "v1")
        #expect(objects.filter { $0.kind == "Deployment" }.map(\.version) == objects.filter { $0.kind == "Deployment" }.map(\.version))
        #expect(Set(objects.filter { $0.kind == "Deployment" }.compactMap(\.version)) == ["v1", "v2"])
    }

    @Test(.enabled(if: TestEnv.bentoml != nil, "needs MODEL_DEPLOYER_TEST_BENTOML_HOME and MODEL_DEPLOYER_BENTOML (scripts/test.sh)"))
    func realBentoMLAnswersThroughTheServiceProxy() async throws {
        // The container stood in by a real `bentoml serve` of the v1 example bento on this host's address:
        // the smoke POST goes kubectl create --raw -> API server -> service proxy -> endpoints -> BentoML.
        let env = TestEnv.bentoml!
        let host = try #require(KubeTestEnv.hostAddress())
        let bento = try BentoMLIntegrationTests.bento("v1")
        let port = freePort(preferred: nil)
        let logs = try TempDir("kube-bento")
        var childEnv = ProcessLauncher.currentEnvironment()
        childEnv["BENTOML_HOME"] = env.home
        childEnv["BENTOML_DO_NOT_TRACK"] = "true"
        let proc = try ProcessLauncher.spawnDetached(executable: env.executable,
                                                     arguments: ["serve", bento.tag, "--host", host, "--port", "\(port)"],
                                                     environment: childEnv, workingDirectory: nil, logPath: logs.path + "/bentoml.log")
        let ns = try await KubeTestEnv.makeNamespace()
        try await withCleanup({
            var up = false
            for _ in 0..<300 where !up {
                up = (try? await HTTPClient.request(method: "GET", host: host, port: port, path: "/readyz", timeoutMs: 1000))?.isSuccess == true
                if !up { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(up, "bentoml serve did not become ready")
            guard up else { return }
            let kubectl = try KubeTestEnv.kubectl(namespace: ns)
            let target = KubeTarget(namespace: ns, imageTemplate: "registry.example/{bento_name}:{bento_version}", replicas: 1,
                                    containerPort: port)
            let r = try KubeRuntime(kubectl: kubectl, target: target)
            let version = String(bento.tag.split(separator: ":")[1])
            let h = try await r.start(KubeVersionSpec(modelName: Self.model, environment: Self.env, version: version, bentoTag: bento.tag,
                                                      deploymentID: "018f3a2b-7c4d-7e5f-8a6b-1c2d3e4f5a6b",
                                                      resources: KubeResources(memoryMB: 512, cpu: 1)))
            let sel = KubeNames.selector(modelName: Self.model, environment: Self.env, version: version).sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            _ = try await KubeTestEnv.eventually { try await kubectl.list("pods", selector: sel).isEmpty ? nil : true }
            #expect(try await KubeletStandIn(kubectl: kubectl, podIP: host).markReady(selector: sel) == 1)
            #expect(await r.waitReady(h, deadlineSeconds: 30, intervalMs: 200).ready)
            let smoke = await r.smoke(modelName: Self.model, environment: Self.env, preview: true,
                                      checks: [SmokeTest(api: "predict", input: BentoMLIntegrationTests.smokeInput,
                                                         expect: BentoMLIntegrationTests.v1Answer)])
            #expect(smoke.first?.passed == true, "\(smoke.first?.message ?? "")")
        }, cleanup: {
            _ = await ProcessLauncher.terminateTree(pgid: proc.pgid, members: [proc.pid], grace: .seconds(5))
            await KubeTestEnv.dropNamespace(ns)
            logs.remove()
        })
    }

    @Test func stuckRolloutIsReportedInWordsAndTornDownLeavingLiveAlone() async throws {
        let f = try await Fixture(progressDeadlineSeconds: 3)
        defer { Task { await f.tearDown() } }
        let r = f.runtime
        _ = try await f.bringUp("v1")
        let h3 = try await r.start(Self.spec("v3"))
        _ = try await KubeTestEnv.eventually { () async throws -> Bool? in
            try await f.kubectl.list("pods", selector: f.selector("v3")).count == 2 ? true : nil
        }
        // What a kubelet would report for an image that does not exist.
        #expect(try await f.kubelet.markImagePullBackOff(selector: f.selector("v3")) == 2)
        let verdict = await r.waitReady(h3, deadlineSeconds: 60, intervalMs: 300)
        #expect(!verdict.ready)
        #expect(verdict.verdict.phase == .stuck, "\(verdict.verdict.reason)")
        #expect(verdict.verdict.stuckKind == .imagePull)
        #expect(verdict.verdict.reason.contains("ProgressDeadlineExceeded"))
        #expect(verdict.verdict.reason.contains("cannot pull registry.example/missing:1 (ImagePullBackOff"))

        // Torn down; the live version and its Service are untouched.
        try await r.remove(modelName: Self.model, environment: Self.env, version: "v3")
        #expect(try await f.kubectl.get("deployment", h3.deploymentName) == nil)
        #expect(try await r.currentVersion(modelName: Self.model, environment: Self.env) == "v1")
        let d1 = try await f.kubectl.get("deployment", try KubeNames.deploymentName(modelName: Self.model, environment: Self.env, version: "v1"))
        #expect(d1?["status"]?["availableReplicas"]?.intValue == 2)
        // The live version itself cannot be removed.
        #expect(await errorCode { try await r.remove(modelName: Self.model, environment: Self.env, version: "v1") } == "kube_in_use")
    }

    @Test(arguments: [KubeStuckKind.unschedulable, .crashLoop])
    func otherStuckCausesAreNamed(_ kind: KubeStuckKind) async throws {
        let f = try await Fixture(progressDeadlineSeconds: 3)
        defer { Task { await f.tearDown() } }
        let h = try await f.runtime.start(Self.spec("v4"))
        _ = try await KubeTestEnv.eventually { () async throws -> Bool? in
            try await f.kubectl.list("pods", selector: f.selector("v4")).count == 2 ? true : nil
        }
        if kind == .unschedulable {
            #expect(try await f.kubelet.markUnschedulable(selector: f.selector("v4")) == 2)
        } else {
            #expect(try await f.kubelet.markCrashLoop(selector: f.selector("v4")) == 2)
        }
        let v = await f.runtime.waitReady(h, deadlineSeconds: 60, intervalMs: 300)
        #expect(!v.ready && v.verdict.phase == .stuck, "\(v.verdict.reason)")
        #expect(v.verdict.stuckKind == kind, "\(v.verdict.reason)")
        let words = kind == .unschedulable ? "cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory."
                                           : "keeps crashing (CrashLoopBackOff, 5 restarts, last exit code 137)"
        #expect(v.verdict.reason.contains(words), "\(v.verdict.reason)")
    }

    @Test func twoRacingSwitchesFromTheSameLiveVersionExactlyOneWins() async throws {
        // Two agents (two runtimes, two kubectl processes) both believe v1 is live and switch at once.
        let f = try await Fixture()
        defer { Task { await f.tearDown() } }
        for v in ["v1", "v2", "v3"] { _ = try await f.runtime.start(Self.spec(v)) }
        #expect(try await f.runtime.currentVersion(modelName: Self.model, environment: Self.env) == "v1")
        let other = try KubeRuntime(kubectl: try KubeTestEnv.kubectl(namespace: f.ns), target: f.runtime.target)
        async let a = errorCode { _ = try await f.runtime.route(modelName: Self.model, environment: Self.env, to: "v2", expecting: "v1") }
        async let b = errorCode { _ = try await other.route(modelName: Self.model, environment: Self.env, to: "v3", expecting: "v1") }
        let (ra, rb) = await (a, b)
        #expect([ra, rb].filter { $0 == nil }.count == 1, "\(String(describing: ra)) \(String(describing: rb))")
        #expect([ra, rb].filter { $0 == "kube_conflict" }.count == 1)
        let live = try await f.runtime.currentVersion(modelName: Self.model, environment: Self.env)
        #expect(live == (ra == nil ? "v2" : "v3"))
    }

    @Test func neverTouchesWhatItDidNotCreate() async throws {
        let f = try await Fixture()
        defer { Task { await f.tearDown() } }
        let name = try KubeNames.serviceName(modelName: Self.model, environment: Self.env)
        let foreign: JSONValue = ["apiVersion": "v1", "kind": "Service",
                                  "metadata": ["name": .string(name), "namespace": .string(f.ns)],
                                  "spec": ["selector": ["app": "someone-else"], "ports": [["port": 80]]]]
        _ = try await f.kubectl.json(["create", "-o", "json", "-f", "-"], stdin: foreign.jsonBytes)
        #expect(await errorCode { _ = try await f.runtime.start(Self.spec("v1")) } == "kube_not_owned")
        // The one-call switch checks ownership on the server (JSON patch test operations) and refuses too.
        #expect(await errorCode { _ = try await f.runtime.route(modelName: Self.model, environment: Self.env, to: "v1", expecting: "v0") } == "kube_not_owned")
        let after = try await f.kubectl.get("service", name)
        #expect(after?["spec"]?["selector"] == ["app": "someone-else"])
        #expect(try await f.kubectl.list("deployments", selector: "app.kubernetes.io/managed-by=model-deployer").isEmpty)
        #expect(try await f.runtime.list(modelName: Self.model, environment: Self.env).isEmpty)
    }

    @Test func apiServerRefusesWhatValidationMustCatch() async throws {
        // Server-side validation is real: a manifest broken after rendering is refused with a stable code.
        let f = try await Fixture()
        defer { Task { await f.tearDown() } }
        guard case .object(var d) = try KubeManifests.deployment(Self.spec("v1"), target: f.runtime.target),
              case .object(var spec)? = d["spec"] else { Issue.record("not an object"); return }
        spec["selector"] = ["matchLabels": ["model-deployer/version": "other"]]
        d["spec"] = .object(spec)
        #expect(await errorCode { _ = try await f.kubectl.apply(.object(d)) } == "kube_invalid_object")
    }
}

/// Answers where the container would, on a non-loopback address (the API server refuses to proxy to
/// loopback): `/readyz` and `/livez` answer `{"ok":true}`, `POST /echo` answers its JSON body, anything
/// else 404. It reads chunked request bodies, because that is how `kubectl create --raw` sends them
/// through the service proxy. Records the Content-Type each request carried.
final class StandInContainer: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let lock = NSLock()
    private var seenContentTypes: [String] = []

    var contentTypes: [String] { lock.lock(); defer { lock.unlock() }; return seenContentTypes }

    init(address: String) throws {
        let sock = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        guard inet_pton(AF_INET, address, &addr.sin_addr) == 1 else { throw POSIXError(.EINVAL) }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(sock, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0, listen(sock, 64) == 0 else { Glibc.close(sock); throw POSIXError(.EADDRINUSE) }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(sock, $0, &len) } }
        fd = sock
        port = Int(UInt16(bigEndian: bound.sin_port))
        Thread { [self] in
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 { if errno == EINTR { continue }; Glibc.close(fd); return }
                Thread { [self] in handle(c) }.start()
            }
        }.start()
    }

    func close() { shutdown(fd, Int32(SHUT_RDWR)) }

    private func handle(_ c: Int32) {
        defer { Glibc.close(c) }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 8192)
        func fill() -> Bool {
            let n = read(c, &buf, buf.count)
            if n <= 0 { return false }
            data += buf[0..<n]
            return true
        }
        let crlf2: [UInt8] = Array("\r\n\r\n".utf8)
        func find(_ needle: [UInt8], from: Int) -> Int? {
            guard data.count >= needle.count + from else { return nil }
            for i in from...(data.count - needle.count) where Array(data[i..<(i + needle.count)]) == needle { return i }
            return nil
        }
        var headEnd: Int?
        while headEnd == nil { headEnd = find(crlf2, from: 0); if headEnd == nil && !fill() { return } }
        let head = String(decoding: data[..<headEnd!], as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        let requestLine = lines[0].split(separator: " ")
        let method = requestLine.first.map(String.init) ?? ""
        let path = requestLine.dropFirst().first.map(String.init) ?? "/"
        var headers: [String: String] = [:]
        for l in lines.dropFirst() {
            if let i = l.firstIndex(of: ":") { headers[l[..<i].lowercased()] = l[l.index(after: i)...].trimmingCharacters(in: .whitespaces) }
        }
        lock.lock(); seenContentTypes.append(headers["content-type"] ?? ""); lock.unlock()
        var body: [UInt8] = []
        var pos = headEnd! + 4
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            while true {
                var lineEnd = find([13, 10], from: pos)
                while lineEnd == nil { if !fill() { return }; lineEnd = find([13, 10], from: pos) }
                let sizeText = String(decoding: data[pos..<lineEnd!], as: UTF8.self).split(separator: ";").first ?? "0"
                let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) ?? 0
                pos = lineEnd! + 2
                while data.count < pos + size + 2 { if !fill() { return } }
                if size == 0 { break }
                body += data[pos..<(pos + size)]
                pos += size + 2
            }
        } else if let n = headers["content-length"].flatMap({ Int($0) }) {
            while data.count < pos + n { if !fill() { return } }
            body = Array(data[pos..<(pos + n)])
        }
        let (status, answer): (String, [UInt8])
        switch (method, path) {
        // Exact paths: a query string added on the way (kubectl's ?timeout=) would be a bug.
        case (_, "/readyz"), (_, "/livez"): (status, answer) = ("200 OK", Array("{\"ok\":true}".utf8))
        case ("POST", "/echo"): (status, answer) = ("200 OK", body)
        default: (status, answer) = ("404 Not Found", Array("{\"error\":\"no such api\"}".utf8))
        }
        let out = Array("HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(answer.count)\r\nConnection: close\r\n\r\n".utf8) + answer
        var off = 0
        while off < out.count {
            let n = out[off...].withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }
}
