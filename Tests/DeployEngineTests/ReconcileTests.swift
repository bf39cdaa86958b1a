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

/// An agent that died at each step of a rollout: the next agent's reconciliation finishes or interrupts it.
@Suite struct ReconcileTests {
    /// An owner tag on this host whose process is gone.
    static let deadOwner = "\(Engine.hostName()):999999:0"

    /// v1 live, then v2 left in `status` by a dead agent with its slot running.
    func crashed(at status: DeploymentStatus, registryNamesIt: Bool = false) async throws -> (Harness, DeploymentRecord, DeploymentRecord) {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        let p = try await h.plan("v2")
        let slot = try #require(p.slot)
        let ref = SlotRef(modelName: "iris", environment: "qa", id: SlotID(rawValue: slot))
        _ = try await h.slots.start(SlotLaunch(ref: ref, bentoTag: "svc:v2", version: "v2", preferredPort: 20_500))
        var path: [DeploymentStatus] = [.deploying, .validating, .switching]
        path = Array(path.prefix { $0 != status }) + [status]
        var r = p
        for to in path {
            r = try h.store.transition(id: r.deploymentId, from: r.status, to: to,
                                       changes: DeploymentChanges(owner: .some(Self.deadOwner)),
                                       event: DeploymentEvent(deploymentId: r.deploymentId, at: h.clock.now(), step: "test", actor: "test", message: "->"))
        }
        if registryNamesIt {
            var entry = try #require(try h.registry())
            entry.previousVersion = entry.modelVersion
            entry.previousDeploymentId = entry.deploymentId
            entry.previousSlot = entry.slot
            entry.modelVersion = "v2"
            entry.deploymentId = r.deploymentId
            entry.slot = slot
            try h.store.setRegistry(entry)
        }
        return (h, v1, r)
    }

    @Test(arguments: [DeploymentStatus.deploying, .validating, .switching])
    func anOrphanedRolloutIsInterrupted(_ status: DeploymentStatus) async throws {
        let (h, v1, r) = try await crashed(at: status)
        await h.engine.reconcile()
        let after = try h.record(r.deploymentId)
        #expect(after.status == .interrupted && after.owner == nil)
        #expect(after.error?["reason"]?.stringValue == "interrupted" && after.error?["step"]?.stringValue == status.rawValue)
        #expect(h.slots.running("iris", "qa") == [v1.slot!])
        let entry = try h.registry()
        #expect(h.router.serving("iris", "qa") == v1.slot && entry?.deploymentId == v1.deploymentId)
    }

    @Test func aSwitchWhoseRegistryWasWrittenIsFinished() async throws {
        let (h, _, r) = try await crashed(at: .switching, registryNamesIt: true)
        await h.engine.reconcile()
        let after = try h.record(r.deploymentId)
        #expect(after.status == .live && after.owner == nil)
        #expect(try h.store.events(deploymentId: r.deploymentId).last?.step == "reconcile")
        // The router is made to agree with the registry.
        #expect(h.router.serving("iris", "qa") == r.slot)
    }

    @Test func aLiveOwnerIsLeftAlone() async throws {
        let h = Harness()
        _ = try await h.deploy("v1")
        let p = try await h.plan("v2")
        _ = try h.store.transition(id: p.deploymentId, from: .planned, to: .deploying,
                                   changes: DeploymentChanges(owner: .some(h.engine.config.agentID)),
                                   event: DeploymentEvent(deploymentId: p.deploymentId, at: h.clock.now(), step: "test", actor: "test", message: "->"))
        await h.engine.reconcile()
        #expect(try h.record(p.deploymentId).status == .deploying)
    }

    @Test func orphanedSlotsAreStopped() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        let stray = SlotRef(modelName: "other", environment: "qa", id: "blue")
        _ = try await h.slots.start(SlotLaunch(ref: stray, bentoTag: "x:1", version: "1", preferredPort: 20_600))
        await h.engine.reconcile()
        #expect(h.slots.state.withLock { $0.slots[stray] } == nil)
        #expect(h.slots.running("iris", "qa") == [v1.slot!])
    }

    /// A canary waiting at a step gate outlives its agent (the approval may come from another process, as
    /// `deployctl approve ID --gate step` does): the next agent neither interrupts it nor stops its candidate.
    @Test func aCanaryAtAStepGateKeepsItsCandidate() async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        let p = try await h.plan("v2")
        let slot = try #require(p.slot)
        let ref = SlotRef(modelName: "iris", environment: "qa", id: SlotID(rawValue: slot))
        _ = try await h.slots.start(SlotLaunch(ref: ref, bentoTag: "svc:v2", version: "v2", preferredPort: 20_500))
        var r = p
        for to: DeploymentStatus in [.deploying, .validating, .canary, .awaitingStep] {
            r = try h.store.transition(id: r.deploymentId, from: r.status, to: to,
                                       changes: DeploymentChanges(owner: .some(to == .awaitingStep ? nil : Self.deadOwner)),
                                       event: DeploymentEvent(deploymentId: r.deploymentId, at: h.clock.now(), step: "test", actor: "test", message: "->"))
        }
        await h.engine.reconcile()
        #expect(try h.record(r.deploymentId).status == .awaitingStep)
        #expect(h.slots.running("iris", "qa").sorted() == [v1.slot!, slot].sorted())
    }

    /// A canary's split is left alone by reconciliation (another agent starting on the same ledger and
    /// cluster, or this one restarting while the canary waits at a step gate), even above 50 %, where its
    /// candidate takes the larger share; with no canary holding it, the same route is repaired.
    @Test(arguments: [DeploymentStatus.canary, .awaitingStep])
    func aCanarysSplitIsNotRepairedAway(_ status: DeploymentStatus) async throws {
        let h = Harness()
        let v1 = try await h.deploy("v1")
        let p = try await h.plan("v2")
        let slot = try #require(p.slot)
        let ref = SlotRef(modelName: "iris", environment: "qa", id: SlotID(rawValue: slot))
        let cand = try await h.slots.start(SlotLaunch(ref: ref, bentoTag: "svc:v2", version: "v2", preferredPort: 20_500))
        let live = try #require(await h.slots.state(SlotRef(modelName: "iris", environment: "qa", id: SlotID(rawValue: v1.slot!))))
        let split = RouteSpec(modelName: "iris", environment: "qa", listenPort: 18_500, backends: [
            WeightedBackend(slot: live.ref.id, address: live.address, version: "v1", weight: 25),
            WeightedBackend(slot: cand.ref.id, address: cand.address, version: "v2", weight: 75),
        ])
        try await h.router.apply(split)
        var r = p
        for to: DeploymentStatus in [.deploying, .validating, .canary] + (status == .awaitingStep ? [.awaitingStep] : []) {
            r = try h.store.transition(id: r.deploymentId, from: r.status, to: to,
                                       changes: DeploymentChanges(owner: .some(to == .awaitingStep ? nil : h.engine.config.agentID)),
                                       event: DeploymentEvent(deploymentId: r.deploymentId, at: h.clock.now(), step: "test", actor: "test", message: "->"))
        }
        let entry = try #require(try h.registry("qa"))
        await h.engine.reconcileRoute(entry)
        #expect(h.router.weights("iris", "qa").last == [v1.slot!: 25, slot: 75])
        // Once the canary is over (here: aborted by hand in the ledger), the same route is repaired.
        _ = try h.store.transition(id: r.deploymentId, from: r.status, to: .aborted, changes: DeploymentChanges(owner: .some(nil)),
                                   event: DeploymentEvent(deploymentId: r.deploymentId, at: h.clock.now(), step: "test", actor: "test", message: "->"))
        await h.engine.reconcileRoute(entry)
        #expect(h.router.serving("iris", "qa") == v1.slot!)
        // A split left behind with the live version as the larger share is no canary's either: repaired too.
        try await h.router.apply(RouteSpec(modelName: "iris", environment: "qa", listenPort: 18_500, backends: [
            WeightedBackend(slot: live.ref.id, address: live.address, version: "v1", weight: 75),
            WeightedBackend(slot: cand.ref.id, address: cand.address, version: "v2", weight: 25),
        ]))
        await h.engine.reconcileRoute(entry)
        #expect(h.router.weights("iris", "qa").last == [v1.slot!: 100])
    }
}
