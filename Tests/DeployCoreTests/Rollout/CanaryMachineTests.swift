#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import Testing
@testable import DeployCore

/// The canary's steps, pauses, inconclusive waits, failure limit and gates, walked through the pure machine
/// with the runner's part played by hand (the clock is the snapshot's `now`).
@Suite struct CanaryMachineTests {
    typealias T = MachineTableTests
    static let config = CanaryConfig(steps: [5, 25, 100], pauseSeconds: 20, minRequests: 30, maxInconclusiveSeconds: 60,
                                     analysis: AnalysisLimits(intervalSeconds: 10, failureLimit: 2, minRequests: 10))
    static func plan(_ c: CanaryConfig = config, gate: Bool = false) -> RolloutPlan {
        RolloutPlan(strategy: .canary, version: "v2", slot: "green", hasSmokeTests: false, hasPromotionGate: gate,
                    rollback: RollbackPolicy(bakeSeconds: 0, keepWarmSeconds: 60), canary: c)
    }

    static func figures(_ n: Int, errors: Int = 0, p95: Double? = 10) -> WindowFigures { WindowFigures(requests: n, errors: errors, p95Ms: p95) }

    /// A runner in miniature: applies decisions to the snapshot the way RolloutRunner does.
    struct Walk {
        var s: Snapshot
        var log: [Decision] = []
        init(_ plan: RolloutPlan, status: DeploymentStatus = .validating) {
            s = Snapshot(status: status, step: .baseline, plan: plan, hasPrevious: true, hasWarmPrevious: false,
                         baseline: MachineTableTests.good, now: Date(timeIntervalSince1970: 0), stableVersion: "v1")
        }
        @discardableResult
        mutating func feed(_ e: RolloutEvent) -> Decision {
            let d = Machine.next(s, e)
            log.append(d)
            if !d.isIgnored {
                s.status = d.status
                s.step = d.step
                if let c = d.canary { s.canary = c }
            }
            return d
        }
        mutating func advance(_ seconds: Double) { s.now = s.now.addingTimeInterval(seconds) }
        /// One interval: time passes, then the window is judged.
        mutating func window(candidate: WindowFigures, stable: WindowFigures = CanaryMachineTests.figures(100)) -> Decision {
            advance(10)
            let r = Analysis.compare(stable: stable, candidate: candidate, limits: s.plan.canary!.analysis)
            return feed(.analysisWindow(r, slotAlive: true))
        }
    }

    @Test func stepsAdvanceAfterThePauseWithEnoughRequests() {
        var w = Walk(Self.plan())
        let start = w.feed(.baseline(T.good))
        #expect(start.status == .canary && start.actions.last == .setWeights(5))
        #expect(start.actions.first == .transition(.startCanary))
        let set = w.feed(.weightsSet(5))
        #expect(set.actions.last == .measureAnalysis(afterMs: 10_000))
        guard case .noteData(.canaryStep, _, let data)? = set.actions.first else { Issue.record("no canary_step event"); return }
        #expect(data["weights"] == ["v1": 95, "v2": 5] && data["weight"] == 5 && data["step_index"] == 0)
        // 10 s: passes, but the pause (20 s) is not over.
        #expect(w.window(candidate: Self.figures(15)).actions.last == .measureAnalysis(afterMs: 10_000))
        // 20 s: pause over, 30 candidate requests: the next step.
        let next = w.window(candidate: Self.figures(15))
        #expect(next.actions.last == .setWeights(25) && w.s.canary.index == 1)
        guard case .noteData(.analysis, _, let a)? = next.actions.first else { Issue.record("no analysis event"); return }
        #expect(a["analysis"]?["verdict"] == "pass" && a["analysis"]?["candidate"]?["requests"] == 15)
        w.feed(.weightsSet(25))
        w.window(candidate: Self.figures(20))
        #expect(w.window(candidate: Self.figures(20)).actions.last == .setWeights(100))
        let live = w.feed(.weightsSet(100))
        #expect(live.status == .live)
        #expect(live.actions.map(T.kind) == ["note", "setRegistry", "transition:switched", "closePrevious", "report:register", "scheduleRetire", "report:done"])
        let percents = w.log.flatMap { d in d.actions.compactMap { a -> Double? in
            if case .reportData(_, _, let p, _) = a { return p }
            if case .report(_, _, let p) = a { return p }
            return nil
        } }
        #expect(percents == percents.sorted())
    }

    @Test func tooFewRequestsAtTheEndOfThePauseWaitThenAbort() {
        var w = Walk(Self.plan())
        w.feed(.baseline(T.good))
        w.feed(.weightsSet(5))
        w.window(candidate: Self.figures(10))
        // Pause over with 20 of 30 requests: it waits, saying so.
        let waiting = w.window(candidate: Self.figures(10))
        #expect(waiting.status == .canary && waiting.message == "inconclusive: 20 of 30 requests at 5%")
        #expect(waiting.actions.last == .measureAnalysis(afterMs: 10_000))
        // No traffic at all: inconclusive windows, never a pass.
        for _ in 0..<5 {
            let d = w.window(candidate: .none, stable: .none)
            #expect(d.status == .canary && d.message.hasPrefix("inconclusive: 0 of 10 requests"))
        }
        // 60 s after it became inconclusive: aborted.
        let aborted = w.window(candidate: .none, stable: .none)
        #expect(aborted.status == .aborted)
        guard case .abort(let f)? = aborted.actions.first(where: { if case .abort = $0 { true } else { false } }) else {
            Issue.record("no abort"); return
        }
        #expect(f.reason == .analysisInconclusive)
    }

    @Test func failedIntervalsInARowAbortAndAPassResetsThem() {
        var c = Self.config
        c.pauseSeconds = 100
        var w = Walk(Self.plan(c))
        w.feed(.baseline(T.good))
        w.feed(.weightsSet(5))
        let bad = Self.figures(20, errors: 10)
        #expect(w.window(candidate: bad).status == .canary && w.s.canary.failures == 1)
        w.window(candidate: Self.figures(20))
        #expect(w.s.canary.failures == 0)
        w.window(candidate: bad)
        let d = w.window(candidate: bad)
        #expect(d.status == .aborted)
        #expect(d.actions.map(T.kind) == ["note", "report:analysis", "abort:analysis_failed", "report:abort"])
        guard case .abort(let f)? = d.actions.dropLast().last else { Issue.record("no abort"); return }
        #expect(f.message.contains("2 intervals in a row at 5%") && f.message.contains("error rate 50%"), "\(f.message)")
    }

    @Test func latencyOverTheRatioFailsOnlyAboveTheNoiseFloor() {
        var w = Walk(Self.plan())
        w.feed(.baseline(T.good))
        w.feed(.weightsSet(5))
        // 3x slower but only 20 ms more: noise.
        w.window(candidate: Self.figures(20, p95: 30), stable: Self.figures(100, p95: 10))
        #expect(w.s.canary.failures == 0)
        w.window(candidate: Self.figures(40, p95: 300), stable: Self.figures(100, p95: 10))
        #expect(w.s.canary.failures == 1)
    }

    @Test func aSlowP95OnFewRequestsWaitsForTheNextIntervalInsteadOfFailing() {
        // Measured: a healthy candidate at 5 % under heavy load, one request that waited for a core.
        var w = Walk(Self.plan())
        w.feed(.baseline(T.good))
        w.feed(.weightsSet(5))
        let d = w.window(candidate: Self.figures(25, p95: 257), stable: Self.figures(400, p95: 64))
        #expect(d.status == .canary && w.s.canary.failures == 0)
        #expect(d.message.hasPrefix("inconclusive: p95 257 ms") && d.message.contains("on 25 requests"), "\(d.message)")
        // It does not advance on that interval: the pause is over, yet the step waits for a passing one.
        w.advance(20)
        #expect(w.window(candidate: Self.figures(25, p95: 257), stable: Self.figures(400, p95: 64)).actions.contains(.setWeights(25)) == false)
        // The next interval is fine: the canary goes on to 25 %.
        #expect(w.window(candidate: Self.figures(25, p95: 60), stable: Self.figures(400, p95: 64)).actions.contains(.setWeights(25)))
    }

    @Test func aSlowCandidateOnFewRequestsNeverAdvancesAndIsAbortedAsInconclusive() {
        var w = Walk(Self.plan())
        w.feed(.baseline(T.good))
        w.feed(.weightsSet(5))
        var last = w.window(candidate: Self.figures(25, p95: 400), stable: Self.figures(400, p95: 20))
        while last.status == .canary {
            #expect(!last.actions.contains(.setWeights(25)))
            last = w.window(candidate: Self.figures(25, p95: 400), stable: Self.figures(400, p95: 20))
        }
        #expect(last.status == .aborted && w.s.now.timeIntervalSince1970 <= 10 + 60 + 10)
        guard case .abort(let f)? = last.actions.dropLast().last else { Issue.record("no abort"); return }
        #expect(f.reason == .analysisInconclusive)
    }

    @Test func onFewRequestsTheErrorRateStillFails() {
        var w = Walk(Self.plan())
        w.feed(.baseline(T.good))
        w.feed(.weightsSet(5))
        w.window(candidate: Self.figures(25, errors: 8, p95: 400), stable: Self.figures(400, p95: 20))
        let d = w.window(candidate: Self.figures(25, errors: 8, p95: 400), stable: Self.figures(400, p95: 20))
        #expect(d.status == .aborted)
        guard case .abort(let f)? = d.actions.dropLast().last else { Issue.record("no abort"); return }
        #expect(f.reason == .analysisFailed && f.message.contains("error rate 32%"), "\(f.message)")
    }

    @Test func stepGatesWaitForApproval() {
        var c = Self.config
        c.stepGates = true
        var w = Walk(Self.plan(c))
        w.feed(.baseline(T.good))
        w.feed(.weightsSet(5))
        w.window(candidate: Self.figures(15))
        let gate = w.window(candidate: Self.figures(15))
        #expect(gate.status == .awaitingStep && gate.actions.contains(.transition(.awaitStep)))
        #expect(!gate.actions.contains { if case .setWeights = $0 { true } else { false } })
        let approved = w.feed(.approved)
        #expect(approved.status == .canary && approved.actions.first == .transition(.approve(gate: .step)) && approved.actions.last == .setWeights(25))
    }

    @Test func rejectingAStepGateOrAbortingStopsTheCanary() {
        var w = Walk(Self.plan(), status: .awaitingStep)
        let d = w.feed(.rejected)
        #expect(d.status == .aborted && d.actions.first == .abort(Failure(.aborted, step: .stepGate, "rejected at gate step")))
        var x = Walk(Self.plan())
        x.feed(.baseline(T.good))
        x.feed(.weightsSet(5))
        let a = x.feed(.abort("bad idea"))
        #expect(a.status == .aborted && a.actions.first == .abort(Failure(.aborted, step: .abort, "bad idea")))
    }

    @Test func thePromotionGateComesBeforeTheFirstStep() {
        var w = Walk(Self.plan(gate: true))
        #expect(w.feed(.baseline(T.good)).status == .awaitingPromotion)
        let d = w.feed(.approved)
        #expect(d.status == .canary && d.actions.first == .transition(.startCanary) && d.actions.last == .setWeights(5))
    }

    @Test func expiredStepGatePutsTrafficBackOnStable() {
        var s = Walk(Self.plan(), status: .awaitingStep).s
        #expect(Machine.next(s, .timerFired).isIgnored)
        s.gateExpired = true
        let d = Machine.next(s, .timerFired)
        #expect(d.status == .expired && d.actions.map(T.kind) == ["restoreRoute", "stopSlot:new", "expire"])
    }
}

@Suite struct AnalysisTests {
    let limits = AnalysisLimits(minRequests: 20, maxErrorRateDelta: 0.05, maxP95Ratio: 2, minP95DeltaMs: 50)

    @Test func belowMinRequestsIsInconclusiveOnEitherSide() {
        let r = Analysis.compare(stable: WindowFigures(requests: 100, errors: 0, p95Ms: 5), candidate: WindowFigures(requests: 19, errors: 19, p95Ms: 500), limits: limits)
        #expect(r.verdict == .inconclusive && r.message.hasPrefix("inconclusive: 19 of 20"))
        #expect(Analysis.compare(stable: WindowFigures(requests: 3, errors: 0, p95Ms: 5), candidate: WindowFigures(requests: 30, errors: 0, p95Ms: 5), limits: limits).verdict == .inconclusive)
    }

    @Test func errorRateIsRelativeToStable() {
        // Both versions fail 10%: the candidate is no worse.
        #expect(Analysis.compare(stable: WindowFigures(requests: 100, errors: 10, p95Ms: 5), candidate: WindowFigures(requests: 50, errors: 5, p95Ms: 5), limits: limits).verdict == .pass)
        let r = Analysis.compare(stable: WindowFigures(requests: 100, errors: 0, p95Ms: 5), candidate: WindowFigures(requests: 50, errors: 5, p95Ms: 5), limits: limits)
        #expect(r.verdict == .fail && r.regression == .errorRateRegression)
        #expect(r.toJSON()["candidate"] == ["requests": 50, "errors": 5, "error_rate": 0.1, "p95_ms": 5.0])
    }

    /// A stable version that answered nothing is no baseline: a candidate failing everything fails (it used to
    /// pass, 100 % against 100 %: on Kubernetes, probes the API server refuses to both versions), a working
    /// one passes on its own figures.
    @Test func aStableVersionThatAnsweredNothingIsNoBaseline() {
        let dead = WindowFigures(requests: 40, errors: 40, p95Ms: 2)
        let r = Analysis.compare(stable: dead, candidate: WindowFigures(requests: 40, errors: 40, p95Ms: 2), limits: limits)
        #expect(r.verdict == .fail && r.regression == .errorRateRegression)
        #expect(r.message.contains("answered none of its 40 requests"), "\(r.message)")
        #expect(Analysis.compare(stable: dead, candidate: WindowFigures(requests: 40, errors: 1, p95Ms: 9), limits: limits).verdict == .pass)
        #expect(Analysis.compare(stable: dead, candidate: WindowFigures(requests: 40, errors: 3, p95Ms: 9), limits: limits).verdict == .fail)
    }

    @Test func latencyNeedsTheRatioAndTheFloor() {
        func v(_ s: Double, _ c: Double) -> AnalysisVerdict {
            Analysis.compare(stable: WindowFigures(requests: 50, errors: 0, p95Ms: s), candidate: WindowFigures(requests: 50, errors: 0, p95Ms: c), limits: limits).verdict
        }
        #expect(v(10, 55) == .pass)  // 5.5x but 45 ms: noise
        #expect(v(10, 61) == .fail)
        #expect(v(200, 390) == .pass)  // 190 ms more but under 2x
        #expect(v(200, 401) == .fail)
        // A p95 over the limits is only a regression on enough requests on both sides.
        func few(_ c: Int, _ st: Int) -> AnalysisResult {
            Analysis.compare(stable: WindowFigures(requests: st, errors: 0, p95Ms: 10), candidate: WindowFigures(requests: c, errors: 0, p95Ms: 300), limits: limits)
        }
        #expect(few(Analysis.minLatencySamples - 1, 500).verdict == .inconclusive)
        #expect(few(500, Analysis.minLatencySamples - 1).verdict == .inconclusive)
        #expect(few(Analysis.minLatencySamples, Analysis.minLatencySamples).verdict == .fail)
        // A p95 within the limits passes on few requests (min_requests still applies).
        #expect(Analysis.compare(stable: WindowFigures(requests: 400, errors: 0, p95Ms: 10), candidate: WindowFigures(requests: 20, errors: 0, p95Ms: 12), limits: limits).verdict == .pass)
        // No logged latency on one side: only the error rate is judged.
        #expect(Analysis.compare(stable: WindowFigures(requests: 50, errors: 0, p95Ms: nil), candidate: WindowFigures(requests: 50, errors: 0, p95Ms: 900), limits: limits).verdict == .pass)
    }
}

@Suite struct CanaryConfigTests {
    @Test func defaultsAreTheContracts() {
        let c = CanaryConfig.defaults
        #expect(c.steps == [5, 25, 50, 100] && c.pauseSeconds == 30 && c.minRequests == 50 && c.maxInconclusiveSeconds == 600 && !c.stepGates)
        #expect(c.analysis == AnalysisLimits(intervalSeconds: 10, failureLimit: 2, minRequests: 20, maxErrorRateDelta: 0.05, maxP95Ratio: 2, minP95DeltaMs: 50))
    }

    @Test func membersOverrideOneByOneAndRoundTrip() throws {
        let c = try CanaryConfig.defaults.applying(["steps": [10, 100], "analysis": ["failure_limit": 3]])
        #expect(c.steps == [10, 100] && c.analysis.failureLimit == 3 && c.analysis.intervalSeconds == 10 && c.pauseSeconds == 30)
        #expect(try CanaryConfig(json: c.toJSON()) == c)
    }

    @Test func badSettingsNameTheMember() {
        func error(_ j: JSONValue) -> String? {
            do { _ = try CanaryConfig.defaults.applying(j); return nil } catch { return error.description }
        }
        #expect(error(["steps": [5, 5, 100]]) == "canary.steps: weights must be strictly increasing")
        #expect(error(["steps": [5, 50]]) == "canary.steps: the last weight must be 100")
        #expect(error(["steps": []]) == "canary.steps: must have 1 to 10 weights")
        #expect(error(["steps": [0, 100]]) == "canary.steps[0]: must be between 1 and 100")
        #expect(error(["pause_seconds": 0]) == "canary.pause_seconds: must be between 1 and 3600")
        #expect(error(["analysis": ["max_p95_ratio": 0.5]]) == "canary.analysis.max_p95_ratio: must be between 1.0 and 100.0")
        #expect(error(["speed": 1])?.contains("speed") == true)
        #expect(error(["analysis": ["x": 1]])?.contains("x") == true)
    }

    @Test func canaryPlansEchoTheirSettings() throws {
        var env = EnvironmentPolicy(name: "staging")
        env.canary = try CanaryConfig.defaults.applying(["pause_seconds": 5])
        var input = Fixtures.input(environment: "staging", strategy: .canary, live: Fixtures.live())
        input.policy = env
        input.routerSplitsTraffic = true
        input.canary = ["steps": [20, 100], "step_gates": true]
        let plan = try Fixtures.plan(input)
        #expect(plan.strategy == .canary)
        #expect(plan.config.canary?.steps == [20, 100] && plan.config.canary?.pauseSeconds == 5 && plan.config.canary?.stepGates == true)
        #expect(plan.toJSON()["config"]?["canary"]?["steps"] == [20, 100])
        #expect(plan.steps.suffix(5) == ["canary_step:20", "gate:step", "canary_step:100", "register", "retire_previous"])
        #expect(plan.gates.map(\.kind).contains(.step))
        #expect(try DeploymentPlan(json: plan.toJSON()) == plan)
        // A blue-green plan has no canary member (its hash is as before).
        var bg = Fixtures.input(environment: "staging", live: Fixtures.live())
        bg.routerSplitsTraffic = true
        #expect(try Fixtures.plan(bg).toJSON()["config"]?["canary"] == nil)
        bg.canary = ["steps": [100]]
        #expect(Fixtures.refusal(bg)?.field == "canary")
        input.canary = ["steps": [50, 20, 100]]
        #expect(Fixtures.refusal(input)?.reason == "invalid_params")
    }

    @Test func autoPicksCanaryOnlyWherThePolicySaysSo() throws {
        var input = Fixtures.input(environment: "staging", live: Fixtures.live())
        input.routerSplitsTraffic = true
        #expect(try Fixtures.plan(input).strategy == .blueGreen)
        input.policy.defaultStrategy = .canary
        #expect(try Fixtures.plan(input).strategy == .canary)
        input.routerSplitsTraffic = false
        #expect(try Fixtures.plan(input).strategy == .blueGreen)
        let policy = try ApprovalPolicy(json: ["environments": ["staging": ["default_strategy": "canary", "canary": ["steps": [50, 100]]]]])
        #expect(policy.environment("staging")?.defaultStrategy == .canary && policy.environment("staging")?.canary.steps == [50, 100])
        #expect(throws: PolicyError.self) { try ApprovalPolicy(json: ["environments": ["staging": ["canary": ["steps": [50]]]]]) }
        #expect(throws: PolicyError.self) { try ApprovalPolicy(json: ["environments": ["staging": ["gates": ["step"]]]]) }
    }
}
