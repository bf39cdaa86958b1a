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
    /// Whether the deployment is still in `status` in the ledger. Another request (deploy.abort, or an
    /// agent's reconciliation) may have ended the canary while this runner slept; then the runner stops.
    mutating func stillIn(_ statuses: Set<DeploymentStatus>) throws(EngineError) -> Bool {
        let current = try engine.record(record.deploymentId)
        guard statuses.contains(current.status) else {
            record = current
            return false
        }
        return true
    }

    /// The stable version's and the candidate's backends, the candidate at `weight` percent.
    func canaryRoute(_ entry: RegistryEntry, stable: RunningSlot, candidate: RunningSlot, weight w: Int) -> RouteSpec? {
        guard let port = Planner.port(of: entry.endpointURL) else { return nil }
        return RouteSpec(modelName: entry.modelName, environment: entry.environment, listenPort: port, backends: [
            WeightedBackend(slot: stable.ref.id, address: stable.address, version: entry.modelVersion, weight: 100 - w),
            WeightedBackend(slot: candidate.ref.id, address: candidate.address, version: record.modelVersion, weight: w),
        ])
    }

    /// Sets the step's weights: the stable version (what the registry names live) at `100 - w`, the
    /// candidate at `w`. The router orders its commands so that a rising weight is applied before a falling
    /// one (HAProxyPlan), so the enabled weights never sum to 0 under load.
    mutating func setWeights(_ w: Int) async throws(EngineError) -> RolloutEvent? {
        guard try stillIn([.canary]) else { return nil }
        guard let entry = try engine.registryEntry(record.modelName, record.environment), entry.deploymentId != record.deploymentId,
            let stable = await ports.slots.state(engine.slotRef(entry, entry.slot)), stable.alive
        else {
            return .weightsFailed("the stable version is not running any more")
        }
        guard let candidate = await ports.slots.state(newSlotRef), candidate.alive else {
            return .weightsFailed("the new version's process is not running")
        }
        newSlot = candidate
        previous = entry
        guard let spec = canaryRoute(entry, stable: stable, candidate: candidate, weight: w) else {
            return .weightsFailed("the endpoint \(entry.endpointURL) has no port")
        }
        endpointPort = spec.listenPort
        let start = ContinuousClock.now
        do {
            try await ports.router.ensureRunning()
            try await ports.router.apply(spec)
        } catch {
            return .weightsFailed("\(error.code): \(error.message)")
        }
        switchMs = engine.ms(since: start)
        weightsSetAt = engine.now()
        // An abort that landed while the weights were being set wins: traffic goes back to stable.
        guard try stillIn([.canary]) else {
            await engine.restoreRoute(try engine.registryEntry(record.modelName, record.environment))
            return nil
        }
        return .weightsSet(w)
    }

    /// Waits one analysis interval, then judges it from the router's request log: the candidate's window
    /// against the stable version's, the same interval on the same traffic.
    /// The first window of a step starts ``Analysis/settleMs`` after the weights changed, so it never
    /// holds the requests in flight at the change.
    mutating func measureAnalysis(afterMs: Int) async throws(EngineError) -> RolloutEvent? {
        // A router measured by probes spends the interval probing: only the settling time is slept.
        let byProbes = ports.router.measuresByProbes
        var wait = byProbes ? 0 : afterMs
        if let set = weightsSetAt {
            let from = set.addingTimeInterval(Double(Analysis.settleMs) / 1000)
            wait += max(0, Int((from.timeIntervalSince(engine.now()) * 1000).rounded(.up)))
            weightsSetAt = nil
        }
        if wait > 0 {
            do { try await engine.clock.sleep(milliseconds: wait) } catch { return .cancelled }
        }
        if Task.isCancelled { return .cancelled }
        guard try stillIn([.canary]) else { return nil }
        let limits = (facts.canary ?? .defaults).analysis
        let stats: [BackendStats]?
        if byProbes {
            stats = try await probeAnalysis(limits, durationMs: max(afterMs, 1000))
            if Task.isCancelled { return .cancelled }
            guard try stillIn([.canary]) else { return nil }
        } else {
            stats = await ports.router.stats(modelName: record.modelName, environment: record.environment, windowMs: max(afterMs, 1000))
        }
        let alive = await ports.slots.state(newSlotRef)?.alive ?? false
        guard let stats, let entry = try engine.registryEntry(record.modelName, record.environment) else {
            let r = AnalysisResult(verdict: .inconclusive, stable: .none, candidate: .none, limits: limits,
                                   message: "inconclusive: the router gave no traffic figures")
            return .analysisWindow(r, slotAlive: alive)
        }
        let stable = stats.first { $0.slot.rawValue == entry.slot }?.window ?? .none
        let candidate = stats.first { $0.slot == newSlotRef.id }?.window ?? .none
        return .analysisWindow(Analysis.compare(stable: stable, candidate: candidate, limits: limits), slotAlive: alive)
    }

    /// The interval's figures from probes, for a router that counts no traffic per version (Kubernetes): the
    /// smoke test's call (or the health path) sent to the stable version and the candidate alike, side by
    /// side, enough of them for a p95 to be compared (``Analysis/minLatencySamples``). Not user traffic, and
    /// the plan says so. Nil when the registry names nothing live (the analysis is then inconclusive).
    mutating func probeAnalysis(_ limits: AnalysisLimits, durationMs: Int) async throws(EngineError) -> [BackendStats]? {
        guard let entry = try engine.registryEntry(record.modelName, record.environment), let config = plan?.config,
              let stable = await ports.slots.state(engine.slotRef(entry, entry.slot)) else { return nil }
        var found = newSlot
        if found == nil { found = await ports.slots.state(newSlotRef) }
        guard let candidate = found else { return nil }
        let load = ProbeLoad(config, requests: max(limits.minRequests, Analysis.minLatencySamples), concurrency: 1)
        return await ports.router.probeWindow(
            modelName: record.modelName, environment: record.environment,
            backends: [WeightedBackend(slot: stable.ref.id, address: stable.address, version: entry.modelVersion),
                       WeightedBackend(slot: candidate.ref.id, address: candidate.address, version: record.modelVersion)],
            load: load, durationMs: durationMs)
    }

    /// Stops the canary: the route back to the stable version alone (its weight raised before the
    /// candidate's server is drained and removed), the candidate's slot stopped, status `aborted`.
    mutating func abortCanary(_ f: Failure) async throws(EngineError) {
        guard try stillIn([.canary, .awaitingStep]) else { return }
        let entry = try engine.registryEntry(record.modelName, record.environment)
        await engine.restoreRoute(entry)
        await engine.stopSlot(record, slot: record.slot ?? facts.slot)
        let who = f.reason == .aborted ? (approval?.approver ?? actor) : "model-deployer"
        let current = try engine.record(record.deploymentId)
        record = try engine.move(
            current, .abort, step: Step.abort.wireName, actor: who,
            message: "aborted: \(f.message); traffic back on \(entry?.modelVersion ?? "the stable version"), candidate stopped",
            changes: DeploymentChanges(finishedAt: engine.now(), error: engine.failureJSON(f), owner: .some(nil)),
            data: ["reason": .string(f.reason.wireName), "weights": Canary.weights(stable: entry?.modelVersion, candidate: record.modelVersion, weight: 0)])
    }

    /// The step a canary waiting at its step gate had reached (from its last `canary_step` event).
    static func canaryIndex(_ engine: Engine, _ r: DeploymentRecord) -> Int {
        guard let events = try? engine.store.events(deploymentId: r.deploymentId) else { return 0 }
        let last = events.last { $0.step == Step.canaryStep.wireName && $0.data["step_index"] != nil }
        return last?.data["step_index"]?.intValue.flatMap { Int(exactly: $0) } ?? 0
    }
}
