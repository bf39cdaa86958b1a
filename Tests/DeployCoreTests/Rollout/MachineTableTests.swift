#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Testing
@testable import DeployCore

/// Every status x event pair of the rollout machine: the pairs that act are listed with the status they
/// lead to and the actions' shape; every other pair must be ignored (status kept, no actions).
@Suite struct MachineTableTests {
    static let plan = RolloutPlan(strategy: .blueGreen, version: "v2", slot: "green", hasSmokeTests: true, hasPromotionGate: false,
                                  rollback: RollbackPolicy(bakeSeconds: 10, keepWarmSeconds: 60))
    static let good = Metrics(p50Ms: 1, p95Ms: 1, p99Ms: 1, errorRate: 0, rps: 1)

    static func snapshot(_ status: DeploymentStatus, step: Step? = nil, plan: RolloutPlan = plan) -> Snapshot {
        let defaultStep: Step = switch status {
        case .live: .bake
        case .awaitingPromotion: .promotionGate
        case .awaitingApproval: .deployGate
        default: .execute
        }
        return Snapshot(status: status, step: step ?? defaultStep, plan: plan, hasPrevious: true, hasWarmPrevious: true,
                        registryNamesThis: false, baseline: good, bakeEndsAt: Date(timeIntervalSince1970: 100),
                        now: Date(timeIntervalSince1970: 0))
    }

    /// A compact spelling of an action (kind only), so the table reads as a list.
    static func kind(_ a: RolloutAction) -> String {
        switch a {
        case .transition(let e): return "transition:\(e.name)"
        case .startSlot: return "startSlot"
        case .probeReadiness: return "probeReadiness"
        case .runSmokeTests: return "runSmokeTests"
        case .measureBaseline: return "measureBaseline"
        case .route(let r): return "route:\(r.rawValue)"
        case .restoreRoute: return "restoreRoute"
        case .setRegistry: return "setRegistry"
        case .closePrevious: return "closePrevious"
        case .stopSlot(let r): return "stopSlot:\(r.rawValue)"
        case .scheduleRetire: return "scheduleRetire"
        case .measureBake: return "measureBake"
        case .recordRollback(let cause): return "recordRollback:\(cause?.reason.wireName ?? "asked")"
        case .recordFailedRollback(let f): return "recordFailedRollback:\(f.reason.wireName)"
        case .retireUndone: return "retireUndone"
        case .fail(let f): return "fail:\(f.reason.wireName)"
        case .expire: return "expire"
        case .interrupt: return "interrupt"
        case .note: return "note"
        case .report(let step, _, _): return "report:\(step.wireName)"
        case .noteData: return "note"
        case .reportData(let step, _, _, _): return "report:\(step.wireName)"
        case .setWeights: return "setWeights"
        case .measureAnalysis: return "measureAnalysis"
        case .abort(let f): return "abort:\(f.reason.wireName)"
        }
    }

    static let interrupted = (DeploymentStatus.interrupted, ["interrupt"])

    /// The pairs that act: (status, event name) -> (next status, action kinds).
    static let acting: [String: (DeploymentStatus, [String])] = [
        "planned/execute": (.deploying, ["transition:execute", "report:execute", "report:start_slot", "startSlot"]),
        "approved/execute": (.deploying, ["transition:execute", "report:execute", "report:start_slot", "startSlot"]),
        "awaiting_approval/approved": (.approved, ["transition:approve:deploy"]),
        "awaiting_approval/rejected": (.rejected, ["transition:reject:deploy"]),
        "awaiting_promotion/approved": (.switching, ["transition:approve:promote", "report:switch", "route:new"]),
        "awaiting_promotion/rejected": (.rejected, ["stopSlot:new", "transition:reject:promote"]),
        "deploying/slot_started": (.deploying, ["report:readiness", "probeReadiness"]),
        "deploying/slot_start_failed": (.failed, ["fail:slot_start_failed", "report:start_slot"]),
        "deploying/ready": (.validating, ["transition:slot_ready", "report:smoke_tests", "runSmokeTests"]),
        "deploying/not_ready": (.failed, ["fail:readiness_failed", "report:readiness"]),
        "deploying/cancelled": interrupted, "deploying/owner_gone": interrupted,
        "validating/smoke:true": (.validating, ["report:baseline", "measureBaseline"]),
        "validating/smoke:false": (.failed, ["fail:smoke_test_failed", "report:smoke_tests"]),
        "validating/baseline:healthy": (.switching, ["transition:validated", "report:switch", "route:new"]),
        "validating/baseline:unhealthy": (.failed, ["fail:baseline_unhealthy", "report:baseline"]),
        "validating/cancelled": interrupted, "validating/owner_gone": interrupted,
        "switching/switched": (.live, ["setRegistry", "transition:switched", "closePrevious", "report:register", "report:bake", "measureBake"]),
        "switching/switch_failed": (.failed, ["restoreRoute", "fail:switch_failed", "report:switch"]),
        "switching/cancelled": interrupted, "switching/owner_gone": interrupted,
        "live/bake_window:healthy": (.live, ["note", "report:bake_window", "measureBake"]),
        "live/bake_window:regressed": (.live, ["note", "report:bake_window", "note", "measureBake"]),
        "live/bake_window:dead": (.live, ["note", "route:previous"]),
        "live/roll_back": (.live, ["route:previous"]),
        "live/bake_window:gone": (.live, ["note"]),
        "live/cancelled": (.live, ["note", "scheduleRetire", "report:done"]),
        "canary/weights_set:5": (.canary, ["note", "report:canary_step", "measureAnalysis"]),
        "canary/weights_set:100": (.live, ["note", "setRegistry", "transition:switched", "closePrevious", "report:register", "scheduleRetire", "report:done"]),
        "canary/weights_failed": (.failed, ["restoreRoute", "fail:switch_failed", "report:canary_step"]),
        "canary/analysis_window:pass": (.canary, ["note", "report:analysis", "measureAnalysis"]),
        "canary/analysis_window:fail": (.canary, ["note", "report:analysis", "measureAnalysis"]),
        "canary/analysis_window:inconclusive": (.canary, ["note", "report:analysis", "measureAnalysis"]),
        "canary/analysis_window:dead": (.aborted, ["abort:slot_died", "report:abort"]),
        "canary/abort": (.aborted, ["abort:aborted", "report:abort"]),
        "canary/cancelled": (.interrupted, ["restoreRoute", "interrupt"]), "canary/owner_gone": (.interrupted, ["restoreRoute", "interrupt"]),
        "awaiting_step/approved": (.canary, ["transition:approve:step", "report:canary_step", "setWeights"]),
        "awaiting_step/rejected": (.aborted, ["abort:aborted", "report:abort"]),
        "awaiting_step/abort": (.aborted, ["abort:aborted", "report:abort"]),
    ]

    static func key(_ e: RolloutEvent) -> String {
        switch e {
        case .smoke(let passed, _): return "smoke:\(passed)"
        case .baseline(let m): return m.errorRate > 0.5 ? "baseline:unhealthy" : "baseline:healthy"
        case .bakeWindow(let m, let alive, let live, _):
            return !live ? "bake_window:gone" : !alive ? "bake_window:dead" : m.errorRate > 0.5 ? "bake_window:regressed" : "bake_window:healthy"
        case .weightsSet(let w): return "weights_set:\(w)"
        case .analysisWindow(let r, let alive): return alive ? "analysis_window:\(r.verdict.rawValue)" : "analysis_window:dead"
        default: return e.name
        }
    }

    @Test(arguments: DeploymentStatus.allCases)
    func everyEventInStatus(_ status: DeploymentStatus) {
        for event in RolloutEvent.all {
            let d = Machine.next(Self.snapshot(status), event)
            let name = "\(status.rawValue)/\(Self.key(event))"
            if let (to, kinds) = Self.acting[name] {
                #expect(!d.isIgnored, "\(name)")
                #expect(d.status == to, "\(name)")
                #expect(d.actions.map(Self.kind) == kinds, "\(name)")
            } else {
                #expect(d.isIgnored, "\(name) should be ignored, got \(d.actions.map(Self.kind))")
                #expect(d.status == status && d.actions.isEmpty, "\(name)")
            }
        }
    }

    @Test func everyActingPairExists() {
        let reachable = Set(DeploymentStatus.allCases.flatMap { s in RolloutEvent.all.map { "\(s.rawValue)/\(Self.key($0))" } })
        #expect(Set(Self.acting.keys).isSubset(of: reachable))
    }

    @Test func progressNeverGoesBackAlongTheHappyPath() {
        var s = Self.snapshot(.planned)
        var seen: [Double] = []
        for event: RolloutEvent in [.execute, .slotStarted, .ready, .smoke(passed: true, detail: ""), .baseline(Self.good), .switched] {
            let d = Machine.next(s, event)
            for case .report(_, _, let p) in d.actions { seen.append(p) }
            s.status = d.status
            s.step = d.step
        }
        #expect(seen == seen.sorted() && seen.first == 5 && seen.last == 90)
    }
}
