#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import DeployRuntime
import JSON
import Testing
import TestSupport
@testable import DeployEngine

/// A warm slot that is retired (stopped) leaves the router too: its server, kept at weight 0 while it was the
/// rollback target, must not stay attached to the endpoint until the next switch.
@Suite struct RetiredSlotRouterTests {
    func backends(_ h: Harness, env: String = "qa") async -> [String] {
        await h.router.route(modelName: "iris", environment: env)?.backends.map { "\($0.slot)=\($0.weight)" } ?? []
    }

    @Test func theKeepWarmTimerStopsTheWarmSlotAndTakesItsServerOut() async throws {
        let h = Harness()
        _ = try await h.deploy("v1")
        let v2 = try await h.deploy("v2")
        // Live v2 in green; v1 warm in blue, attached at weight 0.
        #expect(await backends(h) == ["green=100", "blue=0"])
        #expect(h.router.state.withLock { $0.detached }.isEmpty)
        h.clock.releaseTimers()
        try await eventually { h.router.state.withLock { $0.detached } == ["blue"] }
        #expect(await backends(h) == ["green=100"])
        #expect(h.slots.running("iris", "qa") == ["green"])
        #expect(try h.registry()?.previousSlot == nil)
        try await eventually { try h.store.events(deploymentId: v2.deploymentId).contains { $0.step == "retire_previous" } }
        let retired = try h.store.events(deploymentId: v2.deploymentId).filter { $0.step == "retire_previous" }.map(\.message)
        #expect(retired == ["stopped the previous slot blue after 60 s warm; its server left the router"])
    }

    @Test func aRouterThatRefusesTwiceIsAskedAgain() async throws {
        let h = Harness()
        _ = try await h.deploy("v1")
        _ = try await h.deploy("v2")
        h.router.state.withLock { $0.failDetach = 2 }
        h.clock.releaseTimers()
        try await eventually { h.router.state.withLock { $0.detached } == ["blue"] }
        #expect(h.router.state.withLock { $0.failDetach } == 0)
        #expect(await backends(h) == ["green=100"])
    }

    @Test func aServerLeftBehindIsTakenOutByReconciliationAndTheLiveOneNever() async throws {
        let h = Harness()
        _ = try await h.deploy("v1")
        let v2 = try await h.deploy("v2")
        // The router refuses every time: the slot is stopped, its server stays at weight 0 (as after a crash
        // between the two).
        h.router.state.withLock { $0.failDetach = 3 }
        h.clock.releaseTimers()
        try await eventually { h.router.state.withLock { $0.failDetach } == 0 && h.slots.running("iris", "qa") == ["green"] }
        try await eventually { try h.store.events(deploymentId: v2.deploymentId).contains { $0.step == "retire_previous" } }
        #expect(await backends(h) == ["green=100", "blue=0"])
        let retired = try h.store.events(deploymentId: v2.deploymentId).filter { $0.step == "retire_previous" }.map(\.message)
        #expect(retired == ["stopped the previous slot blue after 60 s warm"])
        await h.engine.reconcile()
        #expect(await backends(h) == ["green=100"])
        #expect(h.router.state.withLock { $0.detached } == ["blue"])
        #expect(try h.store.events(deploymentId: v2.deploymentId).last?.message == "took the server of the stopped slot blue out of the router")
        // Nothing more to take out: a second pass changes nothing.
        await h.engine.reconcile()
        #expect(h.router.state.withLock { $0.detached } == ["blue"])
    }

    @Test func aWarmSlotThatStillRunsKeepsItsServer() async throws {
        let h = Harness()
        _ = try await h.deploy("v1")
        _ = try await h.deploy("v2")
        // Reconciliation within the keep-warm time: blue runs and is the rollback target.
        await h.engine.reconcile()
        #expect(await backends(h) == ["green=100", "blue=0"])
        #expect(h.router.state.withLock { $0.detached }.isEmpty)
        // And a rollback to it is still one switch.
        let out = try await h.engine.rollback(modelName: "iris", environment: "qa", toVersion: nil, reason: nil, requestedBy: "carol",
                                              progress: h.progress)
        #expect(out.record.slot == "blue")
        #expect(await backends(h) == ["blue=100", "green=0"])
    }

    @Test func aDirectUpdateStopsThePreviousSlotAndTakesItsServerOut() async throws {
        let h = Harness()
        _ = try await h.deploy("v1", env: "development")
        let v2 = try await h.deploy("v2", env: "development", strategy: .direct)
        #expect(v2.status == .live && v2.strategy == .direct)
        #expect(h.slots.running("iris", "development") == [v2.slot!])
        #expect(await backends(h, env: "development") == ["\(v2.slot!)=100"])
        #expect(h.router.state.withLock { $0.detached } == ["blue"])
    }
}

/// The read-back of a warm rollback: after `deploy.rollback` had the warm slot answer its readiness probe, a
/// router that can say so from its own state (HAProxy) is read back instead of sending BentoML one more
/// request through it; everything else keeps the request through the router.
@Suite struct RollbackReadBackTests {
    func rollback(_ h: Harness) async throws(EngineError) -> RollbackOutcome {
        try await h.engine.rollback(modelName: "iris", environment: "qa", toVersion: nil, reason: "bad answers", requestedBy: "carol",
                                    progress: h.progress)
    }

    func switchData(_ h: Harness, _ id: String) throws -> JSONValue {
        try #require(try h.store.events(deploymentId: id).first { $0.data["switch_ms"] != nil }).data
    }

    @Test func aManualRollbackReadsTheRoutersStateBack() async throws {
        let h = Harness()
        h.router.state.withLock { $0.readsBack = true }
        let v1 = try await h.deploy("v1")
        _ = try await h.deploy("v2")
        let verifies = h.router.state.withLock { $0.verifyCalls }
        let out = try await rollback(h)
        #expect(out.record.slot == v1.slot && h.router.serving("iris", "qa") == v1.slot)
        #expect(h.router.state.withLock { ($0.verifyCalls, $0.readBackCalls) } == (verifies, 1))
        // The switch event says where the call's time went, the read-back in place of the request.
        let data = try switchData(h, out.record.deploymentId)
        for lap in ["call_checks_ms", "call_warm_probe_ms", "call_history_ms", "prepare_ms", "lookup_ms", "ensure_running_ms", "apply_ms",
                    "read_back_ms", "switch_ms"] {
            #expect(data[lap]?.doubleValue != nil, "\(lap) missing in \(data)")
        }
        #expect(data["verify_ms"] == nil)
    }

    @Test func aReadBackThatDisagreesFailsTheRollbackAndPutsTheRouteBack() async throws {
        let h = Harness()
        h.router.state.withLock { $0.readsBack = true }
        _ = try await h.deploy("v1")
        let v2 = try await h.deploy("v2")
        h.router.state.withLock { $0.failVerify = true }
        do {
            _ = try await rollback(h)
            Issue.record("the rollback should have failed")
        } catch {
            #expect(error.kind == .runtimeUnavailable && error.reason == "switch_unverified")
            #expect(error.message.contains("read back"))
        }
        #expect(try h.registry()?.deploymentId == v2.deploymentId && h.router.serving("iris", "qa") == v2.slot)
        #expect(h.router.state.withLock { $0.readBackCalls } == 1)
    }

    @Test func aRouterWithoutAReadBackIsAskedThroughAnAnswer() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        _ = try await h.deploy("v2")
        let verifies = h.router.state.withLock { $0.verifyCalls }
        let out = try await rollback(h)
        #expect(out.record.slot == v1.slot)
        #expect(h.router.state.withLock { ($0.verifyCalls, $0.readBackCalls) } == (verifies + 1, 0))
        let data = try switchData(h, out.record.deploymentId)
        #expect(data["verify_ms"]?.doubleValue != nil && data["read_back_ms"] == nil)
    }

    @Test func theBakesOwnRollbackStillGoesThroughTheRouter() async throws {
        let h = Harness()
        h.router.state.withLock { $0.readsBack = true }
        let v1 = try await h.deploy("v1")
        h.prober.state.withLock { $0.bake.errorRate = 0.9 }
        let verifies = h.router.state.withLock { $0.verifyCalls }
        let v2 = try await h.deploy("v2")
        #expect(v2.status == .rolledBack && h.router.serving("iris", "qa") == v1.slot)
        // Two switches verified by a request: v2's, then the switch back (nobody probed the warm slot before it).
        #expect(h.router.state.withLock { ($0.verifyCalls, $0.readBackCalls) } == (verifies + 2, 0))
    }
}
