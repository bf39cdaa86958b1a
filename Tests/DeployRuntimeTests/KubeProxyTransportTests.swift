@testable import DeployRuntime
import Foundation
import Glibc
import JSON
import Testing

/// The REST mapping and error classification of the proxy transport, and the transport itself against a
/// fake `kubectl proxy`: a small Python HTTP server on the Unix socket it is given, which logs every
/// request and answers from a table. (The real `kubectl proxy` and API server are exercised by
/// Tests/integration/test_kube_deploy.py.)
@Suite struct KubeAPITests {
    @Test func pathsOfObjectsAndLists() throws {
        let dep = try KubeAPI.resource("deployment")
        #expect(try KubeAPI.objectPath(dep, namespace: "models", name: "iris-prod-v1-0a1b2c3d")
                == "/apis/apps/v1/namespaces/models/deployments/iris-prod-v1-0a1b2c3d")
        #expect(try KubeAPI.resource("services").collection(namespace: "m") == "/api/v1/namespaces/m/services")
        #expect(try KubeAPI.resource("Pod").collection(namespace: "m") == "/api/v1/namespaces/m/pods")
        #expect(try KubeAPI.resource("replicasets").groupPath == "/apis/apps/v1")
        #expect(try KubeAPI.listPath(try KubeAPI.resource("deployments"), namespace: "m",
                                     labelSelector: "app.kubernetes.io/managed-by=model-deployer,model-deployer/model=iris_clf")
                == "/apis/apps/v1/namespaces/m/deployments?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dmodel-deployer%2Cmodel-deployer%2Fmodel%3Diris_clf")
        #expect(try KubeAPI.listPath(try KubeAPI.resource("events"), namespace: "m", labelSelector: "",
                                     fieldSelector: "involvedObject.kind=Pod")
                == "/api/v1/namespaces/m/events?fieldSelector=involvedObject.kind%3DPod")
        #expect(try KubeAPI.listPath(try KubeAPI.resource("pods"), namespace: "m", labelSelector: "") == "/api/v1/namespaces/m/pods")
        #expect(KubeAPI.applyQuery == "?fieldManager=model-deployer&force=true")
        #expect(KubeAPI.writeQuery == "?fieldManager=model-deployer")
        #expect(KubeAPI.percentEncode("a b&c=d/é~") == "a%20b%26c%3Dd%2F%C3%A9~")
    }

    @Test func namesAndKindsAreChecked() async throws {
        for bad in ["", "A", "a/b", "..", "-a", "a b", "a?x=1", "a%2F"] {
            #expect(await errorCode { _ = try KubeAPI.objectPath(try KubeAPI.resource("service"), namespace: "m", name: bad) } == "invalid_name", "\(bad)")
        }
        #expect(await errorCode { _ = try KubeAPI.objectPath(try KubeAPI.resource("service"), namespace: "m/x", name: "a") } == "invalid_name")
        #expect(await errorCode { _ = try KubeAPI.resource("secrets") } == "kube_invalid_object")
        #expect(await errorCode { _ = try KubeAPI.resource(of: ["apiVersion": "v1", "kind": "Deployment"]) } == "kube_invalid_object")
        #expect(try KubeAPI.resource(of: ["apiVersion": "apps/v1", "kind": "Deployment"]).plural == "deployments")
    }

    @Test func listItemsGetTheirKind() throws {
        let list: JSONValue = ["kind": "ServiceList", "items": [["metadata": ["name": "a"]], ["kind": "Service", "metadata": ["name": "b"]]]]
        let items = try KubeAPI.items(ofList: list, try KubeAPI.resource("services"))
        #expect(items.map { $0["kind"]?.stringValue } == ["Service", "Service"])
        #expect(items.map { $0["apiVersion"]?.stringValue } == ["v1", "v1"])
    }

    static func status(_ code: Int, _ reason: String, _ message: String = "m") -> [UInt8] {
        (["kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": .string(reason), "message": .string(message),
          "code": .int(Int64(code))] as JSONValue).jsonBytes
    }

    @Test func statusReasonsMapToTheExecCodes() {
        let cases: [(Int, String, String)] = [
            (404, "NotFound", "kube_not_found"), (409, "Conflict", "kube_conflict"), (409, "AlreadyExists", "kube_conflict"),
            (422, "Invalid", "kube_invalid_object"), (400, "BadRequest", "kube_invalid_object"),
            (503, "ServiceUnavailable", "kube_service_unavailable"), (403, "Forbidden", "kube_forbidden"),
            (401, "Unauthorized", "kube_forbidden"), (504, "Timeout", "kubectl_failed"), (500, "InternalError", "kubectl_failed"),
        ]
        for (code, reason, expected) in cases {
            let e = KubeAPI.classify(status: code, body: Self.status(code, reason, "the words"), what: "PATCH service s")
            #expect(e.code == expected, "\(reason)")
            #expect(e.message.contains("the words") && e.message.contains("PATCH service s") && e.message.contains("\(code)"))
        }
    }

    @Test func answersWithoutStatusMapByHTTPCodeOrDialError() {
        #expect(KubeAPI.classify(status: 404, body: Array("404 page not found".utf8), what: "GET").code == "kube_not_found")
        #expect(KubeAPI.classify(status: 503, body: Array("no".utf8), what: "GET").code == "kube_service_unavailable")
        #expect(KubeAPI.classify(status: 502, body: Array("Error: 'dial tcp 127.0.0.1:6443: connect: connection refused'".utf8),
                                 what: "GET").code == "kube_unreachable")
        // A model server's own 500 through the service proxy: a plain failure, as `kubectl get --raw` reports it.
        let e = KubeAPI.classify(status: 500, body: Array("{\"error\":\"boom\"}".utf8), what: "POST create")
        #expect(e.code == "kubectl_failed" && e.message.contains("boom"))
    }
}

@Suite struct KubeProxyTransportTests {
    /// A fake `kubectl proxy`: logs its arguments to `starts.log`, each request (method, path, Content-Type,
    /// Host, body) as a JSON line to `requests.log`, and answers `"METHOD PATH"` from `answers.json`
    /// (`[status, body]`; a key ending in `*` matches by prefix), else 404 NotFound. `FAKE_PROXY_FAIL` makes it print that to stderr and exit 1.
    struct Fake {
        let dir: TempDir
        var env: [String: String]

        init(_ label: String) throws {
            dir = try TempDir(label)
            let path = dir.path + "/kubectl"
            try TempDir.writeExecutable(path, """
            #!/usr/bin/env python3
            import http.server, json, os, socketserver, sys
            d = \(String(reflecting: dir.path))
            with open(d + "/starts.log", "a") as f:
                f.write(" ".join(sys.argv[1:]) + "\\n")
            if os.environ.get("FAKE_PROXY_FAIL"):
                sys.stderr.write(os.environ["FAKE_PROXY_FAIL"] + "\\n")
                sys.exit(1)
            sock = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--unix-socket=")][0]
            class H(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                def answer(self):
                    n = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(n).decode()
                    with open(d + "/requests.log", "a") as f:
                        f.write(json.dumps({"method": self.command, "path": self.path, "type": self.headers.get("Content-Type"),
                                            "host": self.headers.get("Host"), "body": body}) + "\\n")
                    table = json.load(open(d + "/answers.json")) if os.path.exists(d + "/answers.json") else {}
                    key = self.command + " " + self.path
                    found = table.get(key) or next((v for k, v in table.items() if k.endswith("*") and key.startswith(k[:-1])), None)
                    status, out = found or [404, {"kind": "Status", "reason": "NotFound", "message": "not there", "code": 404}]
                    data = json.dumps(out).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                do_GET = do_POST = do_PATCH = do_DELETE = answer
                def log_message(self, *args):
                    pass
            class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
                daemon_threads = True
                def get_request(self):
                    conn, _ = super().get_request()
                    return conn, ("fake", 0)
            S(sock, H).serve_forever()

            """)
            env = ProcessLauncher.currentEnvironment()
            env["MODEL_DEPLOYER_KUBECTL"] = path
            env["KUBECONFIG"] = dir.path + "/config"
            env.removeValue(forKey: "MODEL_DEPLOYER_KUBE_TRANSPORT")
        }

        var stateDirectory: String { dir.path + "/home/kube" }

        func kubectl(context: String? = nil) throws -> Kubectl {
            try Kubectl(context: context, namespace: "models", environment: env, stateDirectory: stateDirectory)
        }

        func answer(_ table: [String: (Int, JSONValue)]) throws {
            let json = JSONValue.object(table.mapValues { JSONValue.array([.int(Int64($0.0)), $0.1]) })
            try TempDir.write(dir.path + "/answers.json", json.jsonString)
        }

        func requests() -> [JSONValue] {
            let text = (try? String(contentsOfFile: dir.path + "/requests.log", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { try? JSONValue.parse(String($0)) }
        }

        func starts() -> [String] {
            let text = (try? String(contentsOfFile: dir.path + "/starts.log", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").map(String.init)
        }

        func files() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: stateDirectory)) ?? []).sorted()
        }
    }

    static let dep: JSONValue = ["apiVersion": "apps/v1", "kind": "Deployment", "metadata": ["name": "iris-v1", "namespace": "models"],
                                 "spec": ["replicas": 1]]
    static let svc: JSONValue = ["apiVersion": "v1", "kind": "Service", "metadata": ["name": "iris-prod"], "spec": ["selector": ["a": "b"]]]

    @Test func callsBecomeRESTRequestsOnOneProxy() async throws {
        let fake = try Fake("kproxy-rest")
        defer { fake.dir.remove() }
        let k = try fake.kubectl(context: "prod-eu")
        defer { k.proxy?.stop() }
        #expect(k.transport == .proxy)
        #expect(fake.starts().isEmpty, "nothing starts before the first call")
        let d = "/apis/apps/v1/namespaces/models/deployments"
        let s = "/api/v1/namespaces/models/services"
        let sel = "labelSelector=model-deployer%2Fmodel%3Diris"
        try fake.answer([
            "GET \(d)/iris-v1": (200, Self.dep),
            "GET \(d)?\(sel)": (200, ["kind": "DeploymentList", "items": [["metadata": ["name": "iris-v1"]]]]),
            "GET \(s)?\(sel)": (200, ["kind": "ServiceList", "items": [["metadata": ["name": "iris-prod"]]]]),
            "PATCH \(d)/iris-v1?fieldManager=model-deployer&force=true": (200, Self.dep),
            "PATCH \(s)/iris-prod?fieldManager=model-deployer": (200, Self.svc),
            "POST \(s)?fieldManager=model-deployer": (409, ["kind": "Status", "reason": "AlreadyExists", "message": "services \"iris-prod\" already exists", "code": 409]),
            "DELETE \(d)/iris-v1": (200, ["kind": "Status", "status": "Success"]),
            "GET /api/v1/namespaces/models/services/iris-prod:80/proxy/readyz": (200, "ok"),
        ])
        #expect(try await k.get("deployment", "iris-v1")?["metadata"]?["name"] == "iris-v1")
        #expect(try await k.get("service", "absent") == nil)
        let items = try await k.list("deployments,services", selector: "model-deployer/model=iris")
        #expect(items.map { $0["kind"]?.stringValue ?? "" } == ["Deployment", "Service"])
        _ = try await k.apply(Self.dep)
        _ = try await k.jsonPatch("service", "iris-prod", [["op": "test", "path": "/spec/selector/a", "value": "b"]])
        _ = try await k.mergePatch("service", "iris-prod", ["spec": ["selector": ["a": "c"]]])
        #expect(await errorCode { _ = try await k.create(Self.svc) } == "kube_conflict")
        try await k.delete("deployment", "iris-v1")
        try await k.delete("deployment", "gone")
        #expect(String(decoding: try await k.rawGet("/api/v1/namespaces/models/services/iris-prod:80/proxy/readyz"), as: UTF8.self) == "\"ok\"")
        #expect(await errorCode { _ = try await k.rawPost("/api/v1/namespaces/models/services/iris-prod:80/proxy/classify", body: Array("[1]".utf8)) } == "kube_not_found")
        #expect(await errorCode { _ = try await k.get("deployment", "Bad/Name") } == "invalid_name")

        let r = fake.requests()
        #expect(r.map { "\($0["method"]?.stringValue ?? "") \($0["path"]?.stringValue ?? "")" } == [
            "GET \(d)/iris-v1", "GET \(s)/absent", "GET \(d)?\(sel)", "GET \(s)?\(sel)",
            "PATCH \(d)/iris-v1?fieldManager=model-deployer&force=true", "PATCH \(s)/iris-prod?fieldManager=model-deployer",
            "PATCH \(s)/iris-prod?fieldManager=model-deployer", "POST \(s)?fieldManager=model-deployer",
            "DELETE \(d)/iris-v1", "DELETE \(d)/gone", "GET /api/v1/namespaces/models/services/iris-prod:80/proxy/readyz",
            "POST /api/v1/namespaces/models/services/iris-prod:80/proxy/classify",
        ])
        #expect(r.map { $0["type"]?.stringValue ?? "-" } == ["-", "-", "-", "-", "application/apply-patch+yaml", "application/json-patch+json",
                                                             "application/merge-patch+json", "application/json", "application/json",
                                                             "application/json", "-", "application/json"])
        #expect(r.allSatisfy { $0["host"]?.stringValue == "localhost" }, "kubectl proxy only accepts localhost")
        #expect(try JSONValue.parse(r[4]["body"]?.stringValue ?? "") == Self.dep)
        #expect(try JSONValue.parse(r[8]["body"]?.stringValue ?? "")["propagationPolicy"] == "Background")
        #expect(r[11]["body"]?.stringValue == "[1]")

        // One proxy for all of it, with the context, on a socket under the state directory (mode 0700).
        let starts = fake.starts()
        #expect(starts.count == 1)
        let hash = KubeProxy.configHash(executable: k.executable, kubeconfig: fake.env["KUBECONFIG"], context: "prod-eu")
        #expect(starts.first == "--context prod-eu proxy --unix-socket=\(fake.stateDirectory)/\(hash)-\(getpid()).sock")
        #expect(fake.files() == ["\(hash)-\(getpid()).log", "\(hash)-\(getpid()).pid", "\(hash)-\(getpid()).sock"])
        var st = stat()
        #expect(stat(fake.stateDirectory, &st) == 0 && st.st_mode & 0o777 == 0o700)
        // Another Kubectl of the same configuration (another namespace) shares the proxy.
        let other = try Kubectl(context: "prod-eu", namespace: "staging", environment: fake.env, stateDirectory: fake.stateDirectory)
        _ = try await other.get("deployment", "x")
        #expect(fake.starts().count == 1)
        #expect(fake.requests().last?["path"] == "/apis/apps/v1/namespaces/staging/deployments/x")

        let pid = try #require(k.proxy?.pid)
        k.proxy?.stop()
        #expect(!ProcessLauncher.isAlive(pid: pid))
        #expect(fake.files() == ["\(hash)-\(getpid()).log"], "socket and pid file are removed")
    }

    @Test func aDeadProxyIsRestartedOnce() async throws {
        let fake = try Fake("kproxy-restart")
        defer { fake.dir.remove() }
        let k = try fake.kubectl()
        defer { k.proxy?.stop() }
        #expect(try await k.get("deployment", "a") == nil)
        let first = try #require(k.proxy?.pid)
        kill(first, SIGKILL)
        #expect(try await k.get("deployment", "a") == nil)
        let second = try #require(k.proxy?.pid)
        #expect(second != first)
        #expect(fake.starts().count == 2)
        #expect(fake.requests().count == 2)
        // A write after the proxy is gone: restarted before the request is sent.
        kill(second, SIGKILL)
        while ProcessTable.info(second).map({ $0.state != "Z" }) ?? false { usleep(5_000) }
        do {
            _ = try await k.mergePatch("service", "s", ["a": 1])
            Issue.record("expected kube_not_found")
        } catch {
            #expect(error.code == "kube_not_found", "\(error)")
        }
        #expect(k.proxy?.pid != second)
        #expect(fake.starts().count == 3)
        #expect(fake.requests().map { $0["method"]?.stringValue ?? "" } == ["GET", "GET", "PATCH"])
    }

    /// A state directory whose path is too long for a socket address: the socket goes to the private
    /// per-user directory under /tmp, the pid file (naming it) stays in the state directory.
    @Test func aLongHomePutsTheSocketUnderTmp() async throws {
        let fake = try Fake("kproxy-long")
        defer { fake.dir.remove() }
        let state = fake.dir.path + "/" + String(repeating: "h", count: 90) + "/kube"
        let k = try Kubectl(context: nil, namespace: "models", environment: fake.env, stateDirectory: state)
        defer { k.proxy?.stop() }
        #expect(try await k.get("deployment", "a") == nil)
        let arg = try #require(fake.starts().first?.split(separator: " ").last.map(String.init))
        let socket = String(arg.dropFirst("--unix-socket=".count))
        #expect(socket.hasPrefix(KubeProxy.tmpRoot + "/") && access(socket, F_OK) == 0, "\(socket)")
        let pidFile = try #require(try FileManager.default.contentsOfDirectory(atPath: state).first { $0.hasSuffix(".pid") })
        #expect(try String(contentsOfFile: state + "/" + pidFile, encoding: .utf8).contains(socket))
        var st = stat()
        #expect(lstat(KubeProxy.tmpRoot, &st) == 0 && st.st_mode & 0o077 == 0)
        k.proxy?.stop()
        #expect(access(socket, F_OK) != 0)
    }

    @Test func aProxyThatCannotStartIsReportedInWords() async throws {
        var fake = try Fake("kproxy-fail")
        defer { fake.dir.remove() }
        fake.env["FAKE_PROXY_FAIL"] = "error: context \"nope\" does not exist"
        let k = try fake.kubectl(context: "nope")
        do {
            _ = try await k.get("deployment", "a")
            Issue.record("expected an error")
        } catch {
            #expect(error.code == "kube_unreachable")
            #expect(error.message.contains("context \"nope\" does not exist"))
        }
        #expect(!fake.files().contains { $0.hasSuffix(".pid") || $0.hasSuffix(".sock") })
    }

    @Test func transportIsChosenByEnvironment() async throws {
        var fake = try Fake("kproxy-env")
        defer { fake.dir.remove() }
        fake.env["MODEL_DEPLOYER_KUBE_TRANSPORT"] = "exec"
        #expect(try fake.kubectl().transport == .exec)
        #expect(try fake.kubectl().proxy == nil)
        fake.env["MODEL_DEPLOYER_KUBE_TRANSPORT"] = "carrier-pigeon"
        #expect(await errorCode { _ = try fake.kubectl() } == "kube_invalid_config")
    }

    /// The engine's warm rollback over the proxy transport: the same call plan as over exec
    /// (KubeCallPlanTests), the one list being one GET per kind, then one conditional JSON patch.
    @Test func warmRollbackIsTwoGetsAndOnePatch() async throws {
        let fake = try Fake("kproxy-plan")
        defer { fake.dir.remove() }
        let kubectl = try fake.kubectl()
        defer { kubectl.proxy?.stop() }
        let kube = try KubeRuntime(kubectl: kubectl, target: KubeTarget(namespace: "models", imageTemplate: "r/x:{bento_version}"))
        typealias P = KubeCallPlanTests
        let all = try P.cluster(v1Available: 1)["items"]?.arrayValue ?? []
        // A list's items carry no kind: the transport puts it back (the slot state tells Deployments from Services by it).
        func bare(_ kind: String) -> JSONValue {
            .array(all.filter { $0["kind"]?.stringValue == kind }.map { item -> JSONValue in
                guard case .object(var o) = item else { return item }
                o["kind"] = nil
                return .object(o)
            })
        }
        let svc = try KubeNames.serviceName(modelName: P.model, environment: P.env)
        try fake.answer(["GET /apis/apps/v1/namespaces/models/deployments?*": (200, ["items": bare("Deployment")]),
                         "GET /api/v1/namespaces/models/services?*": (200, ["items": bare("Service")]),
                         "PATCH /api/v1/namespaces/models/services/\(svc)?*": (200, try P.service(selecting: P.v1))])
        let slots = KubeSlotRuntime(kube), prober = KubeProber(kube), router = KubeTrafficRouter(kube)
        let ref = SlotRef(modelName: P.model, environment: P.env, id: SlotID(rawValue: "blue"))
        let warm = try #require(await slots.state(ref))
        #expect(warm.alive)
        #expect(await prober.isReady(warm.address, path: "/readyz", timeoutMs: 500))
        let again = try #require(await slots.state(ref))
        try await router.apply(RouteSpec(modelName: P.model, environment: P.env, listenPort: 80,
                                         backends: [WeightedBackend(slot: again.ref.id, address: again.address, version: P.v1)]))
        let r = fake.requests()
        #expect(r.map { "\($0["method"]?.stringValue ?? "") \(($0["path"]?.stringValue ?? "").split(separator: "?").first ?? "")" } == [
            "GET /apis/apps/v1/namespaces/models/deployments", "GET /api/v1/namespaces/models/services",
            "PATCH /api/v1/namespaces/models/services/\(svc)"])
        #expect(r.last?["type"] == "application/json-patch+json")
        let ops = try JSONValue.parse(r.last?["body"]?.stringValue ?? "").arrayValue ?? []
        #expect(ops.contains { $0["op"] == "test" } && ops.contains { $0["op"] == "replace" })
    }

    /// A proxy left by an agent that died (kill -9) is killed by the next start; one whose agent lives is not.
    @Test func orphansOfDeadAgentsAreRemoved() async throws {
        let fake = try Fake("kproxy-orphan")
        defer { fake.dir.remove() }
        let dir = fake.stateDirectory
        try KubeProxy.makePrivateDirectory(dir)
        func startFake(_ name: String) throws -> (pid: Int32, socket: String) {
            let socket = dir + "/" + name + ".sock"
            let p = try ProcessLauncher.spawnDetached(executable: fake.env["MODEL_DEPLOYER_KUBECTL"]!, arguments: ["proxy", "--unix-socket=\(socket)"],
                                                      environment: fake.env, workingDirectory: nil, logPath: dir + "/" + name + ".log")
            for _ in 0..<500 where access(socket, F_OK) != 0 { usleep(10_000) }
            return (p.pid, socket)
        }
        // A dead owner: a process that has exited.
        let gone = try ProcessLauncher.spawnDetached(executable: "/bin/true", arguments: [], environment: [:], workingDirectory: nil,
                                                     logPath: "/dev/null")
        var status: Int32 = 0
        waitpid(gone.pid, &status, 0)
        let orphan = try startFake("aaaa-1")
        try TempDir.write(dir + "/aaaa-1.pid", "\(orphan.pid) \(ProcessLauncher.startTime(orphan.pid)!) \(gone.pid) 12345 \(orphan.socket)\n")
        let kept = try startFake("bbbb-2")
        try TempDir.write(dir + "/bbbb-2.pid", "\(kept.pid) \(ProcessLauncher.startTime(kept.pid)!) \(getpid()) \(ProcessLauncher.startTime(getpid())!) \(kept.socket)\n")
        defer { kill(kept.pid, SIGKILL); var s: Int32 = 0; waitpid(kept.pid, &s, 0) }
        // A record whose pid now belongs to another process (start time differs): that process is not touched.
        let bystander = try ProcessLauncher.spawnDetached(executable: "/bin/sleep", arguments: ["30"], environment: [:], workingDirectory: nil,
                                                          logPath: "/dev/null")
        defer { kill(bystander.pid, SIGKILL); var s: Int32 = 0; waitpid(bystander.pid, &s, 0) }
        try TempDir.write(dir + "/cccc-3.pid", "\(bystander.pid) 1 \(gone.pid) 12345 \(dir)/cccc-3.sock\n")
        // A pending record (the agent died between spawning its proxy and recording its pid): the proxy on
        // exactly that socket is found by its command line.
        let unrecorded = try startFake("dddd-4")
        try TempDir.write(dir + "/dddd-4.pid", "0 ? \(gone.pid) 12345 \(unrecorded.socket)\n")

        KubeProxy.removeOrphans(in: dir)
        var reaped = false
        for _ in 0..<300 {
            if !ProcessLauncher.isAlive(pid: orphan.pid) { reaped = true; break }
            usleep(10_000)
        }
        #expect(reaped, "the dead agent's proxy is killed")
        #expect(access(orphan.socket, F_OK) != 0 && access(dir + "/aaaa-1.pid", F_OK) != 0)
        #expect(ProcessLauncher.isAlive(pid: kept.pid), "a live agent's proxy is left alone")
        #expect(access(dir + "/bbbb-2.pid", F_OK) == 0)
        #expect(ProcessLauncher.isAlive(pid: bystander.pid), "a reused pid is not killed")
        #expect(access(dir + "/cccc-3.pid", F_OK) != 0)
        var unrecordedGone = false
        for _ in 0..<300 {
            if !ProcessLauncher.isAlive(pid: unrecorded.pid) { unrecordedGone = true; break }
            usleep(10_000)
        }
        #expect(unrecordedGone, "the proxy of a pending record is found by its socket and killed")
        #expect(access(dir + "/dddd-4.pid", F_OK) != 0)
    }
}

extension TempDir {
    /// Writes an executable script with O_CLOEXEC: a process spawned meanwhile by a parallel test must not
    /// inherit the write end, or executing the script fails with ETXTBSY.
    static func writeExecutable(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        Glibc.close(fd)
    }
}
