import DeployCore
@testable import DeployRuntime
import Foundation
import Glibc
import JSON
import Testing

/// Real BentoML slots behind real nginx. Needs `MODEL_DEPLOYER_TEST_BENTOML_HOME` (a store where
/// examples/iris/build.sh ran) and `MODEL_DEPLOYER_BENTOML` (the bentoml executable).
@Suite(.serialized, .enabled(if: TestEnv.hasBentoML,
                             "set MODEL_DEPLOYER_TEST_BENTOML_HOME and MODEL_DEPLOYER_BENTOML (and have nginx) to run"))
struct BentoMLIntegrationTests {
    static let smokeInput: JSONValue = ["input": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]]
    static let v1Answer: JSONValue = [0, 2, 1]
    static let v2Answer: JSONValue = [10, 12, 11]

    /// The newest bento built by build.sh for `kind` (label `model_kind`).
    static func bento(_ kind: String) throws -> BentoInfo {
        let store = BentoStoreReader(home: TestEnv.bentoml!.home)
        let all = try store.bentos().filter { $0.name == "iris_classifier" && $0.labels["model_kind"] == kind }
        return try #require(all.max { BentoStoreReader.isOlder($0.creationTime, $1.creationTime) },
                            "no \(kind) bento: run examples/iris/build.sh with BENTOML_HOME=\(TestEnv.bentoml!.home)")
    }

    /// Asserts nothing of the slot is left: pid gone, port free, no process with the slot's marker.
    static func expectGone(_ state: SlotState, _ slots: SlotManager) {
        let info = ProcessTable.info(state.pid)
        #expect(info == nil || info?.state == "Z", "slot pid \(state.pid) still running")
        #expect(portIsFree(state.spec.port), "port \(state.spec.port) still held")
        let dir = slots.directory(modelName: state.spec.modelName, environment: state.spec.environment, slot: state.spec.slot)
        #expect(ProcessTable.pids(withEnvironmentEntry: "MODEL_DEPLOYER_SLOT=\(dir)", in: ProcessTable.snapshot()).isEmpty)
        #expect(slots.state(modelName: state.spec.modelName, environment: state.spec.environment, slot: state.spec.slot) == nil)
    }

    @Test func blueGreenSwitchUnderLoadLosesNoRequest() async throws {
        let env = TestEnv.bentoml!
        let home = try TempDir("bg")
        let slots = SlotManager(home: home.path, bentoml: env.executable, sharedBentoMLHome: env.home)
        let router = NginxRouter(home: home.path, nginx: TestEnv.nginx!)
        let v1 = try Self.bento("v1"), v2 = try Self.bento("v2")
        var started: [SlotState] = []
        try await withCleanup({
            // Start v1 in blue and validate it.
            let t0 = ContinuousClock.now
            let blue = try slots.start(SlotSpec(modelName: "iris", environment: "it", slot: .blue, bentoTag: v1.tag,
                                                port: freePort(preferred: nil)))
            let startCall = ContinuousClock.now - t0
            started.append(blue)
            #expect(throws: RuntimeError.self) {
                try slots.start(SlotSpec(modelName: "iris", environment: "it", slot: .blue, bentoTag: v1.tag, port: freePort(preferred: nil)))
            }
            let ready = await slots.waitReady(blue, deadlineSeconds: 90, probeTimeoutMs: 500, intervalMs: 100)
            let startToReady = ContinuousClock.now - t0
            #expect(ready.ready, "\(ready.lastError ?? "") \(slots.logTail(blue, bytes: 2000))")
            guard ready.ready else { return }
            let smoke1 = await Probes.smoke(port: blue.spec.port, checks: [SmokeCheck(api: "predict", input: Self.smokeInput, expect: Self.v1Answer)], timeoutMs: 5000)
            #expect(smoke1.allSatisfy { $0.passed }, "\(smoke1.map(\.message))")
            let baseline = await Probes.load(port: blue.spec.port, api: "predict", input: Self.smokeInput, requests: 50, concurrency: 4, timeoutMs: 5000)
            #expect(baseline.failures == 0)
            #expect(slots.state(modelName: "iris", environment: "it", slot: .blue)?.alive == true)
            #expect(slots.allSlots().map(\.spec) == [blue.spec])

            // Route the stable endpoint to blue.
            let routerPort = freePort(preferred: nil)
            try await router.route(modelName: "iris", environment: "it", routerPort: routerPort, upstreamPort: blue.spec.port,
                                   slot: .blue, version: v1.tag)
            #expect(await router.verify(routerPort: routerPort, expectSlot: .blue, timeoutMs: 5000))

            // Start v2 in green.
            let t1 = ContinuousClock.now
            let green = try slots.start(SlotSpec(modelName: "iris", environment: "it", slot: .green, bentoTag: v2.tag,
                                                 port: freePort(preferred: nil)))
            started.append(green)
            let ready2 = await slots.waitReady(green, deadlineSeconds: 90, probeTimeoutMs: 500, intervalMs: 100)
            let startToReady2 = ContinuousClock.now - t1
            #expect(ready2.ready, "\(ready2.lastError ?? "")")
            guard ready2.ready else { return }
            let smoke2 = await Probes.smoke(port: green.spec.port, checks: [SmokeCheck(api: "predict", input: Self.smokeInput, expect: Self.v2Answer)], timeoutMs: 5000)
            #expect(smoke2.allSatisfy { $0.passed }, "\(smoke2.map(\.message))")

            // Switch under a steady load, then switch back (a rollback).
            let stopper = LoadStopper()
            let load = Task { await Probes.steadyLoad(port: routerPort, api: "predict", input: Self.smokeInput,
                                                      concurrency: 4, timeoutMs: 10_000, until: stopper) }
            try await Task.sleep(for: .milliseconds(500))
            let s0 = ContinuousClock.now
            try await router.route(modelName: "iris", environment: "it", routerPort: routerPort, upstreamPort: green.spec.port,
                                   slot: .green, version: v2.tag)
            let switched = await router.verify(routerPort: routerPort, expectSlot: .green, timeoutMs: 5000)
            let switchTime = ContinuousClock.now - s0
            #expect(switched)
            let after = try await HTTPClient.request(method: "POST", port: routerPort, path: "/predict",
                                                     headers: ["Content-Type": "application/json"], body: Self.smokeInput.jsonBytes, timeoutMs: 5000)
            #expect(try JSONValue.parse(after.body) == Self.v2Answer)
            #expect(after.headers["x-model-deployer-version"] == v2.tag)
            try await Task.sleep(for: .milliseconds(500))
            let r0 = ContinuousClock.now
            try await router.route(modelName: "iris", environment: "it", routerPort: routerPort, upstreamPort: blue.spec.port,
                                   slot: .blue, version: v1.tag)
            let rolledBack = await router.verify(routerPort: routerPort, expectSlot: .blue, timeoutMs: 5000)
            let rollbackTime = ContinuousClock.now - r0
            #expect(rolledBack)
            try await Task.sleep(for: .milliseconds(500))
            stopper.stop()
            let result = await load.value
            #expect(result.failures == 0, "errors during switches: \(result.errors)")
            #expect(result.answers[Self.v1Answer.jsonString, default: 0] > 0)
            #expect(result.answers[Self.v2Answer.jsonString, default: 0] > 0)
            #expect(Set(result.answers.keys) == [Self.v1Answer.jsonString, Self.v2Answer.jsonString])
            print("""
            measured: start() call \(startCall), blue start->ready \(startToReady) (\(ready.attempts) probes), green start->ready \(startToReady2), \
            switch (route+verify) \(switchTime), rollback switch \(rollbackTime), \
            requests under load \(result.requests), failed \(result.failures), p50 \(result.latencyP50Ms) ms, \
            p99 \(result.latencyP99Ms) ms, baseline p50 \(baseline.latencyP50Ms) ms, rps \(baseline.requestsPerSecond)
            """)

            // Stop both slots: nothing may be left.
            #expect(await slots.stop(modelName: "iris", environment: "it", slot: .green))
            #expect(await slots.stop(modelName: "iris", environment: "it", slot: .blue))
            Self.expectGone(blue, slots)
            Self.expectGone(green, slots)
        }, cleanup: {
            for s in started { _ = await slots.stop(modelName: s.spec.modelName, environment: s.spec.environment, slot: s.spec.slot) }
            await router.stop()
        })
        #expect(!router.isRunning())
        home.remove()
    }

    @Test func brokenVersionIsReadyButFailsItsSmokeTest() async throws {
        let env = TestEnv.bentoml!
        let home = try TempDir("broken")
        let slots = SlotManager(home: home.path, bentoml: env.executable, sharedBentoMLHome: env.home)
        let broken = try Self.bento("broken")
        var started: SlotState?
        try await withCleanup({
            let s = try slots.start(SlotSpec(modelName: "iris", environment: "it", slot: .green, bentoTag: broken.tag,
                                             port: freePort(preferred: nil)))
            started = s
            let ready = await slots.waitReady(s, deadlineSeconds: 90, probeTimeoutMs: 500, intervalMs: 100)
            #expect(ready.ready)
            let smoke = await Probes.smoke(port: s.spec.port, checks: [SmokeCheck(api: "predict", input: Self.smokeInput, expect: Self.v1Answer)], timeoutMs: 5000)
            #expect(smoke.count == 1 && !smoke[0].passed && smoke[0].status == 500)
            #expect(await slots.stop(modelName: "iris", environment: "it", slot: .green))
            Self.expectGone(s, slots)
        }, cleanup: {
            if started != nil { _ = await slots.stop(modelName: "iris", environment: "it", slot: .green) }
        })
        home.remove()
    }

    @Test func killedServerLeavesNoOrphanAfterStop() async throws {
        let env = TestEnv.bentoml!
        let home = try TempDir("orphan")
        let slots = SlotManager(home: home.path, bentoml: env.executable, sharedBentoMLHome: env.home)
        let v1 = try Self.bento("v1")
        var started: SlotState?
        try await withCleanup({
            let s = try slots.start(SlotSpec(modelName: "iris", environment: "it", slot: .blue, bentoTag: v1.tag,
                                             port: freePort(preferred: nil)))
            started = s
            let ready = await slots.waitReady(s, deadlineSeconds: 90, probeTimeoutMs: 500, intervalMs: 100)
            #expect(ready.ready)
            // kill -9 the arbiter: its worker (own session) survives and still holds the port.
            kill(s.pid, SIGKILL)
            try await Task.sleep(for: .milliseconds(300))
            let after = slots.state(modelName: "iris", environment: "it", slot: .blue)
            #expect(after?.alive == false)
            // A dead slot cannot be restarted over its orphans.
            #expect(throws: RuntimeError.self) {
                try slots.start(SlotSpec(modelName: "iris", environment: "it", slot: .blue, bentoTag: v1.tag, port: freePort(preferred: nil)))
            }
            #expect(await slots.stop(modelName: "iris", environment: "it", slot: .blue, graceSeconds: 3))
            Self.expectGone(s, slots)
            // A dead process does not wait out the readiness deadline.
            let r = await slots.waitReady(s, deadlineSeconds: 30, probeTimeoutMs: 200, intervalMs: 100)
            #expect(!r.ready && r.elapsedMs < 30_000)
        }, cleanup: {
            if started != nil { _ = await slots.stop(modelName: "iris", environment: "it", slot: .blue) }
        })
        home.remove()
    }
}
