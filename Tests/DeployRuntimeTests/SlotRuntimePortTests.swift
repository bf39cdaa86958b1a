import DeployCore
@testable import DeployRuntime
import Glibc
import JSON
import Testing

/// The `SlotRuntime` port as the engine uses it, against the local slot manager, with a stand-in
/// `bentoml` (a script serving `GET /readyz` on the port it is given), so it runs in a second.
@Suite(.serialized, .enabled(if: access("/usr/bin/python3", X_OK) == 0, "needs /usr/bin/python3 for the stand-in bentoml"))
struct SlotRuntimePortTests {
    /// `bentoml serve TAG --host H --port P` -> an HTTP server answering 200 on 127.0.0.1:P.
    static let standIn = """
    #!/usr/bin/python3
    import http.server, sys
    port = int(sys.argv[sys.argv.index("--port") + 1])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()

    """

    @Test func startReadyStateListStop() async throws {
        let home = try TempDir("slot-port")
        let exe = home.path + "/bin/bentoml"
        try TempDir.write(exe, Self.standIn)
        chmod(exe, 0o755)
        let runtime: any SlotRuntime = SlotManager(home: home.path + "/agent", bentoml: exe, sharedBentoMLHome: home.path + "/store")
        let ref = SlotRef(modelName: "iris", environment: "port", id: "blue")
        let launch = SlotLaunch(ref: ref, bentoTag: "svc:v1", version: "v1", preferredPort: freePort(preferred: nil))
        try await withCleanup({
            let slot = try await runtime.start(launch)
            #expect(slot.ref == ref && slot.alive && slot.bentoTag == "svc:v1")
            let ready = await runtime.waitReady(slot, deadlineSeconds: 20, probeTimeoutMs: 500, intervalMs: 50)
            #expect(ready.ready, "not ready: \(ready.lastError ?? "")")
            #expect(await runtime.state(ref)?.address == slot.address)
            #expect(await runtime.listSlots().map(\.ref) == [ref])
            // A running slot is not started twice.
            await #expect(throws: RuntimeError.self) { _ = try await runtime.start(launch) }
            // Only blue and green are local slots.
            await #expect(throws: RuntimeError.self) {
                _ = try await runtime.start(SlotLaunch(ref: SlotRef(modelName: "iris", environment: "port", id: "canary-1"),
                                                       bentoTag: "svc:v1", version: "v1", preferredPort: 0))
            }
            #expect(await runtime.stop(ref, graceSeconds: 1))
            #expect(await runtime.state(ref) == nil)
            #expect(await runtime.listSlots().isEmpty)
        }, cleanup: {
            _ = await runtime.stop(ref, graceSeconds: 0)
        })
        home.remove()
    }
}
