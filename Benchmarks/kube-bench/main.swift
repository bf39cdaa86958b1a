// kube-bench: the Kubernetes runtime's own time per step against a real API server.
//
//   KUBECONFIG=... kube-bench [ITERATIONS]
//   (or MODEL_DEPLOYER_TEST_KUBECONFIG; MODEL_DEPLOYER_KUBECTL picks the kubectl)
//
// Makes a scratch namespace, starts two versions, stands in for the kubelet by marking their Pods
// ready through the status subresource (nothing runs in them), then times ITERATIONS (default 20)
// selector switches and rollbacks end to end as the engine would call them, next to a bare
// `kubectl get` (the floor: one kubectl process and one API round trip). Deletes the namespace after.
// The transport is the agent's default (one `kubectl proxy` on a Unix socket, stopped at the end) unless
// MODEL_DEPLOYER_KUBE_TRANSPORT=exec; the "floor" line is then one HTTP GET through that proxy.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc
import DeployRuntime
import JSON

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1e6
}

func percentile(_ xs: [Double], _ p: Double) -> Double {
    let s = xs.sorted()
    guard !s.isEmpty else { return .nan }
    return s[min(s.count - 1, Int((p * Double(s.count - 1)).rounded()))]
}

func report(_ name: String, _ xs: [Double]) {
    let line = "\(name + String(repeating: " ", count: max(0, 34 - name.count))) n=\(xs.count)  p50 \(fmt(percentile(xs, 0.5))) ms  p95 \(fmt(percentile(xs, 0.95))) ms  max \(fmt(xs.max() ?? .nan)) ms"
    print(line)
}

func fmt(_ d: Double) -> String {
    let r = (d * 10).rounded() / 10
    return String(describing: r)
}

func fail(_ m: String) -> Never {
    KubeProxy.stopAll()
    let bytes = Array("kube-bench: \(m)\n".utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(1)
}

let env: [String: String] = {
    var e = ProcessLauncher.currentEnvironment()
    if e["KUBECONFIG"] == nil, let k = e["MODEL_DEPLOYER_TEST_KUBECONFIG"] { e["KUBECONFIG"] = k }
    return e
}()
let iterations = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 20 : 20

let ns = "md-bench-\(getpid())"
let model = "iris_classifier", environment = "production"

func markReady(_ k: Kubectl, selector: String) async throws(RuntimeError) {
    for pod in try await k.list("pods", selector: selector) {
        guard let name = pod["metadata"]?["name"]?.stringValue else { continue }
        let path = "/api/v1/namespaces/\(ns)/pods/\(name)"
        guard case .object(var obj)? = try? JSONValue.parse(try await k.rawGet(path)) else { continue }
        let ts = "2026-01-01T00:00:00Z"
        obj["status"] = ["phase": "Running", "podIP": "192.0.2.10", "podIPs": [["ip": "192.0.2.10"]], "startTime": .string(ts),
                         "conditions": .array(["Initialized", "Ready", "ContainersReady", "PodScheduled"].map {
                             ["type": .string($0), "status": "True", "lastTransitionTime": .string(ts)] })]
        _ = try await k.run(["replace", "--raw", path + "/status", "-f", "-"], stdin: JSONValue.object(obj).jsonBytes, namespaced: false)
    }
}

func main() async throws(RuntimeError) {
    let admin = try Kubectl(context: nil, namespace: "default", environment: env)
    _ = try await admin.run(["create", "namespace", ns], namespaced: false)
    let k = try Kubectl(context: nil, namespace: ns, environment: env)
    let target = KubeTarget(namespace: ns, imageTemplate: "registry.example/{bento_name}:{bento_version}", replicas: 1)
    let rt = try KubeRuntime(kubectl: k, target: target)
    // Pods need the namespace's default service account before they are admitted.
    for _ in 0..<100 {
        if (try? await k.list("serviceaccounts", selector: ""))?.isEmpty == false { break }
        usleep(100_000)
    }
    var applyMs: [Double] = []
    var handles: [KubeVersionHandle] = []
    for v in ["v1", "v2"] {
        let t0 = now()
        handles.append(try await rt.start(KubeVersionSpec(modelName: model, environment: environment, version: v,
                                                         bentoTag: "\(model):\(v)", deploymentID: "018f3a2b-7c4d-7e5f-8a6b-1c2d3e4f5a6b",
                                                         resources: KubeResources(memoryMB: 256, cpu: 0.25))))
        applyMs.append(now() - t0)
    }
    for (i, v) in ["v1", "v2"].enumerated() {
        let sel = KubeNames.selector(modelName: model, environment: environment, version: v).sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        for _ in 0..<100 {
            if (try? await k.list("pods", selector: sel))?.isEmpty == false { break }
            usleep(100_000)
        }
        try await markReady(k, selector: sel)
        let r = await rt.waitReady(handles[i], deadlineSeconds: 30, intervalMs: 100)
        guard r.ready else { fail("\(v) not ready: \(r.verdict.reason)") }
    }
    // The Service was created selecting v1 (the first started); make sure v1 is live before timing.
    _ = try await rt.route(modelName: model, environment: environment, to: "v1", expecting: nil)

    var bare: [Double] = [], switches: [Double] = [], rollbacks: [Double] = [], status: [Double] = []
    let svc = try KubeNames.serviceName(modelName: model, environment: environment)
    for _ in 0..<iterations {
        var t0 = now()
        _ = try await k.get("service", svc)
        bare.append(now() - t0)
        t0 = now()
        _ = try await rt.route(modelName: model, environment: environment, to: "v2", expecting: "v1")
        switches.append(now() - t0)
        t0 = now()
        _ = try await rt.rollback(modelName: model, environment: environment, from: "v2", to: "v1")
        rollbacks.append(now() - t0)
        t0 = now()
        _ = try await rt.rolloutStatus(deploymentName: handles[0].deploymentName)
        status.append(now() - t0)
    }
    print("kube-bench: \(iterations) iterations against \(env["KUBECONFIG"]!) (kubectl \(k.executable), transport \(k.transport.rawValue))")
    report("get service (floor)", bare)
    report("selector switch (route)", switches)
    report("rollback (switch back)", rollbacks)
    report("rollout status (available)", status)
    report("start (apply Deployment+Services)", applyMs)
    _ = try await admin.run(["delete", "namespace", ns, "--wait=false"], namespaced: false)
}

guard env["KUBECONFIG"] != nil else { fail("set KUBECONFIG (e.g. the path scripts/kube-cluster.sh start prints)") }
do {
    try await main()
    KubeProxy.stopAll()
} catch {
    fail(error.description)
}
