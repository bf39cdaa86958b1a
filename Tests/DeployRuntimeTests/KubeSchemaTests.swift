@testable import DeployRuntime
import Foundation
import JSON
import Testing

/// Every manifest shape the runtime generates, checked with the PyPI package `kubernetes-validate` in
/// strict mode (unknown fields rejected) against current Kubernetes schemas: the test API server is
/// 1.20, the manifests must also be valid where users run them. (The real API server checks what the
/// schemas cannot, e.g. that the selector matches the template: see KubeIntegrationTests.)
@Suite struct KubeSchemaTests {
    /// `MODEL_DEPLOYER_TEST_KUBERNETES_VALIDATE`, else the repository's .venv, else PATH.
    static var validator: String? {
        let env = ProcessInfo.processInfo.environment
        if let v = env["MODEL_DEPLOYER_TEST_KUBERNETES_VALIDATE"], !v.isEmpty { return v }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let venv = root + "/.venv/bin/kubernetes-validate"
        if FileManager.default.isExecutableFile(atPath: venv) { return venv }
        return try? ProcessLauncher.resolve("kubernetes-validate")
    }

    static func allManifests() throws -> [(String, JSONValue)] {
        var out: [(String, JSONValue)] = []
        var t = KubeFixtures.target
        out.append(("deployment-basic", try KubeManifests.deployment(KubeFixtures.spec(), target: t)))
        out.append(("deployment-odd-version", try KubeManifests.deployment(KubeFixtures.spec(version: "V1.0+build:7", bentoVersion: "abc"), target: t)))
        out.append(("deployment-gpu", try KubeManifests.deployment(KubeFixtures.spec(memoryMB: 16384, cpu: 3.5, gpu: 2), target: t)))
        out.append(("deployment-no-cpu", try KubeManifests.deployment(KubeFixtures.spec(cpu: nil), target: t)))
        t.replicas = 0
        t.progressDeadlineSeconds = 5
        out.append(("deployment-zero", try KubeManifests.deployment(KubeFixtures.spec(), target: t)))
        let long = KubeVersionSpec(modelName: String(repeating: "m", count: 63), environment: String(repeating: "e", count: 63),
                                   version: String(repeating: "V", count: 128), bentoTag: "b:1",
                                   deploymentID: "018f3a2b-7c4d-7e5f-8a6b-1c2d3e4f5a6b", resources: KubeResources(memoryMB: 1))
        out.append(("deployment-long-names", try KubeManifests.deployment(long, target: KubeFixtures.target)))
        for preview in [false, true] {
            out.append(("service-\(preview ? "preview" : "active")",
                        try KubeManifests.service(modelName: "0iris.v2_x", environment: "prod-eu", selecting: "V1+x",
                                                  target: KubeFixtures.target, preview: preview)))
        }
        return out
    }

    @Test func everyGeneratedManifestPassesStrictSchemaValidation() async throws {
        guard let tool = Self.validator else {
            if KubeTestEnv.isCI { Issue.record("kubernetes-validate not found under CI (scripts/requirements.txt installs it into .venv)") }
            else { print("SKIP kubernetes-validate not found (pip install kubernetes-validate, or set MODEL_DEPLOYER_TEST_KUBERNETES_VALIDATE)") }
            return
        }
        let dir = try TempDir("kube-schema")
        defer { dir.remove() }
        var files: [String] = []
        for (name, m) in try Self.allManifests() {
            let path = "\(dir.path)/\(name).json"
            try Data(m.jsonBytes).write(to: URL(fileURLWithPath: path))
            files.append(path)
        }
        for version in ["1.37.0", "1.25.0"] {
            let r = try await ProcessLauncher.run(executable: tool, arguments: ["--strict", "-k", version] + files, timeout: .seconds(120))
            #expect(r.status == 0, "kubernetes-validate --strict -k \(version): \(r.output)")
            // One "... passed for resource ..." line per file: every file was actually checked.
            #expect(r.output.components(separatedBy: " passed for resource ").count - 1 == files.count, "\(r.output)")
        }
        // And the validator is not a rubber stamp: a field Kubernetes does not know is refused.
        guard case .object(var d) = try Self.allManifests()[0].1 else { return }
        d["spec"] = .object((d["spec"]?.objectValue ?? [:]).merging(["replica": 1]) { a, _ in a })
        let bad = "\(dir.path)/bad.json"
        try Data(JSONValue.object(d).jsonBytes).write(to: URL(fileURLWithPath: bad))
        let r = try await ProcessLauncher.run(executable: tool, arguments: ["--strict", bad], timeout: .seconds(120))
        #expect(r.status != 0, "\(r.output)")
    }
}
