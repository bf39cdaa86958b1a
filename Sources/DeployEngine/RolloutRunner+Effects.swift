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
    /// Performs one action; returns what it observed, for the actions that observe something.
    mutating func perform(_ action: RolloutAction) async throws(EngineError) -> RolloutEvent? {
        switch action {
        case .transition(let event): try transition(event)
        case .startSlot: return try await startSlot()
        case .probeReadiness: return await probeReadiness()
        case .runSmokeTests: return await runSmokeTests()
        case .measureBaseline: return await measureBaseline()
        case .route(.new): return try await route()
        case .route(.previous): return try await routeBack()
        case .restoreRoute: await engine.restoreRoute(try engine.registryEntry(record.modelName, record.environment))
        case .setRegistry: try setRegistry()
        case .closePrevious: closePrevious()
        case .stopSlot(.new): await engine.stopSlot(record, slot: record.slot ?? facts.slot)
        case .stopSlot(.previous): try await stopPrevious()
        case .scheduleRetire(let seconds): scheduleRetire(seconds)
        case .measureBake(let afterMs): return try await measureBake(afterMs: afterMs)
        case .recordRollback(let cause): try recordRollback(cause)
        case .recordFailedRollback(let f): try recordFailedRollback(f)
        case .retireUndone(let seconds): retireUndone(seconds)
        case .fail(let f): try await fail(f)
        case .interrupt(let why): try await interrupt(why)
        case .expire(let f): try expire(f)
        case .note(let step, let message): note(step, message)
        case .report(let step, let message, let percent): report(step, message, percent)
        case .noteData(let step, let message, let data): note(step, message, data: data)
        case .reportData(let step, let message, let percent, let data): report(step, message, percent, data: data)
        case .setWeights(let w): return try await setWeights(w)
        case .measureAnalysis(let afterMs): return try await measureAnalysis(afterMs: afterMs)
        case .abort(let f): try await abortCanary(f)
        }
        return nil
    }

    /// Starts the new version in its slot; whatever ran there (an older version kept warm) is stopped
    /// first, and is no longer a rollback target.
    mutating func startSlot() async throws(EngineError) -> RolloutEvent {
        let ref = newSlotRef
        if let old = await ports.slots.state(ref) {
            note(.startSlot, "stopping what still ran in slot \(ref.id) (pid \(old.processID.map(String.init) ?? "?"))")
            // It takes no traffic (the router points at the live slot), so it gets no graceful drain.
            let slots = ports.slots
            _ = await engine.detached { await slots.stop(ref, graceSeconds: 0) }
            try engine.retireFromRegistry(record, slot: ref.id.rawValue)
        }
        let preferred = plan?.config.slotPort ?? 0
        var launch = SlotLaunch(ref: ref, bentoTag: record.bentoTag ?? plan?.bentoTag ?? "", version: record.modelVersion, preferredPort: preferred)
        launch.deploymentID = record.deploymentId
        launch.requirements = plan?.requirements
        do {
            let started = try await ports.slots.start(launch)
            newSlot = started
            if started.address.port != preferred { note(.startSlot, "port \(preferred) is taken; using \(started.address.port)") }
            note(.startSlot, "slot \(ref.id) started: pid \(started.processID.map(String.init) ?? "?"), port \(started.address.port)",
                 data: ["pid": .int(Int64(started.processID ?? 0)), "port": .int(Int64(started.address.port)), "log": .string(started.logPath ?? "")])
            return .slotStarted
        } catch {
            return .slotStartFailed(error.message)
        }
    }

    mutating func probeReadiness() async -> RolloutEvent {
        guard let slot = newSlot, let config = plan?.config else { return .notReady("the new slot was not started") }
        let ready = await ports.slots.waitReady(slot, deadlineSeconds: Double(config.startupDeadlineSeconds),
                                                 probeTimeoutMs: config.probeTimeoutMs, intervalMs: config.probeIntervalMs)
        readiness = ready
        if ready.ready { return .ready }
        let tail = await ports.slots.logTail(slot, bytes: 600)
        return .notReady("slot \(slot.ref.id) was not ready within \(config.startupDeadlineSeconds) s (\(ready.attempts) probes; \(ready.lastError ?? "no answer")); log tail: \(tail)")
    }

    func runSmokeTests() async -> RolloutEvent {
        guard let slot = newSlot, let checks = plan?.config.smokeTests else { return .smoke(passed: false, detail: "the new slot was not started") }
        let results = await ports.prober.smoke(slot.address, checks: checks, timeoutMs: 5000)
        let resultJSON: JSONValue = .array(results.map {
            ["api": .string($0.api), "passed": .bool($0.passed), "status": $0.status.map { .int(Int64($0)) } ?? .null,
             "latency_ms": .double($0.latencyMs), "answer": $0.answer ?? .null, "message": .string($0.message)]
        })
        if let bad = results.first(where: { !$0.passed }) {
            note(.smokeTests, "smoke test \(bad.api) failed", data: ["results": resultJSON])
            return .smoke(passed: false, detail: "smoke test \(bad.api) failed: \(bad.message)")
        }
        note(.smokeTests, "\(results.count) smoke test(s) passed", data: ["results": resultJSON])
        return .smoke(passed: true, detail: "")
    }

    /// A short probe load straight at the new slot; the figures are stored with the next status change.
    mutating func measureBaseline() async -> RolloutEvent {
        guard let slot = newSlot, let config = plan?.config else {
            return .baseline(Metrics(p50Ms: 0, p95Ms: 0, p99Ms: 0, errorRate: 1, rps: 0))
        }
        let m = await ports.prober.measure(slot.address, load: ProbeLoad(config, requests: config.baseline.requests, concurrency: config.baseline.concurrency))
        baseline = m
        note(.baseline, "baseline p50 \(fixed(m.p50Ms, 1)) ms, p95 \(fixed(m.p95Ms, 1)) ms, error rate \(fixed(m.errorRate, 3))", data: m.toJSON())
        return .baseline(m)
    }
}

extension ProbeLoad {
    /// The plan's probe load: its smoke test's API, else the health path.
    init(_ config: DeploymentConfig, requests: Int, concurrency: Int) {
        self.init(api: config.baseline.api, input: config.baseline.input, healthPath: config.healthPath, requests: requests, concurrency: concurrency)
    }
}
