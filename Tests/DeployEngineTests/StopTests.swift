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

/// `deploy.stop`: route removed, every slot stopped, the live deployment `stopped` and the registry cleared.
@Suite struct StopTests {
    /// v1 then v2 blue-green in qa: v2 live, v1 warm.
    func twoVersions() async throws -> (Harness, DeploymentRecord, DeploymentRecord) {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        let v2 = try await h.deploy("v2")
        #expect(v2.status == .live && h.slots.running("iris", "qa").count == 2)
        return (h, v1, v2)
    }

    @Test func stopTakesTheWholePairDown() async throws {
        let (h, v1, v2) = try await twoVersions()
        let out = try await h.engine.stop(modelName: "iris", environment: "qa", reason: "retired model", requestedBy: "carol")
        let r = try #require(out.record)
        #expect(r.deploymentId == v2.deploymentId && r.status == .stopped)
        #expect(out.stoppedSlots == [v1.slot!, v2.slot!].sorted())
        #expect(h.router.serving("iris", "qa") == nil && h.slots.running("iris", "qa").isEmpty)
        #expect(try h.registry() == nil)
        let last = try #require(try h.store.events(deploymentId: v2.deploymentId).last)
        #expect(last.step == "stop" && last.actor == "carol" && last.fromStatus == .live && last.toStatus == .stopped)
        #expect(last.data["reason"]?.stringValue == "retired model")
        #expect(last.message.contains("retired model"))
        // The warm previous deployment keeps its own end (superseded); nothing is listed live.
        #expect(try h.record(v1.deploymentId).status == .superseded)
        #expect(try await h.engine.listLive(modelName: nil, environment: nil).isEmpty)
        #expect(try h.store.query(HistoryQuery(modelName: "iris", environment: "qa", statuses: [.live])).deployments.isEmpty)
    }

    @Test func nothingLiveIsNothingDeployed() async throws {
        let h = Harness()
        await #expect { try await h.engine.stop(modelName: "iris", environment: "qa", reason: nil, requestedBy: "carol") } throws: { e in
            (e as? EngineError).map { $0.reason == "nothing_deployed" && $0.kind == .nothingToRollBack } ?? false
        }
        _ = try await h.deploy("v1")
        _ = try await h.engine.stop(modelName: "iris", environment: "qa", reason: nil, requestedBy: "carol")
        // A second stop finds nothing.
        await #expect { try await h.engine.stop(modelName: "iris", environment: "qa", reason: nil, requestedBy: "carol") } throws: { e in
            (e as? EngineError)?.reason == "nothing_deployed"
        }
    }

    @Test(arguments: [DeploymentStatus.deploying, .validating, .awaitingPromotion, .switching])
    func aRunningRolloutBlocksTheStop(_ status: DeploymentStatus) async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        let p = try await h.plan("v2")
        _ = try h.store.transition(id: p.deploymentId, from: .planned, to: status,
                                   changes: DeploymentChanges(owner: .some(h.engine.config.agentID)),
                                   event: DeploymentEvent(deploymentId: p.deploymentId, at: h.clock.now(), step: "test", actor: "test", message: "->"))
        await #expect { try await h.engine.stop(modelName: "iris", environment: "qa", reason: nil, requestedBy: "carol") } throws: { e in
            guard let e = e as? EngineError else { return false }
            return e.reason == "rollout_in_progress" && e.kind == .conflict && e.extra["deployment_id"]?.stringValue == p.deploymentId
        }
        // Nothing was touched.
        #expect(try h.router.serving("iris", "qa") == v1.slot && (h.record(v1.deploymentId)).status == .live)
        #expect(try h.registry()?.deploymentId == v1.deploymentId)
    }

    @Test func aPlanNotYetExecutedDoesNotBlockAndGoesStale() async throws {
        let h = Harness()
        _ = try await h.deploy("v1")
        let p = try await h.plan("v2")
        _ = try await h.engine.stop(modelName: "iris", environment: "qa", reason: nil, requestedBy: "carol")
        await #expect { try await h.engine.execute(deploymentId: p.deploymentId, idempotencyKey: nil, progress: h.progress) } throws: { e in
            (e as? EngineError)?.reason == "plan_stale"
        }
        #expect(h.router.serving("iris", "qa") == nil)
    }

    @Test func aLiveVersionInItsBakeBlocksTheStop() async throws {
        let h = Harness()
        _ = try await h.deploy("v1")
        h.prober.state.withLock { $0.hangBake = true }
        let p = try await h.plan("v2")
        let task = Task { try await h.engine.execute(deploymentId: p.deploymentId, idempotencyKey: nil, progress: h.progress) }
        try await eventually { h.steps().contains("bake") }
        await #expect { try await h.engine.stop(modelName: "iris", environment: "qa", reason: nil, requestedBy: "carol") } throws: { e in
            (e as? EngineError).map { $0.reason == "rollout_in_progress" && $0.extra["deployment_id"]?.stringValue == p.deploymentId } ?? false
        }
        task.cancel()
        _ = try await task.value
        // Once the bake is over (here: its watching cancelled), the stop goes through.
        let out = try await h.engine.stop(modelName: "iris", environment: "qa", reason: nil, requestedBy: "carol")
        #expect(out.record?.deploymentId == p.deploymentId && out.record?.status == .stopped)
    }

    @Test func aRouteThatCannotBeRemovedChangesNothing() async throws {
        let (h, _, v2) = try await twoVersions()
        h.router.state.withLock { $0.failRemove = true }
        await #expect { try await h.engine.stop(modelName: "iris", environment: "qa", reason: nil, requestedBy: "carol") } throws: { e in
            (e as? EngineError).map { $0.reason == "runtime_unavailable" && $0.message.contains("nginx_failed") } ?? false
        }
        #expect(try h.record(v2.deploymentId).status == .live && (h.registry())?.deploymentId == v2.deploymentId)
        #expect(h.slots.running("iris", "qa").count == 2 && h.router.serving("iris", "qa") == v2.slot)
        // Once the router works again, the same call finishes the job.
        h.router.state.withLock { $0.failRemove = false }
        let out = try await h.engine.stop(modelName: "iris", environment: "qa", reason: nil, requestedBy: "carol")
        #expect(out.record?.status == .stopped && h.slots.running("iris", "qa").isEmpty)
    }

    @Test func theRouterWatchAndANewAgentLeaveItStopped() async throws {
        let (h, _, v2) = try await twoVersions()
        _ = try await h.engine.stop(modelName: "iris", environment: "qa", reason: nil, requestedBy: "carol")
        // The router process dies: the watch finds nothing to restart for this endpoint.
        h.router.state.withLock { $0.running = false }
        await h.engine.repairRouterIfDown()
        #expect(h.router.serving("iris", "qa") == nil)
        // A new agent over the same ledger and runtime reconciles: no route, no slot comes back.
        let config = EngineConfig(home: "/nonexistent", bentoml: "bentoml", bentomlHome: "/nonexistent", nginx: "nginx", agentID: "other:1:1")
        let next = Engine(config: config, store: h.store, policy: Harness.policy,
                          runtime: RuntimePorts(slots: h.slots, router: h.router, catalog: FakeCatalog(), prober: h.prober),
                          clock: h.clock, storedCode: Harness.codes)
        await next.reconcile()
        #expect(h.router.serving("iris", "qa") == nil && h.slots.running("iris", "qa").isEmpty)
        #expect(try h.record(v2.deploymentId).status == .stopped && (h.registry()) == nil)
        // The warm slot's keep-warm timer fires later and finds nothing to retire.
        h.clock.releaseTimers()
        #expect(try h.record(v2.deploymentId).status == .stopped)
    }

    @Test func aDeployAfterAStopIsAFirstDeployment() async throws {
        let (h, _, _) = try await twoVersions()
        _ = try await h.engine.stop(modelName: "iris", environment: "qa", reason: nil, requestedBy: "carol")
        let v3 = try await h.deploy("v3")
        #expect(v3.status == .live && v3.strategy == .direct && v3.previousVersion == nil)
        #expect(try h.router.serving("iris", "qa") == v3.slot && (h.registry())?.deploymentId == v3.deploymentId)
    }
}
