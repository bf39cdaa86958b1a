#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import DeployRuntime
import JSON
import Synchronization
import Testing
import TestSupport
@testable import DeployEngine

/// Progress updates received.
final class Updates: Sendable {
    let list = Mutex<[ProgressUpdate]>([])
}

/// An engine over the in-memory ledger, fake runtime ports and a manual clock.
struct Harness {
    let store = InMemoryStore()
    let slots = FakeSlots()
    let router = FakeRouter()
    let prober = FakeProber()
    let clock = ManualClock()
    let engine: Engine
    let updates = Updates()

    /// `qa`: no gates, a 2 s bake. `prod`: a promotion gate that expires after 60 s.
    static let policy = ApprovalPolicy(environments: [
        "qa": EnvironmentPolicy(name: "qa", gates: [], approvalTimeoutSeconds: nil, bakeSeconds: 2, keepWarmSeconds: 60),
        "prod": EnvironmentPolicy(name: "prod", gates: [.promote], approvalTimeoutSeconds: 60, bakeSeconds: 0, keepWarmSeconds: 60),
        "development": EnvironmentPolicy(name: "development", gates: [], approvalTimeoutSeconds: nil, bakeSeconds: 0, keepWarmSeconds: 60),
        // Canaries: 5 s analysis intervals (the manual clock passes sleeps under 10 s at once), 10 s pauses.
        "cn": {
            var p = EnvironmentPolicy(name: "cn", gates: [], approvalTimeoutSeconds: 60, bakeSeconds: 2, keepWarmSeconds: 60)
            p.canary = CanaryConfig(steps: [10, 50, 100], pauseSeconds: 10, minRequests: 50, maxInconclusiveSeconds: 30,
                                    analysis: AnalysisLimits(intervalSeconds: 5, failureLimit: 2, minRequests: 20))
            return p
        }(),
    ])

    /// Stored codes: a refusal's kind is 1000 + its index, a deployment that failed on its own -1.
    static let codes: StoredErrorCode = { kind in kind.map { 1000 + EngineError.Kind.allCases.firstIndex(of: $0)! } ?? -1 }

    init() {
        let config = EngineConfig(home: "/nonexistent", bentoml: "bentoml", bentomlHome: "/nonexistent", nginx: "nginx",
                                  agentID: Engine.makeAgentID())
        engine = Engine(config: config, store: store, policy: Self.policy,
                        runtime: RuntimePorts(slots: slots, router: router, catalog: FakeCatalog(), prober: prober),
                        clock: clock, storedCode: Self.codes)
    }

    var progress: ProgressHandler { { [updates] u in updates.list.withLock { $0.append(u) } } }

    func plan(_ version: String, env: String = "qa", strategy: StrategyRequest = .auto) async throws -> DeploymentRecord {
        try await engine.plan(PlanRequest(modelName: "iris", modelVersion: version, environment: env, requestedBy: "alice",
                                          strategy: strategy, smokeTests: [SmokeTest(api: "predict", input: [1, 2])]))
    }

    func deploy(_ version: String, env: String = "qa", strategy: StrategyRequest = .auto) async throws -> DeploymentRecord {
        let p = try await plan(version, env: env, strategy: strategy)
        return try await engine.execute(deploymentId: p.deploymentId, idempotencyKey: "k-\(version)-\(env)", actor: "alice", progress: progress)
    }

    func registry(_ env: String = "qa") throws -> RegistryEntry? { try store.registry(modelName: "iris", environment: env) }
    func record(_ id: String) throws -> DeploymentRecord { try #require(try store.deployment(id: id)) }
    func steps() -> [String] { updates.list.withLock { $0.map(\.step) } }
}

@Suite struct ExecuteTests {
    @Test func directFirstDeploymentGoesLive() async throws {
        let h = Harness()
        let r = try await h.deploy("v1")
        #expect(r.status == .live && r.strategy == .direct && r.healthCheckPassed == true)
        #expect(r.metricsBaseline?["error_rate"] == 0)
        let entry = try #require(try h.registry())
        #expect(entry.deploymentId == r.deploymentId && entry.previousVersion == nil)
        #expect(h.router.serving("iris", "qa") == r.slot)
        // A first deployment has nothing to roll back to, so it has no bake.
        #expect(h.steps() == ["execute", "start_slot", "readiness", "smoke_tests", "baseline", "switch", "register", "done"])
        let percents = h.updates.list.withLock { $0.map(\.percent) }
        #expect(percents == percents.sorted() && percents.last == 100)
        let events = try h.store.events(deploymentId: r.deploymentId)
        #expect(events.compactMap(\.toStatus) == [.planned, .deploying, .validating, .switching, .live])
        #expect(events.contains { $0.toStatus == .deploying && $0.data["idempotency_key"]?.stringValue == "k-v1-qa" })
    }

    @Test func aSecondVersionBakesBeforeItIsDone() async throws {
        let h = Harness()
        _ = try await h.deploy("v1")
        h.updates.list.withLock { $0 = [] }
        let start = h.clock.now()
        let v2 = try await h.deploy("v2")
        // One progress update per bake window, with its metrics against the limits, in order.
        let steps = h.steps()
        #expect(Array(steps.prefix(8)) == ["execute", "start_slot", "readiness", "smoke_tests", "baseline", "switch", "register", "bake"])
        #expect(steps.last == "done" && steps.dropFirst(8).dropLast().allSatisfy { $0 == "bake_window" } && steps.count > 10)
        let windows = h.updates.list.withLock { $0 }.filter { $0.step == "bake_window" }
        #expect(windows.count == steps.count - 9 && windows.allSatisfy { $0.message.hasPrefix("bake window:") })
        #expect(zip(windows, windows.dropFirst()).allSatisfy { $0.percent <= $1.percent })
        // And each is in the ledger, for followers.
        let noted = try h.store.events(deploymentId: v2.deploymentId).filter { $0.step == "bake_window" }
        #expect(noted.map(\.message) == windows.map(\.message))
        let events = try h.store.events(deploymentId: v2.deploymentId)
        #expect(events.contains { $0.step == "bake" && $0.message.hasPrefix("bake passed") })
        // The bake's windows ran on the engine's clock: its 2 s passed without waiting for them.
        #expect(h.clock.now().timeIntervalSince(start) >= 2)
    }

    @Test func blueGreenKeepsThePreviousSlotWarm() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        let v2 = try await h.deploy("v2")
        #expect(v2.status == .live && v2.strategy == .blueGreen && v2.slot != v1.slot)
        #expect(try h.record(v1.deploymentId).status == .superseded)
        let entry = try #require(try h.registry())
        #expect(entry.previousSlot == v1.slot && entry.previousDeploymentId == v1.deploymentId)
        #expect(h.slots.running("iris", "qa") == [v1.slot!, v2.slot!])
        #expect(h.router.serving("iris", "qa") == v2.slot)
        // After the keep-warm time the previous slot stops and is no rollback target any more.
        h.clock.releaseTimers()
        try await eventually { h.slots.running("iris", "qa") == [v2.slot!] }
        try await eventually { (try? h.registry())??.previousSlot == nil }
    }

    @Test func directReplacesThePreviousSlotAtOnce() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1", env: "development")
        let v2 = try await h.deploy("v2", env: "development")
        #expect(v2.strategy == .direct && v2.status == .live)
        #expect(h.slots.running("iris", "development") == [v2.slot!])
        #expect(try h.registry("development")?.previousSlot == nil)
        #expect(try h.record(v1.deploymentId).status == .superseded)
    }

    @Test func aFailedSmokeTestLeavesLiveUntouched() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        h.prober.state.withLock { $0.smokePasses = false }
        let v2 = try await h.deploy("v2")
        #expect(v2.status == .failed)
        #expect(v2.error?["reason"]?.stringValue == "smoke_test_failed" && v2.error?["step"]?.stringValue == "smoke_tests")
        #expect(v2.error?["code"]?.intValue == -1)
        #expect(try h.registry()?.deploymentId == v1.deploymentId && h.router.serving("iris", "qa") == v1.slot)
        #expect(h.slots.running("iris", "qa") == [v1.slot!])
    }

    @Test func readinessAndStartFailuresAreRecorded() async throws {
        let h = Harness()
        h.slots.state.withLock { $0.ready = false }
        let notReady = try await h.deploy("v1")
        #expect(notReady.status == .failed && notReady.error?["reason"]?.stringValue == "readiness_failed" && notReady.healthCheckPassed == false)
        h.slots.state.withLock { $0.ready = true; $0.failStart = true }
        let noStart = try await h.deploy("v2")
        #expect(noStart.status == .failed && noStart.error?["reason"]?.stringValue == "slot_start_failed")
        #expect(h.slots.running("iris", "qa").isEmpty)
    }

    @Test func anUnverifiedSwitchPutsTheRouteBack() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        h.router.state.withLock { $0.failVerify = true }
        let v2 = try await h.deploy("v2")
        #expect(v2.status == .failed && v2.error?["reason"]?.stringValue == "switch_unverified" && v2.error?["step"]?.stringValue == "switch")
        #expect(h.router.serving("iris", "qa") == v1.slot)
        #expect(try h.registry()?.deploymentId == v1.deploymentId)
    }

    @Test func aRetryWithTheSameKeyReturnsTheOutcome() async throws {
        let h = Harness()
        let r = try await h.deploy("v1")
        let again = try await h.engine.execute(deploymentId: r.deploymentId, idempotencyKey: "k-v1-qa", progress: h.progress)
        #expect(again.deploymentId == r.deploymentId && again.status == .live)
        await #expect(throws: EngineError.self) {
            _ = try await h.engine.execute(deploymentId: r.deploymentId, idempotencyKey: "other", progress: h.progress)
        }
        #expect(try h.store.events(deploymentId: r.deploymentId).filter { $0.toStatus == .deploying }.count == 1)
    }

    @Test func cancellationInterruptsCleanly() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        h.slots.state.withLock { $0.hangReadiness = true }
        let p = try await h.plan("v2")
        let task = Task { try await h.engine.execute(deploymentId: p.deploymentId, idempotencyKey: nil, progress: h.progress) }
        try await eventually { h.slots.running("iris", "qa").count == 2 }
        task.cancel()
        let outcome = await task.result
        guard case .failure(let error as EngineError) = outcome else { Issue.record("expected cancellation, got \(outcome)"); return }
        #expect(error.kind == .cancelled)
        let r = try h.record(p.deploymentId)
        #expect(r.status == .interrupted && r.error?["reason"]?.stringValue == "interrupted" && r.owner == nil)
        #expect(h.slots.running("iris", "qa") == [v1.slot!] && h.router.serving("iris", "qa") == v1.slot)
    }
}

@Suite struct BakeCancellationTests {
    /// Cancelling the request during the bake stops the watching only: the new version stays live and
    /// the previous slot still retires after its keep-warm time.
    @Test func cancellingDuringTheBakeKeepsTheNewVersionLive() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        h.prober.state.withLock { $0.hangBake = true }
        let p = try await h.plan("v2")
        let task = Task { try await h.engine.execute(deploymentId: p.deploymentId, idempotencyKey: nil, progress: h.progress) }
        try await eventually { h.steps().contains("bake") }
        task.cancel()
        let r = try await task.value
        let entry = try h.registry()
        #expect(r.status == .live && entry?.deploymentId == p.deploymentId)
        #expect(try h.store.events(deploymentId: p.deploymentId).contains { $0.message.hasPrefix("bake stopped") })
        #expect(h.steps().last == "done")
        h.clock.releaseTimers()
        try await eventually { h.slots.running("iris", "qa") == [r.slot!] }
        _ = v1
    }
}

/// Polls `condition` (the engine's timers run in tasks of their own); fails after many tries.
func eventually(_ condition: () throws -> Bool) async throws {
    for _ in 0..<2_000 {
        if try condition() { return }
        try await Task.sleep(for: .milliseconds(2))
    }
    Issue.record("condition never held")
}
