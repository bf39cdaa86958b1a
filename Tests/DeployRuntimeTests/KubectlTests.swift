@testable import DeployRuntime
import Foundation
import JSON
import Testing

/// kubectl plumbing without a cluster: the process runner, the argument arrays, the error codes.
@Suite struct KubectlTests {
    @Test func runnerFeedsStdinAndKeepsStreamsApart() async throws {
        // 300 KiB: more than a pipe buffer, so the writer and the readers must interleave.
        let input = Array(repeating: UInt8(ascii: "x"), count: 300 * 1024)
        let out = try await CommandRunner.run(path: "/bin/cat", arguments: [], environment: [:], stdin: input, timeoutMs: 10_000)
        #expect(out.status == 0 && out.stdout == input && out.stderr.isEmpty)
        let err = try await CommandRunner.run(path: "/bin/sh", arguments: ["-c", "echo out; echo err >&2; exit 3"],
                                              environment: [:], stdin: [], timeoutMs: 10_000)
        #expect(err.status == 3 && err.stdout == Array("out\n".utf8) && err.stderr == "err\n")
    }

    @Test func runnerKillsWhatOverrunsItsDeadline() async {
        let code = await errorCode {
            _ = try await CommandRunner.run(path: "/bin/sleep", arguments: ["5"], environment: [:], stdin: [], timeoutMs: 200)
        }
        #expect(code == "kubectl_timeout")
    }

    /// A stand-in kubectl that prints its arguments one per line (or fails like kubectl when asked).
    static func fakeKubectl(_ dir: TempDir) throws -> [String: String] {
        let path = dir.path + "/kubectl"
        let script = Array("""
        #!/bin/sh
        for a in "$@"; do case "$a" in FAIL=*) echo "${a#FAIL=}" >&2; exit 1;; esac; done
        printf '%s\\n' "$@"

        """.utf8)
        // O_CLOEXEC: a process spawned meanwhile by a parallel test must not inherit the write end, or
        // executing the script fails with ETXTBSY.
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        _ = script.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        var env = ProcessLauncher.currentEnvironment()
        env["MODEL_DEPLOYER_KUBECTL"] = path
        // These tests read the kubectl command lines: the exec transport.
        env["MODEL_DEPLOYER_KUBE_TRANSPORT"] = "exec"
        return env
    }

    @Test func argumentsCarryContextNamespaceAndFieldManager() async throws {
        let dir = try TempDir("kubectl")
        defer { dir.remove() }
        let k = try Kubectl(context: "prod-eu", namespace: "models", environment: try Self.fakeKubectl(dir))
        let patch = String(decoding: try await k.run(["patch", "service", "s", "--type=json", "--field-manager=\(Kubectl.fieldManager)"]), as: UTF8.self)
        #expect(patch.split(separator: "\n").map(String.init) == ["--context", "prod-eu", "-n", "models", "--request-timeout", "15s",
                                                                  "patch", "service", "s", "--type=json", "--field-manager=model-deployer"])
        // Raw proxy calls carry no --request-timeout: kubectl would forward it upstream as ?timeout=.
        let raw = String(decoding: try await k.rawGet("/api/v1/namespaces/models/services/s:http/proxy/readyz"), as: UTF8.self)
        #expect(raw.split(separator: "\n").map(String.init) == ["--context", "prod-eu", "get", "--raw",
                                                                "/api/v1/namespaces/models/services/s:http/proxy/readyz"])
        #expect(await errorCode { _ = try await k.rawGet("/api/../secrets") } == "invalid_name")
        #expect(await errorCode { _ = try await k.rawGet("relative") } == "invalid_name")
    }

    @Test func failuresGetStableCodesWithKubectlsOwnWords() async throws {
        let dir = try TempDir("kubectl")
        defer { dir.remove() }
        let k = try Kubectl(context: nil, namespace: "models", environment: try Self.fakeKubectl(dir))
        let cases: [(String, String)] = [
            ("Error from server (NotFound): deployments.apps \"x\" not found", "kube_not_found"),
            ("Error from server (AlreadyExists): services \"s\" already exists", "kube_conflict"),
            ("Error from server (Conflict): Operation cannot be fulfilled", "kube_conflict"),
            ("The request is invalid", "kube_invalid_object"),
            ("Error from server (Forbidden): services is forbidden: User cannot patch", "kube_forbidden"),
            ("Error from server (ServiceUnavailable): no endpoints available for service \"s\"", "kube_service_unavailable"),
            ("Unable to connect to the server: dial tcp 127.0.0.1:1: connect: connection refused", "kube_unreachable"),
            ("error: something else entirely", "kubectl_failed"),
        ]
        for (stderr, code) in cases {
            do {
                _ = try await k.run(["get", "x", "FAIL=\(stderr)"])
                Issue.record("expected \(code)")
            } catch {
                #expect(error.code == code, "\(stderr)")
                #expect(error.message.contains(stderr))
            }
        }
        // `get` of something absent is nil, not an error.
        let absent = try Kubectl(context: nil, namespace: "models", environment: try Self.fakeKubectl(dir))
        #expect(try await absent.get("deployment", "FAIL=Error from server (NotFound): x not found") == nil)
    }

    @Test func missingKubectlAndBadSettingsAreRefused() async throws {
        var env = ProcessLauncher.currentEnvironment()
        env["MODEL_DEPLOYER_KUBECTL"] = "/nonexistent/kubectl"
        let e = env
        #expect(await errorCode { _ = try Kubectl(context: nil, namespace: "models", environment: e) } == "kubectl_not_found")
        env["MODEL_DEPLOYER_KUBECTL"] = "/bin/true"
        let e2 = env
        for (context, ns) in [(nil, "Models"), ("--kubeconfig=/x", "models"), ("", "models")] as [(String?, String)] {
            #expect(await errorCode { _ = try Kubectl(context: context, namespace: ns, environment: e2) } == "kube_invalid_config")
        }
    }
}
