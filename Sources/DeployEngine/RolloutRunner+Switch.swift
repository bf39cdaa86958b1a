#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

extension RolloutRunner {
    /// Switches all traffic to the new slot (router apply, then read back through the router).
    mutating func route() async throws(EngineError) -> RolloutEvent {
        let ref = newSlotRef
        guard let slot = await ports.slots.state(ref), slot.alive else {
            return .switchFailed(.slotDied, "the new slot is no longer running")
        }
        newSlot = slot
        previous = try engine.registryEntry(record.modelName, record.environment)
        var port = previous.flatMap { Planner.port(of: $0.endpointURL) } ?? plan?.config.routerPort ?? 0
        if previous == nil {
            let free = await ports.router.listenPort(preferred: port, modelName: record.modelName, environment: record.environment)
            if free != port {
                // The planned endpoint port is taken by something else on this host: the first deployment takes another.
                note(.switchTraffic, "router port \(port) is in use; the endpoint takes port \(free)")
                port = free
            }
        }
        endpointPort = port
        let spec = RouteSpec(modelName: record.modelName, environment: record.environment, listenPort: port,
                             backends: [WeightedBackend(slot: ref.id, address: slot.address, version: record.modelVersion)])
        if let live = previous, live.slot != ref.id.rawValue,
            let stats = await ports.router.stats(modelName: record.modelName, environment: record.environment, windowMs: Self.trafficWindowMs)
        {
            // What the old version served on real traffic just before the switch: the bake compares the new
            // version's real traffic after it with this.
            trafficBaseline = stats.first { $0.slot.rawValue == live.slot }?.window
        }
        let start = ContinuousClock.now
        do {
            try await ports.router.ensureRunning()
            try await ports.router.apply(spec)
        } catch {
            return .switchFailed(.switchFailed, error.message)
        }
        guard await ports.router.verify(listenPort: port, serving: ref.id, timeoutMs: 5000) else {
            return .switchFailed(.switchUnverified, "the router did not answer from slot \(ref.id) within 5 s")
        }
        switchMs = engine.ms(since: start)
        switchedAt = ContinuousClock.now
        return .switched
    }

    /// The real-traffic window the bake judges (and takes before the switch), ms.
    static let trafficWindowMs = 10_000

    /// Names the new version live, with the previous one as the rollback target.
    mutating func setRegistry() throws(EngineError) {
        let t = engine.now()
        let entry = RegistryEntry(
            modelName: record.modelName, environment: record.environment, modelVersion: record.modelVersion,
            deploymentId: record.deploymentId, endpointURL: ports.router.endpointURL(listenPort: endpointPort ?? 0, modelName: record.modelName, environment: record.environment), slot: newSlotRef.id.rawValue,
            bentoTag: record.bentoTag, previousVersion: previous?.modelVersion, previousDeploymentId: previous?.deploymentId,
            previousSlot: previous?.slot, previousBentoTag: previous?.bentoTag, updatedAt: t)
        try engine.ledger { () throws(StoreError) in try engine.store.setRegistry(entry) }
        if facts.rollback.bakeSeconds > 0 { bakeEndsAt = t.addingTimeInterval(Double(facts.rollback.bakeSeconds)) }
    }

    /// The deployment this one replaced leaves live: superseded, or rolled back when this is its rollback.
    func closePrevious() {
        guard let previous else { return }
        let t = engine.now()
        do throws(EngineError) {
            let old = try engine.record(previous.deploymentId)
            guard old.status == .live else { return }
            let undone = record.strategy == .rollback && record.rollbackOf == old.deploymentId
            try engine.move(old, undone ? .rollBack : .supersede, step: undone ? "rollback" : "supersede", actor: actor,
                            message: undone ? "rolled back: \(record.modelVersion) is live again (deployment \(record.deploymentId))"
                                            : "superseded by \(record.modelVersion) (deployment \(record.deploymentId))",
                            changes: DeploymentChanges(finishedAt: t))
        } catch {
            // The new version is live either way; a status moved meanwhile (or a ledger hiccup) is logged.
            engine.log("the replaced deployment could not be closed", ["deployment_id": .string(previous.deploymentId), "error": .string(error.message)])
        }
    }

    /// Direct keeps no second slot warm: the previous one stops now.
    func stopPrevious() async throws(EngineError) {
        guard let previous, previous.slot != newSlotRef.id.rawValue else { return }
        let ref = engine.slotRef(record, previous.slot)
        let slots = ports.slots
        _ = await engine.detached { await slots.stop(ref, graceSeconds: 5) }
        try engine.retireFromRegistry(record, slot: previous.slot)
    }

    func scheduleRetire(_ seconds: Int) {
        guard let previous, previous.slot != newSlotRef.id.rawValue else { return }
        engine.scheduleRetirement(record, slot: previous.slot, after: seconds)
    }

    /// One bake window through the router (after `afterMs`).
    mutating func measureBake(afterMs: Int) async throws(EngineError) -> RolloutEvent? {
        if afterMs > 0 {
            do { try await engine.clock.sleep(milliseconds: afterMs) } catch { return .cancelled }
        }
        if Task.isCancelled { return .cancelled }
        let none = Metrics(p50Ms: 0, p95Ms: 0, p99Ms: 0, errorRate: 0, rps: 0)
        guard try engine.registryEntry(record.modelName, record.environment)?.deploymentId == record.deploymentId, let config = plan?.config else {
            return .bakeWindow(observed: none, slotAlive: true, stillLive: false)
        }
        let observed = await ports.prober.measure(ports.router.endpointAddress(listenPort: endpointPort ?? 0, modelName: record.modelName, environment: record.environment), load: ProbeLoad(config, requests: 20, concurrency: 2))
        let alive = await ports.slots.state(newSlotRef)?.alive ?? false
        var traffic: AnalysisResult?
        if let before = trafficBaseline {
            let since = Int((ContinuousClock.now - switchedAt) / .milliseconds(1))
            let windowMs = max(1000, min(Self.trafficWindowMs, since))
            if let stats = await ports.router.stats(modelName: record.modelName, environment: record.environment, windowMs: windowMs) {
                let after = stats.first { $0.slot == newSlotRef.id }?.window ?? .none
                traffic = Analysis.compare(stable: before, candidate: after, limits: AnalysisLimits())
            }
        }
        return .bakeWindow(observed: observed, slotAlive: alive, stillLive: true, traffic: traffic)
    }
}
