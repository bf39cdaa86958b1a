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

/// Three slots per (model, environment): live, warm previous and candidate. A candidate never stops the
/// warm previous version, so rollback stays one switch after any number of failed attempts.
@Suite struct ThreeSlotTests {
    func ref(_ slot: String?, env: String = "qa") -> SlotRef { SlotRef(modelName: "iris", environment: env, id: SlotID(rawValue: slot ?? "?")) }

    @Test func failedAttemptsStopOnlyTheCandidateAndRollbackStaysOneSwitch() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        let v2 = try await h.deploy("v2")
        #expect([v1.slot, v2.slot] == ["blue", "green"])
        #expect(h.slots.running("iris", "qa") == ["blue", "green"])
        // A smoke test fails: the candidate takes teal, and only teal is stopped.
        h.prober.state.withLock { $0.smokePasses = false }
        let v3 = try await h.deploy("v3")
        #expect(v3.status == .failed && v3.slot == "teal" && v3.error?["reason"]?.stringValue == "smoke_test_failed")
        // Then one that never gets ready: teal again.
        h.prober.state.withLock { $0.smokePasses = true }
        h.slots.state.withLock { $0.ready = false }
        let v4 = try await h.deploy("v4")
        #expect(v4.status == .failed && v4.slot == "teal" && v4.error?["reason"]?.stringValue == "readiness_failed")
        h.slots.state.withLock { $0.ready = true }
        #expect(h.slots.running("iris", "qa") == ["blue", "green"])
        #expect(h.slots.state.withLock { $0.stopped } == [ref("teal"), ref("teal")])
        let entry = try #require(try h.registry())
        #expect(entry.deploymentId == v2.deploymentId && entry.previousSlot == "blue" && entry.previousVersion == "v1")
        // Rollback: one router change to the warm slot, no slot started or stopped.
        let (started, applied) = (h.slots.state.withLock { $0.started.count }, h.router.state.withLock { $0.applied.count })
        let outcome = try await h.engine.rollback(modelName: "iris", environment: "qa", toVersion: nil, reason: "after two failed attempts",
                                                  requestedBy: "carol", progress: h.progress)
        #expect(outcome.toVersion == "v1" && outcome.record.status == .live && outcome.record.slot == "blue")
        #expect(h.slots.state.withLock { $0.started.count } == started)
        #expect(h.router.state.withLock { $0.applied.count } == applied + 1)
        #expect(h.router.serving("iris", "qa") == "blue")
        #expect(h.router.state.withLock { $0.applied.last?.backends.map { "\($0.slot)=\($0.weight)" } } == ["blue=100", "green=0"])
        #expect(h.slots.running("iris", "qa") == ["blue", "green"])
    }

    @Test func goingLiveRetiresTheOlderWarmVersionOnly() async throws {
        let h = Harness()
        _ = try await h.deploy("v1")
        _ = try await h.deploy("v2")
        let p3 = try await h.plan("v3")
        #expect(p3.slot == "teal")
        // Until v3 is live, v1 (blue) stays warm: it is stopped only after the switch.
        let v3 = try await h.engine.execute(deploymentId: p3.deploymentId, idempotencyKey: nil, actor: "alice", progress: h.progress)
        #expect(v3.status == .live)
        let entry = try #require(try h.registry())
        #expect(entry.slot == "teal" && entry.previousSlot == "green" && entry.previousVersion == "v2")
        #expect(h.slots.running("iris", "qa") == ["green", "teal"])
        let retired = try h.store.events(deploymentId: v3.deploymentId).filter { $0.step == "retire_previous" }.map(\.message)
        #expect(retired == ["stopped slot blue (v1): v2 is the warm previous version now"])
        // Each switch gives the new slot the traffic and keeps the version it replaces attached at weight 0 (the
        // warm one); the older warm version (blue) is left out of the switch to teal, then stopped.
        let applied = h.router.state.withLock { $0.applied.map { $0.backends.map { "\($0.slot)=\($0.weight)" } } }
        #expect(applied == [["blue=100"], ["green=100", "blue=0"], ["teal=100", "green=0"]])
        // The next candidate takes the freed slot.
        #expect(try await h.plan("v4").slot == "blue")
    }

    @Test func aCandidateWhoseSlotTheRegistryKeepsIsRefusedWithoutStoppingIt() async throws {
        let h = Harness()
        _ = try await h.deploy("v1")
        _ = try await h.deploy("v2")
        let p = try await h.plan("v3")
        // As if an older agent had planned into a slot that holds the warm version now.
        _ = try await h.slots.start(SlotLaunch(ref: ref("teal"), bentoTag: "svc:v0", version: "v0", preferredPort: 20_700))
        var entry = try #require(try h.registry())
        entry.previousSlot = "teal"
        entry.previousVersion = "v0"
        try h.store.setRegistry(entry)
        let r = try await h.engine.execute(deploymentId: p.deploymentId, idempotencyKey: nil, actor: "alice", progress: h.progress)
        #expect(r.status == .failed && r.error?["reason"]?.stringValue == "slot_start_failed")
        #expect(r.error?["message"]?.stringValue?.contains("slot teal holds the warm previous version v0") == true)
        #expect(h.slots.state.withLock { $0.slots[ref("teal")]?.bentoTag } == "svc:v0")
        #expect(try h.registry()?.previousSlot == "teal")
    }

    @Test func directInDevelopmentKeepsNothingWarm() async throws {
        let h = Harness()
        _ = try await h.deploy("v1", env: "development")
        _ = try await h.deploy("v2", env: "development", strategy: .blueGreen)
        #expect(h.slots.running("iris", "development") == ["blue", "green"])
        let v3 = try await h.deploy("v3", env: "development")
        #expect(v3.strategy == .direct && v3.slot == "teal" && v3.status == .live)
        #expect(h.slots.running("iris", "development") == ["teal"])
        #expect(try h.registry("development")?.previousSlot == nil)
    }

    @Test func reconcileKeepsLiveAndWarmInAnyTwoSlotsAndStopsTheThird() async throws {
        let h = Harness()
        _ = try await h.deploy("v1")
        _ = try await h.deploy("v2")
        _ = try await h.deploy("v3")
        // Live teal, warm green; something left in blue (a slot no deployment accounts for).
        _ = try await h.slots.start(SlotLaunch(ref: ref("blue"), bentoTag: "svc:v1", version: "v1", preferredPort: 20_800))
        await h.engine.reconcile()
        #expect(h.slots.running("iris", "qa") == ["green", "teal"])
        #expect(h.router.serving("iris", "qa") == "teal")
    }
}
