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

/// Canaries through the engine: weights on the fake router, scripted analysis windows, the ledger's events,
/// deploy.abort and history's traffic_at.
@Suite struct CanaryRunnerTests {
    static let healthy = ["blue": WindowFigures(requests: 100, errors: 0, p95Ms: 10), "green": WindowFigures(requests: 40, errors: 0, p95Ms: 11)]

    /// v1 live (direct, slot blue), then a canary of v2 planned in `cn`.
    func canaryPlan(_ h: Harness, canary: JSONValue? = nil) async throws -> DeploymentRecord {
        _ = try await h.deploy("v1", env: "cn", strategy: .direct)
        h.router.state.withLock { $0.windows = [Self.healthy] }
        return try await h.engine.plan(PlanRequest(modelName: "iris", modelVersion: "v2", environment: "cn", requestedBy: "alice",
                                                   strategy: .canary, smokeTests: [SmokeTest(api: "predict", input: [1, 2])], canary: canary))
    }

    func run(_ h: Harness, _ p: DeploymentRecord) async throws -> DeploymentRecord {
        try await h.engine.execute(deploymentId: p.deploymentId, idempotencyKey: nil, actor: "alice", progress: h.progress)
    }

    @Test func healthyCanaryWalksItsStepsToLive() async throws {
        let h = Harness()
        let p = try await canaryPlan(h)
        #expect(p.strategy == .canary)
        let r = try await run(h, p)
        #expect(r.status == .live)
        // Each step raised the candidate (green) while blue kept the rest; at 100 blue stays configured at 0 (warm).
        let steps = h.router.weights("iris", "cn").suffix(3)
        #expect(Array(steps) == [["blue": 90, "green": 10], ["blue": 50, "green": 50], ["blue": 0, "green": 100]])
        let entry = try #require(try h.registry("cn"))
        #expect(entry.modelVersion == "v2" && entry.previousVersion == "v1" && entry.previousSlot == "blue")
        #expect(h.slots.running("iris", "cn") == ["blue", "green"])
        let events = try h.store.events(deploymentId: r.deploymentId)
        let stepEvents = events.filter { $0.step == "canary_step" }
        #expect(stepEvents.compactMap { $0.data["weight"]?.intValue } == [10, 50, 100])
        #expect(stepEvents.first?.data["weights"] == ["v1": 90, "v2": 10], "\(stepEvents.first!.data)")
        let analysis = events.filter { $0.step == "analysis" }
        // 10 s pause at 5 s intervals: two windows per step below 100.
        #expect(analysis.count == 4 && analysis.allSatisfy { $0.data["analysis"]?["verdict"] == "pass" })
        #expect(events.compactMap(\.toStatus) == [.planned, .deploying, .validating, .canary, .live])
        // Progress carries the contract's data.
        let withData = h.updates.list.withLock { $0.filter { $0.step == "analysis" } }
        #expect(withData.first?.data?["analysis"]?["candidate"]?["requests"] == 40)
        #expect(withData.first?.data?["weights"] == ["v1": 90, "v2": 10])
        let v1 = try #require(try h.store.deployment(id: entry.previousDeploymentId!))
        #expect(v1.status == .superseded)
    }

    @Test func theFirstWindowOfAStepStartsOnceTheNewWeightsSettled() async throws {
        let h = Harness()
        let r = try await run(h, try await canaryPlan(h))
        #expect(r.status == .live)
        let events = try h.store.events(deploymentId: r.deploymentId)
        let steps = events.filter { $0.step == "canary_step" && $0.message.hasPrefix("canary step") && $0.data["weight"] != 100 }
        let windows = events.filter { $0.step == "analysis" }
        #expect(steps.count == 2 && windows.count == 4)
        // 5 s intervals: the first window of each step ends settle + 5 s after its weights were set, the next 5 s later.
        let settle = Double(Analysis.settleMs) / 1000
        for (i, step) in steps.enumerated() {
            #expect(windows[2 * i].at.timeIntervalSince(step.at) == settle + 5)
            #expect(windows[2 * i + 1].at.timeIntervalSince(windows[2 * i].at) == 5)
        }
        // Each window is one interval long: the settle time is waited, not judged.
        #expect(h.router.state.withLock { $0.windowsAsked } == [5000, 5000, 5000, 5000])
    }

    /// A router that counts no traffic per version (Kubernetes): each interval is a probe window of both
    /// versions, the interval's length, enough requests for a p95; the router's counters are never read.
    @Test func aRouterMeasuredByProbesIsJudgedOnProbeWindows() async throws {
        let h = Harness()
        h.router.state.withLock { $0.probes = true }
        let clock = h.clock
        h.router.onProbe.withLock { $0 = { ms in clock.advance(seconds: Double(ms) / 1000) } }
        let r = try await run(h, try await canaryPlan(h))
        #expect(r.status == .live)
        let asked = h.router.state.withLock { $0.probesAsked }
        #expect(asked.count == 4 && asked.allSatisfy { $0.durationMs == 5000 && $0.versions == ["v1", "v2"] })
        // The contract's default min_requests is 20: a p95 is compared from Analysis.minLatencySamples requests.
        #expect(asked.allSatisfy { $0.requests == Analysis.minLatencySamples })
        #expect(h.router.state.withLock { $0.statsCalls } == 0)
        let analysis = try h.store.events(deploymentId: r.deploymentId).filter { $0.step == "analysis" }
        #expect(analysis.count == 4 && analysis.first?.data["analysis"]?["candidate"]?["requests"] == 40)
    }

    @Test func failingCandidateIsAbortedWithTrafficBackOnStable() async throws {
        let h = Harness()
        let p = try await canaryPlan(h)
        h.router.state.withLock { $0.windows = [["blue": WindowFigures(requests: 100, errors: 0, p95Ms: 10), "green": WindowFigures(requests: 30, errors: 9, p95Ms: 10)]] }
        let r = try await run(h, p)
        #expect(r.status == .aborted)
        #expect(r.error?["reason"] == "analysis_failed")
        #expect(r.error?["message"]?.stringValue?.contains("2 intervals in a row at 10%") == true)
        // Aborted within two analysis intervals of the first step.
        #expect(h.router.state.withLock { $0.statsCalls } == 2)
        #expect(h.router.weights("iris", "cn").last == ["blue": 100])
        #expect(h.slots.running("iris", "cn") == ["blue"])
        #expect(try h.registry("cn")?.modelVersion == "v1")
        let abortEvent = try #require(try h.store.events(deploymentId: r.deploymentId).last)
        #expect(abortEvent.step == "abort" && abortEvent.toStatus == .aborted)
    }

    @Test func noTrafficIsInconclusiveThenAborted() async throws {
        let h = Harness()
        let p = try await canaryPlan(h)
        h.router.state.withLock { $0.windows = [[:]] }
        let r = try await run(h, p)
        #expect(r.status == .aborted && r.error?["reason"] == "analysis_inconclusive")
        let said = h.updates.list.withLock { $0.filter { $0.step == "analysis" }.map(\.message) }
        #expect(said.first?.contains("inconclusive: 0 of 20 requests") == true)
        // It never raised the weight past the first step on no data.
        #expect(!h.router.weights("iris", "cn").contains { $0["green"] == 50 })
    }

    @Test func stepGateWaitsThenApproveRunsOnAndAbortStopsIt() async throws {
        let h = Harness()
        let p = try await canaryPlan(h, canary: ["step_gates": true])
        let waiting = try await run(h, p)
        #expect(waiting.status == .awaitingStep)
        let o = try await h.engine.approve(deploymentId: p.deploymentId, approver: "bob", decision: "approve", gate: .step, comment: nil, progress: h.progress)
        #expect(o.record.status == .awaitingStep && o.execution?.status == .awaitingStep)
        #expect(h.router.weights("iris", "cn").last == ["blue": 50, "green": 50])
        let aborted = try await h.engine.abort(deploymentId: p.deploymentId, requestedBy: "carol", reason: "enough", progress: h.progress)
        #expect(aborted.status == .aborted && aborted.error?["reason"] == "aborted")
        #expect(h.router.weights("iris", "cn").last == ["blue": 100])
        #expect(h.slots.running("iris", "cn") == ["blue"])
        await #expect(throws: EngineError.self) {
            _ = try await h.engine.abort(deploymentId: p.deploymentId, requestedBy: "carol", reason: nil, progress: h.progress)
        }
        do {
            _ = try await h.engine.abort(deploymentId: p.deploymentId, requestedBy: "carol", reason: nil, progress: h.progress)
        } catch {
            #expect(error.reason == "not_abortable" && error.extra["status"] == "aborted")
        }
    }

    @Test func abortFromAnotherRequestEndsTheRunningCanaryAtItsNextWindow() async throws {
        let h = Harness()
        let p = try await canaryPlan(h)
        let engine = h.engine
        h.router.onStats.withLock { hook in
            hook = {
                // "Another request" aborts while the canary measures its first window.
                _ = try? await engine.abort(deploymentId: p.deploymentId, requestedBy: "carol", reason: "by hand", progress: { _ in })
            }
        }
        let r = try await run(h, p)
        #expect(r.status == .aborted && r.error?["reason"] == "aborted")
        #expect(h.router.weights("iris", "cn").last == ["blue": 100])
        #expect(!h.router.weights("iris", "cn").contains { $0["green"] == 50 })
    }

    @Test func nginxCannotCanaryAndNothingLiveCannotEither() async throws {
        let h = Harness()
        await #expect(throws: EngineError.self) {
            _ = try await h.engine.plan(PlanRequest(modelName: "iris", modelVersion: "v1", environment: "cn", requestedBy: "alice", strategy: .canary,
                                                    smokeTests: [SmokeTest(api: "predict", input: [1])]))
        }
        _ = try await h.deploy("v1", env: "cn", strategy: .direct)
        h.router.state.withLock { $0.splits = false }
        do {
            _ = try await h.engine.plan(PlanRequest(modelName: "iris", modelVersion: "v2", environment: "cn", requestedBy: "alice", strategy: .canary,
                                                    smokeTests: [SmokeTest(api: "predict", input: [1])]))
            Issue.record("planned a canary on a router without weights")
        } catch {
            #expect(error.reason == "weights_unsupported")
        }
    }

    @Test func trafficAtAnswersTheWeightsInForce() async throws {
        let h = Harness()
        let p = try await canaryPlan(h, canary: ["step_gates": true])
        let beforeCanary = h.clock.now()
        _ = try await run(h, p)
        let atTen = h.clock.now()
        h.clock.advance(seconds: 1)
        let before = try await h.engine.traffic(modelName: "iris", environment: "cn", at: beforeCanary)
        #expect(before.map(\.weight) == [100] && before.first?.version == "v1")
        let during = try await h.engine.traffic(modelName: "iris", environment: "cn", at: atTen)
        #expect(during.map(\.version) == ["v1", "v2"] && during.map(\.weight) == [90, 10])
        _ = try await h.engine.abort(deploymentId: p.deploymentId, requestedBy: "carol", reason: nil, progress: h.progress)
        h.clock.advance(seconds: 1)
        let after = try await h.engine.traffic(modelName: "iris", environment: "cn", at: h.clock.now())
        #expect(after.map(\.weight) == [100] && after.first?.version == "v1")
    }
}

/// The blue-green bake on real traffic through the engine: the old version's window just before the
/// switch is the baseline; the probes only fill in when traffic is thin.
@Suite struct BakeOnTrafficTests {
    @Test func slowRealTrafficAfterTheSwitchRollsBackEvenWithGoodProbes() async throws {
        let h = Harness()
        // A bake long enough for two disjoint windows after the settle time.
        _ = try await h.deploy("v1", env: "bake8")
        // Call 0 is taken just before the switch (v1 in blue); the bake's windows see v2 in green.
        h.router.state.withLock {
            $0.windows = [["blue": WindowFigures(requests: 200, errors: 0, p95Ms: 20)], ["green": WindowFigures(requests: 100, errors: 0, p95Ms: 400)]]
        }
        let v2 = try await h.deploy("v2", env: "bake8")
        let after = try h.record(v2.deploymentId)
        #expect(after.status == .rolledBack && after.error?["reason"] == "latency_regression")
        #expect(try h.registry("bake8")?.modelVersion == "v1")
        let notes = try h.store.events(deploymentId: v2.deploymentId).map(\.message)
        #expect(notes.filter { $0.hasPrefix("bake window (real traffic): p95 400 ms") }.count == 2)
    }

    @Test func bakeWindowsAreDisjointAndStartOnceTheSwitchSettled() async throws {
        let h = Harness()
        _ = try await h.deploy("v1", env: "bake8")
        h.router.state.withLock {
            $0.windows = [["blue": WindowFigures(requests: 200, errors: 0, p95Ms: 20)], ["green": WindowFigures(requests: 100, errors: 0, p95Ms: 22)]]
        }
        let v2 = try await h.deploy("v2", env: "bake8")
        #expect(try h.record(v2.deploymentId).status == .live)
        // The old version's 10 s before the switch, then the new version's windows: each starts where the
        // last one ended (the first one settle time after the switch) and lasts the shortest window, as
        // it already holds enough requests.
        let asked = h.router.state.withLock { $0.windowsAsked }
        #expect(asked.first == RolloutRunner.trafficWindowMs && asked.count > 2)
        #expect(asked.dropFirst().dropLast().allSatisfy { $0 == Machine.bakeTrafficWindowMs }, "\(asked)")
    }

    @Test func aThinTrafficBakeWindowGrowsUntilItHoldsEnoughRequests() async throws {
        let h = Harness()
        _ = try await h.deploy("v1", env: "bake8")
        h.router.state.withLock {
            $0.windows = [["blue": WindowFigures(requests: 200, errors: 0, p95Ms: 20)], ["green": WindowFigures(requests: 10, errors: 0, p95Ms: 22)],
                          ["green": WindowFigures(requests: 10, errors: 0, p95Ms: 22)], ["green": WindowFigures(requests: Analysis.minLatencySamples, errors: 0, p95Ms: 22)]]
        }
        let v2 = try await h.deploy("v2", env: "bake8")
        #expect(try h.record(v2.deploymentId).status == .live)
        let asked = h.router.state.withLock { $0.windowsAsked }
        // 10 requests in 2 s: not enough to judge a p95, so the same window is asked again, longer, until it holds 40.
        #expect(Array(asked.prefix(4)) == [RolloutRunner.trafficWindowMs, 2000, 2500, 3000], "\(asked)")
    }

    @Test func aProcessThatDiesWhileABakeWindowFillsRollsBackAtOnce() async throws {
        let h = Harness()
        _ = try await h.deploy("v1", env: "bake8")
        h.router.state.withLock {
            $0.windows = [["blue": WindowFigures(requests: 200, errors: 0, p95Ms: 20)], ["green": WindowFigures(requests: 10, errors: 0, p95Ms: 22)]]
        }
        let slots = h.slots, router = h.router
        h.router.onStats.withLock { hook in
            hook = {
                // The first bake window (the second stats call) is too thin to judge; the new version dies while it grows.
                guard router.state.withLock({ $0.statsCalls }) >= 1 else { return }
                for (ref, slot) in slots.state.withLock({ $0.slots }) where ref.id.rawValue == "green" && slot.alive { slots.kill(ref) }
            }
        }
        let v2 = try await h.deploy("v2", env: "bake8")
        let after = try h.record(v2.deploymentId)
        #expect(after.status == .rolledBack && after.error?["reason"] == "slot_died", "\(String(describing: after.error))")
        // The pre-switch window, then one bake window: the death is not waited out to the 10 s window.
        #expect(h.router.state.withLock { $0.windowsAsked } == [RolloutRunner.trafficWindowMs, Machine.bakeTrafficWindowMs])
    }

    @Test func aLoadedHealthyVersionStaysLive() async throws {
        let h = Harness()
        _ = try await h.deploy("v1")
        // Probes would call it a regression (the idle baseline is 8 ms); real traffic says both versions are alike.
        h.prober.state.withLock { $0.bake = Metrics(p50Ms: 100, p95Ms: 190, p99Ms: 200, errorRate: 0, rps: 10) }
        h.router.state.withLock {
            $0.windows = [["blue": WindowFigures(requests: 200, errors: 0, p95Ms: 170)], ["green": WindowFigures(requests: 100, errors: 0, p95Ms: 190)]]
        }
        let v2 = try await h.deploy("v2")
        #expect(try h.record(v2.deploymentId).status == .live)
        #expect(try h.registry()?.modelVersion == "v2")
    }
}

/// A canary whose agent died: the next agent's reconciliation puts the traffic back on stable.
@Suite struct CanaryReconcileTests {
    @Test func anOrphanedCanaryIsInterruptedWithTrafficBackOnStable() async throws {
        let h = Harness()
        _ = try await h.deploy("v1", env: "cn", strategy: .direct)
        h.router.state.withLock { $0.windows = [CanaryRunnerTests.healthy] }
        let p = try await h.engine.plan(PlanRequest(modelName: "iris", modelVersion: "v2", environment: "cn", requestedBy: "alice",
                                                    strategy: .canary, smokeTests: [SmokeTest(api: "predict", input: [1])], canary: ["step_gates": true]))
        let waiting = try await h.engine.execute(deploymentId: p.deploymentId, idempotencyKey: nil, actor: "alice", progress: h.progress)
        #expect(waiting.status == .awaitingStep && h.router.weights("iris", "cn").last == ["blue": 90, "green": 10])
        // The agent that owned it is gone while the canary runs (at 10%).
        let dead = "\(Engine.hostName()):999999:0"
        _ = try h.store.transition(id: p.deploymentId, from: .awaitingStep, to: .canary, changes: DeploymentChanges(owner: .some(dead)),
                                   event: DeploymentEvent(deploymentId: p.deploymentId, at: h.clock.now(), step: "test", actor: "test", message: "->"))
        await h.engine.reconcile()
        let r = try h.record(p.deploymentId)
        #expect(r.status == .interrupted)
        #expect(h.router.weights("iris", "cn").last == ["blue": 100])
        #expect(h.slots.running("iris", "cn") == ["blue"])
    }
}
