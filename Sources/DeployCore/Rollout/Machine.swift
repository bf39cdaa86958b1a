/// The rollout as one pure function: (snapshot, event) -> (status, actions, progress, message).
///
/// ```
/// planned|approved   --execute-->      deploying  [transition(execute), startSlot]
/// deploying          --slotStarted-->  deploying  [probeReadiness]
/// deploying          --ready-->        validating [transition(slotReady), runSmokeTests | measureBaseline]
/// validating         --smoke ok-->     validating [measureBaseline]
/// validating         --baseline-->     awaiting_promotion [transition(validated gate)]
///                                    | switching  [transition(validated), route]
/// awaiting_promotion --approved-->     switching  [transition(approve promote), route]
/// switching          --switched-->     live       [setRegistry, transition(switched), closePrevious, <strategy>, bake | done]
/// live (bake)        --bakeWindow-->   live       [measureBake] | bake passed | route(previous)
/// live               --rollBack-->     live       [route(previous)] --switched--> rolled_back [recordRollback]
/// a failure event                   -> failed     [fail]         cancelled | ownerGone -> interrupted [interrupt]
/// awaiting_* --timerFired (expired)-> expired     awaiting_* --rejected-> rejected
/// ```
/// What happens after the switch and after the bake is the strategy's (``BlueGreen``, ``Direct``); a
/// canary strategy adds its weight steps in a file of its own (``Canary``). An event that does not apply in a status
/// is ignored: the decision keeps the status and has no actions.
public enum Machine {
    /// The decision for `event` in `snapshot`.
    public static func next(_ s: Snapshot, _ event: RolloutEvent) -> Decision {
        switch s.status {
        case .planned, .approved: return fromReady(s, event)
        case .awaitingApproval: return atGate(s, event, .deploy)
        case .awaitingPromotion: return atGate(s, event, .promote)
        case .deploying: return deploying(s, event)
        case .validating: return validating(s, event)
        case .switching: return switching(s, event)
        case .live: return s.step == .rollback || event == .rollBack ? rollingBack(s, event) : baking(s, event)
        case .canary: return Canary.running(s, event)
        case .awaitingStep: return Canary.atStepGate(s, event)
        case .rejected, .failed, .rolledBack, .interrupted, .superseded, .expired, .aborted, .stopped: return ignore(s, event)
        }
    }

    static func ignore(_ s: Snapshot, _ event: RolloutEvent) -> Decision {
        Decision(status: s.status, actions: [], step: s.step, progress: s.step.progress,
                 message: "\(event.name) does not apply to a deployment that is \(s.status.rawValue)", bakeStrikes: s.bakeStrikes,
                 ignored: true)
    }

    /// A step goes on: report it, then do `act`.
    static func go(_ status: DeploymentStatus, _ before: [RolloutAction], _ step: Step, _ message: String, _ act: [RolloutAction]) -> Decision {
        Decision(status: status, actions: before + [.report(step, message, step.progress)] + act, step: step, message: message)
    }

    static func fail(_ s: Snapshot, _ f: Failure) -> Decision {
        let message = "failed at \(f.step.wireName): \(f.message)"
        return Decision(status: .failed, actions: [.fail(f), .report(f.step, message, 100)], step: f.step, progress: 100, message: message)
    }

    static func interrupt(_ s: Snapshot, _ why: String) -> Decision {
        Decision(status: .interrupted, actions: [.interrupt(why)], step: .reconcile, progress: 100,
                 message: "interrupted: \(why); staging slot stopped, live untouched")
    }

    /// Cancellation and a vanished owner end every step before the switch the same way.
    static func stopped(_ s: Snapshot, _ event: RolloutEvent) -> Decision? {
        switch event {
        case .cancelled: return interrupt(s, "the execute request was cancelled")
        case .ownerGone: return interrupt(s, "its agent stopped while it was \(s.status.rawValue)")
        default: return nil
        }
    }

    static func fromReady(_ s: Snapshot, _ event: RolloutEvent) -> Decision {
        switch event {
        case .execute:
            let start: [RolloutAction] = [.transition(.execute),
                                          .report(.execute, "executing \(s.plan.strategy.rawValue) of \(s.plan.version)", Step.execute.progress)]
            return go(.deploying, start, .startSlot, "starting \(s.plan.version) in slot \(s.plan.slot)", [.startSlot])
        default: return ignore(s, event)
        }
    }

    static func expire(_ s: Snapshot, _ gate: GateKind) -> Decision {
        let f = Failure(.approvalExpired, step: .gate(gate), "the approval window closed")
        let stop: [RolloutAction] = gate == .promote ? [.stopSlot(.new)] : []
        return Decision(status: .expired, actions: stop + [.expire(f)], step: .expire, message: "gate \(gate.rawValue) expired without an answer")
    }

    static func atGate(_ s: Snapshot, _ event: RolloutEvent, _ gate: GateKind) -> Decision {
        switch event {
        case .approved where gate == .deploy:
            return Decision(status: .approved, actions: [.transition(.approve(gate: .deploy))], step: .deployGate, message: "approved at gate deploy")
        case .approved where s.plan.strategy == .canary:
            return Canary.begin(s, [.transition(.startCanary)])
        case .approved:
            return go(.switching, [.transition(.approve(gate: .promote))], .switchTraffic, "switching traffic to slot \(s.plan.slot)", [.route(.new)])
        case .rejected:
            let stop: [RolloutAction] = gate == .promote ? [.stopSlot(.new)] : []
            return Decision(status: .rejected, actions: stop + [.transition(.reject(gate: gate))], step: .gate(gate), progress: 100,
                            message: "rejected at gate \(gate.rawValue)")
        case .timerFired where s.gateExpired: return expire(s, gate)
        default: return ignore(s, event)
        }
    }

    static func deploying(_ s: Snapshot, _ event: RolloutEvent) -> Decision {
        if let d = stopped(s, event) { return d }
        switch event {
        case .slotStarted: return go(.deploying, [], .readiness, "waiting for the new slot to be ready", [.probeReadiness])
        case .slotStartFailed(let m): return fail(s, Failure(.slotStartFailed, step: .startSlot, m))
        case .ready where s.plan.hasSmokeTests:
            return go(.validating, [.transition(.slotReady)], .smokeTests, "running the smoke tests", [.runSmokeTests])
        case .ready: return go(.validating, [.transition(.slotReady)], .baseline, "taking the metrics baseline", [.measureBaseline])
        case .notReady(let m): return fail(s, Failure(.readinessFailed, step: .readiness, m))
        default: return ignore(s, event)
        }
    }

    static func validating(_ s: Snapshot, _ event: RolloutEvent) -> Decision {
        if let d = stopped(s, event) { return d }
        switch event {
        case .smoke(true, _): return go(.validating, [], .baseline, "taking the metrics baseline", [.measureBaseline])
        case .smoke(false, let m): return fail(s, Failure(.smokeTestFailed, step: .smokeTests, m))
        case .baseline(let b) where b.errorRate > s.plan.baselineErrorLimit:
            return fail(s, Failure(.baselineUnhealthy, step: .baseline, "the new version failed \(Int(b.errorRate * 100))% of baseline requests"))
        case .baseline where s.plan.hasPromotionGate && s.plan.strategy == .canary:
            return go(.awaitingPromotion, [.transition(.validated(promotionGate: true))], .promotionGate, "waiting for approval at gate promote before the canary", [])
        case .baseline where s.plan.hasPromotionGate:
            return go(.awaitingPromotion, [.transition(.validated(promotionGate: true))], .promotionGate, "waiting for approval at gate promote", [])
        case .baseline where s.plan.strategy == .canary:
            return Canary.begin(s, [.transition(.startCanary)])
        case .baseline:
            return go(.switching, [.transition(.validated(promotionGate: false))], .switchTraffic, "switching traffic to slot \(s.plan.slot)", [.route(.new)])
        default: return ignore(s, event)
        }
    }

    static func switching(_ s: Snapshot, _ event: RolloutEvent) -> Decision {
        switch event {
        case .switched:
            let live: [RolloutAction] = [.setRegistry, .transition(.switched), .closePrevious,
                                         .report(.register, "\(s.plan.version) is live", Step.register.progress)]
            let bake = s.plan.rollback.bakeSeconds
            if bake > 0 {
                return go(.live, live + strategyAfterSwitch(s), .bake, "baking for \(bake) s", [.measureBake(afterMs: 0)])
            }
            return go(.live, live + strategyAfterSwitch(s) + strategyAfterBake(s), .done, "\(s.plan.version) is live", [])
        case .switchFailed(let reason, let m):
            var d = fail(s, Failure(reason, step: .switchTraffic, m))
            d.actions.insert(.restoreRoute, at: 0)
            return d
        case .ownerGone where s.registryNamesThis:
            // The switch and the registry update were done; only the status change was lost.
            return Decision(status: .live, actions: [.transition(.switched)], step: .reconcile,
                            message: "the agent stopped after the switch; the registry already names this deployment live")
        case .cancelled, .ownerGone: return stopped(s, event)!
        default: return ignore(s, event)
        }
    }

    /// What the strategy does once the new version is live (before the bake).
    static func strategyAfterSwitch(_ s: Snapshot) -> [RolloutAction] {
        switch s.plan.strategy {
        case .direct: return Direct.afterSwitch(s)
        case .blueGreen, .rollback, .canary: return BlueGreen.afterSwitch(s)
        }
    }

    /// What the strategy does once the bake passed (or when there is none).
    static func strategyAfterBake(_ s: Snapshot) -> [RolloutAction] {
        switch s.plan.strategy {
        case .direct: return Direct.afterBake(s)
        case .blueGreen, .rollback, .canary: return BlueGreen.afterBake(s)
        }
    }
}
