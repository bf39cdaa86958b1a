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
        // The version replaced stays attached at weight 0: it becomes the warm previous one (RolloutRunner+Slots.swift).
        var warm: [WeightedBackend] = []
        if let p = previous { warm = await engine.warmBackend(p, slot: p.slot, version: p.modelVersion, besides: ref.id) }
        let spec = RouteSpec(modelName: record.modelName, environment: record.environment, listenPort: port,
                             backends: [WeightedBackend(slot: ref.id, address: slot.address, version: record.modelVersion)] + warm)
        if let live = previous, live.slot != ref.id.rawValue,
            let stats = await ports.router.stats(modelName: record.modelName, environment: record.environment, windowMs: Self.trafficWindowMs)
        {
            // What the old version served on real traffic just before the switch: the bake compares the new
            // version's real traffic after it with this.
            trafficBaseline = stats.first { $0.slot.rawValue == live.slot }?.window
        }
        let start = ContinuousClock.now
        var split = SwitchSplit(engine)
        do {
            try await ports.router.ensureRunning()
            split.lap("ensure_running_ms")
            try await ports.router.apply(spec)
            split.lap("apply_ms")
        } catch {
            return .switchFailed(.switchFailed, error.message)
        }
        guard await ports.router.verify(listenPort: port, serving: ref.id, timeoutMs: 5000) else {
            return .switchFailed(.switchUnverified, "the router did not answer from slot \(ref.id) within 5 s")
        }
        split.lap("verify_ms")
        switchSplit = split.laps
        switchMs = engine.ms(since: start)
        switchedAt = ContinuousClock.now
        bakeWindowFrom = engine.now().addingTimeInterval(Double(Analysis.settleMs) / 1000)
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
        // The switch kept it attached at weight 0; stopped, it leaves the router.
        await engine.detachFromRouter(record.modelName, record.environment, slot: previous.slot)
    }

    func scheduleRetire(_ seconds: Int) {
        guard let previous, previous.slot != newSlotRef.id.rawValue else { return }
        engine.scheduleRetirement(record, slot: previous.slot, after: seconds)
    }

    /// One bake window (after `afterMs`). With a real-traffic baseline the new version's traffic is
    /// judged in disjoint windows (``Machine/bakeTrafficWindowMs``); the probe through the router only
    /// fills in when that traffic is too thin to judge, since it loads the new version alone (the old
    /// version's baseline carried no probes).
    mutating func measureBake(afterMs: Int) async throws(EngineError) -> RolloutEvent? {
        if afterMs > 0 {
            do { try await engine.clock.sleep(milliseconds: afterMs) } catch { return .cancelled }
        }
        if Task.isCancelled { return .cancelled }
        let none = Metrics(p50Ms: 0, p95Ms: 0, p99Ms: 0, errorRate: 0, rps: 0)
        guard try engine.registryEntry(record.modelName, record.environment)?.deploymentId == record.deploymentId, let config = plan?.config else {
            return .bakeWindow(observed: none, slotAlive: true, stillLive: false)
        }
        var traffic: AnalysisResult?
        if let before = trafficBaseline {
            guard let window = await bakeTrafficWindow() else { return .cancelled }
            traffic = window.map { Analysis.compare(stable: before, candidate: $0, limits: AnalysisLimits()) }
            // A rollback or a newer rollout may have taken the endpoint while the window filled.
            guard try engine.registryEntry(record.modelName, record.environment)?.deploymentId == record.deploymentId else {
                return .bakeWindow(observed: none, slotAlive: true, stillLive: false)
            }
        }
        let alive = await ports.slots.state(newSlotRef)?.alive ?? false
        if !alive { return .bakeWindow(observed: none, slotAlive: false, stillLive: true, traffic: traffic) }
        if let traffic, traffic.verdict != .inconclusive {
            return .bakeWindow(observed: none, slotAlive: alive, stillLive: true, traffic: traffic)
        }
        let observed = await ports.prober.measure(ports.router.endpointAddress(listenPort: endpointPort ?? 0, modelName: record.modelName, environment: record.environment), load: ProbeLoad(config, requests: 20, concurrency: 2))
        return .bakeWindow(observed: observed, slotAlive: alive, stillLive: true, traffic: traffic)
    }

    /// The new version's next real-traffic window: from ``bakeWindowFrom`` until it is at least
    /// ``Machine/bakeTrafficWindowMs`` long and holds ``Analysis/minLatencySamples`` requests, or is
    /// ``trafficWindowMs`` long, or the bake is over (then at its shortest length); at once when the new version's process died (the
    /// bake fails on that without waiting for figures). `.some(nil)` when the router gives no figures;
    /// nil when the task was cancelled.
    mutating func bakeTrafficWindow() async -> WindowFigures?? {
        let from = bakeWindowFrom ?? engine.now()
        while true {
            guard await ports.slots.state(newSlotRef)?.alive == true else {
                bakeWindowFrom = engine.now()
                return .some(nil)
            }
            let spanMs = Int(engine.now().timeIntervalSince(from) * 1000)
            let over = bakeEndsAt.map { engine.now() >= $0 } ?? true
            // Never a shorter window, not even the last one: the bake ends with the first window that
            // closes after its time (measured: a 1 s window closed at the bake's end held one process
            // pause in 12 % of its requests and failed a healthy version).
            if spanMs >= Machine.bakeTrafficWindowMs {
                guard let stats = await ports.router.stats(modelName: record.modelName, environment: record.environment, windowMs: spanMs) else {
                    bakeWindowFrom = engine.now()
                    return .some(nil)
                }
                let after = stats.first { $0.slot == newSlotRef.id }?.window ?? .none
                if after.requests >= Analysis.minLatencySamples || spanMs >= Self.trafficWindowMs || over {
                    bakeWindowFrom = engine.now()
                    return .some(after)
                }
            }
            let short = Machine.bakeTrafficWindowMs - spanMs
            let step = short > 0 ? max(100, min(500, short)) : 500
            do { try await engine.clock.sleep(milliseconds: step) } catch { return nil }
        }
    }
}
