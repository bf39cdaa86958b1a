#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Testing
@testable import DeployCore

/// The machine's rules beyond the table: gates and their expiry, owner gone after the switch, the bake's
/// strikes and its end, strategy differences.
@Suite struct MachineRuleTests {
    typealias T = MachineTableTests
    static let t0 = Date(timeIntervalSince1970: 0)

    func bake(_ s: Snapshot, errorRate: Double) -> Decision {
        Machine.next(s, .bakeWindow(observed: Metrics(p50Ms: 1, p95Ms: 1, p99Ms: 1, errorRate: errorRate, rps: 1), slotAlive: true, stillLive: true))
    }

    @Test func gateExpiryOnlyWhenTheWindowClosed() {
        var s = T.snapshot(.awaitingApproval)
        #expect(Machine.next(s, .timerFired).isIgnored)
        s.gateExpired = true
        let d = Machine.next(s, .timerFired)
        #expect(d.status == .expired)
        #expect(d.actions == [.expire(Failure(.approvalExpired, step: .deployGate, "the approval window closed"))])
        var p = T.snapshot(.awaitingPromotion)
        p.gateExpired = true
        let e = Machine.next(p, .timerFired)
        #expect(e.status == .expired && e.actions.map(T.kind) == ["stopSlot:new", "expire"])
    }

    @Test func ownerGoneAfterTheSwitchFinishesIt() {
        var s = T.snapshot(.switching)
        s.registryNamesThis = true
        let d = Machine.next(s, .ownerGone)
        #expect(d.status == .live && d.actions == [.transition(.switched)])
        // Cancellation is never taken for a finished switch: only the owner's absence is.
        #expect(Machine.next(s, .cancelled).status == .interrupted)
    }

    @Test func oneSlowWindowIsNoise() {
        var s = T.snapshot(.live)
        let first = bake(s, errorRate: 0.9)
        #expect(first.bakeStrikes == 1 && first.status == .live)
        s.bakeStrikes = first.bakeStrikes
        let healthy = bake(s, errorRate: 0)
        #expect(healthy.bakeStrikes == 0 && healthy.actions.map(T.kind) == ["note", "report:bake_window", "measureBake"])
        #expect(healthy.actions.last == .measureBake(afterMs: Machine.bakeIntervalMs))
        // Each window is noted in the ledger and reported, with its limits.
        guard case .note(.bakeWindow, let noted)? = healthy.actions.first, case .report(.bakeWindow, let message, let percent)? = healthy.actions.dropFirst().first else {
            Issue.record("no bake window report")
            return
        }
        #expect(message.hasPrefix("bake window: error rate 0%") && message.contains("(limit ") && message.contains("p95"))
        #expect(noted == message)
        #expect(percent >= Step.bake.progress && percent < 100)
    }

    @Test func twoRegressedWindowsRollBackToWarm() {
        var s = T.snapshot(.live)
        s.bakeStrikes = 1
        let d = bake(s, errorRate: 0.9)
        #expect(d.step == .rollback && d.actions.last == .route(.previous))
        let cause = try! #require(d.rollbackCause)
        #expect(cause.reason == .errorRateRegression && cause.step == .bake)
        var after = s
        after.step = .rollback
        after.rollbackCause = cause
        let back = Machine.next(after, .switched)
        #expect(back.status == .rolledBack && back.actions.map(T.kind) == ["recordRollback:error_rate_regression", "report:rollback", "retireUndone"])
        let failed = Machine.next(after, .switchFailed(.switchUnverified, "no answer"))
        #expect(failed.status == .live && failed.actions.map(T.kind) == [
            "restoreRoute", "recordFailedRollback:switch_unverified", "note", "scheduleRetire", "report:done",
        ])
    }

    @Test func aPersonsRollbackIsOneSwitchBack() {
        var s = T.snapshot(.live, step: .done)
        let d = Machine.next(s, .rollBack)
        #expect(d.step == .rollback && d.actions == [.route(.previous)] && d.rollbackCause == nil)
        s.step = .rollback
        #expect(Machine.next(s, .switched).actions.map(T.kind) == ["recordRollback:asked", "report:rollback", "retireUndone"])
        let failed = Machine.next(s, .switchFailed(.switchFailed, "nginx -t failed"))
        #expect(failed.status == .live && failed.actions.map(T.kind) == ["restoreRoute", "recordFailedRollback:switch_failed"])
        // Without a warm previous version there is nothing to switch back to.
        var cold = T.snapshot(.live, step: .done)
        cold.hasWarmPrevious = false
        #expect(Machine.next(cold, .rollBack).isIgnored)
    }

    @Test func regressionWithoutAWarmPreviousStaysLive() {
        var s = T.snapshot(.live)
        s.bakeStrikes = 1
        s.hasWarmPrevious = false
        let d = bake(s, errorRate: 0.9)
        #expect(d.status == .live && d.step == .done)
        #expect(!d.actions.contains(.route(.previous)))
    }

    @Test func bakePassesAtItsEnd() {
        var s = T.snapshot(.live)
        s.now = Date(timeIntervalSince1970: 100)
        let d = bake(s, errorRate: 0)
        #expect(d.step == .done && d.actions.map(T.kind) == ["note", "report:bake_window", "note", "scheduleRetire", "report:done"])
        #expect(d.progress == 100)
    }

    @Test func directStopsThePreviousSlotAtTheSwitch() {
        var plan = T.plan
        plan.strategy = .direct
        plan.rollback.bakeSeconds = 0
        let d = Machine.next(T.snapshot(.switching, plan: plan), .switched)
        #expect(d.actions.map(T.kind) == ["setRegistry", "transition:switched", "closePrevious", "report:register", "stopSlot:previous", "report:done"])
        var first = T.snapshot(.switching, plan: plan)
        first.hasPrevious = false
        #expect(!Machine.next(first, .switched).actions.contains(.stopSlot(.previous)))
    }

    @Test func blueGreenWithoutBakeKeepsThePreviousWarm() {
        var plan = T.plan
        plan.rollback.bakeSeconds = 0
        let d = Machine.next(T.snapshot(.switching, plan: plan), .switched)
        #expect(d.actions.contains(.scheduleRetire(seconds: 60)) && d.step == .done)
    }

    @Test func promotionGateParksAfterTheBaseline() {
        var plan = T.plan
        plan.hasPromotionGate = true
        let d = Machine.next(T.snapshot(.validating, plan: plan), .baseline(T.good))
        #expect(d.status == .awaitingPromotion && d.actions.map(T.kind) == ["transition:validated:promotion_gate", "report:gate:promote"])
    }

    @Test func noSmokeTestsGoStraightToTheBaseline() {
        var plan = T.plan
        plan.hasSmokeTests = false
        let d = Machine.next(T.snapshot(.deploying, plan: plan), .ready)
        #expect(d.actions.last == .measureBaseline)
    }

    @Test func switchUnverifiedKeepsItsReason() {
        let d = Machine.next(T.snapshot(.switching), .switchFailed(.switchUnverified, "no answer"))
        #expect(d.actions.first == .restoreRoute)
        #expect(d.actions.contains(.fail(Failure(.switchUnverified, step: .switchTraffic, "no answer"))))
    }

    @Test func failureReasonsHaveStableWireNames() {
        #expect(FailureReason.allCases.map(\.wireName) == [
            "slot_start_failed", "readiness_failed", "smoke_test_failed", "baseline_unhealthy", "slot_died", "switch_failed",
            "switch_unverified", "error_rate_regression", "latency_regression", "interrupted", "approval_expired",
            "analysis_failed", "analysis_inconclusive", "aborted",
        ])
    }
}
