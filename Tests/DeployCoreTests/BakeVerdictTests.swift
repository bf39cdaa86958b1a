import DeployCore
import Testing

@Suite struct BakeVerdictTests {
    let baseline = Metrics(p50Ms: 2, p95Ms: 4, p99Ms: 6, errorRate: 0, rps: 300)
    let policy = RollbackPolicy(errorRateFactor: 2, latencyFactor: 1.5, minErrorRate: 0.01, latencyFloorMs: 50)

    @Test func healthyWithinNoise() {
        let observed = Metrics(p50Ms: 3, p95Ms: 9, p99Ms: 20, errorRate: 0.005, rps: 280)
        #expect(BakeVerdict.evaluate(baseline: baseline, observed: observed, policy: policy) == .healthy)
        #expect(Verdict.evaluate(baseline: baseline, observed: observed, policy: policy) == .healthy)
    }

    @Test func errorRateRegression() {
        let observed = Metrics(p50Ms: 2, p95Ms: 4, p99Ms: 6, errorRate: 0.2, rps: 300)
        guard case .rollback(let reason, let message) = BakeVerdict.evaluate(baseline: baseline, observed: observed, policy: policy) else {
            Issue.record("expected a rollback")
            return
        }
        #expect(reason == .errorRateRegression && reason.wireName == "error_rate_regression")
        #expect(message.contains("20%"))
    }

    @Test func errorRateUsesTheBaselineFactorAboveTheFloor() {
        let noisy = Metrics(p50Ms: 2, p95Ms: 4, p99Ms: 6, errorRate: 0.05, rps: 300)
        #expect(BakeVerdict.errorRateThreshold(baseline: noisy, policy: policy) == 0.1)
        #expect(BakeVerdict.evaluate(baseline: noisy, observed: Metrics(p50Ms: 2, p95Ms: 4, p99Ms: 6, errorRate: 0.09, rps: 1), policy: policy) == .healthy)
        #expect(BakeVerdict.evaluate(baseline: noisy, observed: Metrics(p50Ms: 2, p95Ms: 4, p99Ms: 6, errorRate: 0.11, rps: 1), policy: policy)
            != .healthy)
    }

    @Test func latencyRegression() {
        let slow = Metrics(p50Ms: 40, p95Ms: 120, p99Ms: 200, errorRate: 0, rps: 100)
        guard case .rollback(let reason, _) = BakeVerdict.evaluate(baseline: baseline, observed: slow, policy: policy) else {
            Issue.record("expected a rollback")
            return
        }
        #expect(reason == .latencyRegression && reason.wireName == "latency_regression")
        // A slow baseline uses the factor: 200 ms x 1.5 = 300 ms.
        let slowBase = Metrics(p50Ms: 100, p95Ms: 200, p99Ms: 300, errorRate: 0, rps: 10)
        #expect(BakeVerdict.latencyThreshold(baseline: slowBase, policy: policy) == 300)
        #expect(BakeVerdict.evaluate(baseline: slowBase, observed: Metrics(p50Ms: 100, p95Ms: 290, p99Ms: 300, errorRate: 0, rps: 10), policy: policy) == .healthy)
    }

    @Test func dictionaryRoundTrip() {
        let d = baseline.dictionary
        #expect(Set(d.keys) == Set(Metrics.keys))
        #expect(Metrics(dictionary: d) == baseline)
        #expect(Metrics(json: baseline.toJSON()) == baseline)
        #expect(Metrics(dictionary: [:]) == Metrics(p50Ms: 0, p95Ms: 0, p99Ms: 0, errorRate: 0, rps: 0))
    }
}

@Suite struct RollbackDecisionTests {
    let live = Fixtures.live(version: "v2", slot: .green, id: "dep-2")

    @Test func warmPreviousIsOneSwitch() {
        let facts = RollbackFacts(live: live, previousVersion: "v1", previousSlot: .blue, previousWarm: true, history: ["v1"])
        #expect(RollbackDecision.decide(facts, toVersion: nil) == .switchToWarm(slot: .blue))
        #expect(RollbackDecision.decide(facts, toVersion: "v1") == .switchToWarm(slot: .blue))
    }

    @Test func coldPreviousOrOlderVersionRedeploys() {
        let cold = RollbackFacts(live: live, previousVersion: "v1", previousSlot: .blue, previousWarm: false, history: ["v1", "v0"])
        #expect(RollbackDecision.decide(cold, toVersion: nil) == .redeploy(version: "v1"))
        let warm = RollbackFacts(live: live, previousVersion: "v1", previousSlot: .blue, previousWarm: true, history: ["v1", "v0"])
        #expect(RollbackDecision.decide(warm, toVersion: "v0") == .redeploy(version: "v0"))
    }

    @Test func refusals() {
        func reason(_ d: RollbackDecision) -> String? {
            if case .refuse(let r, _) = d { return r.rawValue }
            return nil
        }
        #expect(reason(RollbackDecision.decide(RollbackFacts(live: nil), toVersion: nil)) == "nothing_to_roll_back")
        #expect(reason(RollbackDecision.decide(RollbackFacts(live: live), toVersion: nil)) == "nothing_to_roll_back")
        let facts = RollbackFacts(live: live, previousVersion: "v1", previousSlot: .blue, previousWarm: true, history: ["v1"])
        #expect(reason(RollbackDecision.decide(facts, toVersion: "v2")) == "already_live")
        #expect(reason(RollbackDecision.decide(facts, toVersion: "v9")) == "version_not_in_history")
        #expect(RollbackRefusal.alreadyLive.wireReason == "nothing_to_roll_back")
    }

    /// v1 -> v2 -> rollback to v1 makes v2 the registry's previous, warm; a second rollback must not
    /// bring it back (that would re-promote the version just rolled back, ungated).
    @Test func aRolledBackVersionIsNoRollbackTarget() {
        func reason(_ d: RollbackDecision) -> String? {
            if case .refuse(let r, _) = d { return r.rawValue }
            return nil
        }
        let v1Live = Fixtures.live(version: "v1", slot: .blue, id: "rb-1")
        let undoneWarm = RollbackFacts(live: v1Live, previousVersion: "v2", previousSlot: .green, previousWarm: true,
                                       previousHealthy: false, history: [], unhealthy: ["v2": "it was rolled back"])
        #expect(reason(RollbackDecision.decide(undoneWarm, toVersion: nil)) == "rollback_target_unhealthy")
        #expect(reason(RollbackDecision.decide(undoneWarm, toVersion: "v2")) == "rollback_target_unhealthy")
        // A previous deployment that was rolled back is refused even when history knows nothing of it.
        let bare = RollbackFacts(live: v1Live, previousVersion: "v2", previousSlot: .green, previousWarm: true, previousHealthy: false)
        #expect(reason(RollbackDecision.decide(bare, toVersion: nil)) == "rollback_target_unhealthy")
        // An older healthy version is still a redeploy target; the unhealthy one is named, not "never live".
        let mixed = RollbackFacts(live: live, previousVersion: "v1", previousSlot: .blue, previousWarm: true,
                                  history: ["v1", "v0"], unhealthy: ["v-bad": "its newest deployment here ended failed"])
        #expect(RollbackDecision.decide(mixed, toVersion: "v0") == .redeploy(version: "v0"))
        #expect(reason(RollbackDecision.decide(mixed, toVersion: "v-bad")) == "rollback_target_unhealthy")
        #expect(RollbackDecision.decide(mixed, toVersion: nil) == .switchToWarm(slot: .blue))
    }
}
