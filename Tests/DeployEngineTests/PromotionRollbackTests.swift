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

@Suite struct PromotionTests {
    @Test func theRolloutWaitsAtThePromotionGateThenGoesLive() async throws {
        let h = Harness()
        let waiting = try await h.deploy("v1", env: "prod")
        #expect(waiting.status == .awaitingPromotion && waiting.healthCheckPassed == true)
        #expect(h.slots.running("iris", "prod").count == 1 && h.router.serving("iris", "prod") == nil)
        let outcome = try await h.engine.approve(deploymentId: waiting.deploymentId, approver: "bob", decision: "approve", gate: .promote,
                                                 comment: "ok", progress: h.progress)
        #expect(outcome.execution?.status == .live && outcome.record.approvedBy == "bob")
        #expect(try h.registry("prod")?.deploymentId == waiting.deploymentId)
        #expect(h.router.serving("iris", "prod") == waiting.slot)
    }

    @Test func rejectingThePromotionStopsTheSlot() async throws {
        let h = Harness()
        let waiting = try await h.deploy("v1", env: "prod")
        let outcome = try await h.engine.approve(deploymentId: waiting.deploymentId, approver: "bob", decision: "reject", gate: nil,
                                                 comment: nil, progress: h.progress)
        #expect(outcome.record.status == .rejected && h.slots.running("iris", "prod").isEmpty)
    }

    @Test func anExpiredPromotionGateIsRefusedAndCleanedUp() async throws {
        let h = Harness()
        let waiting = try await h.deploy("v1", env: "prod")
        h.clock.advance(seconds: 61)
        await #expect(throws: EngineError.self) {
            _ = try await h.engine.approve(deploymentId: waiting.deploymentId, approver: "bob", decision: "approve", gate: .promote,
                                           comment: nil, progress: h.progress)
        }
        let r = try h.record(waiting.deploymentId)
        #expect(r.status == .expired && r.error?["reason"]?.stringValue == "approval_expired")
        #expect(r.error?["code"]?.intValue == Int64(Harness.codes(.approval)) && r.error?["step"]?.stringValue == "gate:promote")
        #expect(h.slots.running("iris", "prod").isEmpty)
    }
}

@Suite struct RollbackTests {
    @Test func aWarmPreviousIsOneSwitchBack() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        let v2 = try await h.deploy("v2")
        let outcome = try await h.engine.rollback(modelName: "iris", environment: "qa", toVersion: nil, reason: "bad answers",
                                                  requestedBy: "carol", progress: h.progress)
        #expect(outcome.toVersion == "v1" && outcome.record.strategy == .rollback && outcome.record.status == .live)
        #expect(try h.record(v2.deploymentId).status == .rolledBack)
        let entry = try #require(try h.registry())
        #expect(entry.deploymentId == outcome.record.deploymentId && entry.slot == v1.slot && entry.previousSlot == v2.slot)
        #expect(h.router.serving("iris", "qa") == v1.slot)
    }

    @Test func aColdPreviousIsRedeployedThroughTheMachine() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        let v2 = try await h.deploy("v2")
        await h.slots.stop(SlotRef(modelName: "iris", environment: "qa", id: SlotID(rawValue: v1.slot!)), graceSeconds: 0)
        let outcome = try await h.engine.rollback(modelName: "iris", environment: "qa", toVersion: nil, reason: nil,
                                                  requestedBy: "carol", progress: h.progress)
        #expect(outcome.record.strategy == .rollback && outcome.record.status == .live && outcome.record.modelVersion == "v1")
        #expect(outcome.record.rollbackOf == v2.deploymentId)
        #expect(try h.record(v2.deploymentId).status == .rolledBack)
        #expect(try h.registry()?.deploymentId == outcome.record.deploymentId)
    }

    @Test func aFailedWarmSwitchIsRecordedAsAFailedRollback() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        let v2 = try await h.deploy("v2")
        h.router.state.withLock { $0.failVerify = true }
        do {
            _ = try await h.engine.rollback(modelName: "iris", environment: "qa", toVersion: nil, reason: nil, requestedBy: "carol", progress: h.progress)
            Issue.record("the rollback should have failed")
        } catch {
            #expect(error.kind == .runtimeUnavailable && error.reason == "switch_unverified")
            let id = try #require(error.extra["deployment_id"]?.stringValue)
            let failed = try h.record(id)
            #expect(failed.status == .failed && failed.error?["code"]?.intValue == Int64(Harness.codes(.runtimeUnavailable)))
        }
        #expect(try h.registry()?.deploymentId == v2.deploymentId && h.router.serving("iris", "qa") == v2.slot)
        _ = v1
    }

    @Test func aBakeRegressionRollsBackToTheWarmVersion() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        h.prober.state.withLock { $0.bake.errorRate = 0.9 }
        let v2 = try await h.deploy("v2")
        #expect(v2.status == .rolledBack && v2.error?["reason"]?.stringValue == "error_rate_regression")
        let entry = try #require(try h.registry())
        #expect(entry.slot == v1.slot && entry.modelVersion == "v1")
        #expect(h.steps().last == "rollback")
        let notes = try h.store.events(deploymentId: v2.deploymentId).filter { $0.step == "bake_window" }.map(\.message)
        // Two windows, each noted with its figures, and each over the limit (the second fails the bake).
        #expect(notes.filter { $0.hasPrefix("bake window:") }.count == 2)
        #expect(notes.filter { $0.hasPrefix("bake window ") && $0.contains("over the limit") }.count == 2)
    }
}
