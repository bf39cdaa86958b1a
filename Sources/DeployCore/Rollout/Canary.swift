#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON

/// Canary: after validation (and the promotion gate) the candidate takes the plan's weight steps beside
/// the stable version. At each step below 100 the router's real traffic is judged interval by interval,
/// candidate against stable in the same interval (``Analysis``); the step advances only after its pause,
/// with enough candidate requests and a passing last interval. Too little traffic is inconclusive: the
/// canary waits and says so, and is aborted after `max_inconclusive_seconds`. `failure_limit` failed
/// intervals in a row abort: weights back on stable, candidate stopped. At 100 the registry names the
/// candidate live and the stable version stays warm as blue-green's previous version does.
///
/// ```
/// validating|awaiting_promotion  --baseline|approved-->  canary [transition(startCanary), setWeights(step 1)]
/// canary --weightsSet(w<100)-->      canary [canary_step event, measureAnalysis]
/// canary --analysisWindow pass, pause over, enough requests--> canary [setWeights(next)] | awaiting_step [transition(awaitStep)]
/// canary --analysisWindow inconclusive|fail-->  canary [measureAnalysis] | aborted (limit reached)
/// canary --weightsSet(100)-->        live [setRegistry, transition(switched), closePrevious, scheduleRetire]
/// awaiting_step --approved--> canary [setWeights(next)]   --rejected|abort--> aborted   --timerFired (expired)--> expired
/// canary|awaiting_step --abort--> aborted [abort]         canary --cancelled|ownerGone--> interrupted
/// ```
public enum Canary {
    /// The plan's settings (the defaults for a plan made without them).
    static func config(_ s: Snapshot) -> CanaryConfig { s.plan.canary ?? .defaults }

    /// The candidate's weight at step `index`.
    static func weight(_ s: Snapshot, _ index: Int) -> Int {
        let steps = config(s).steps
        return steps[max(0, min(index, steps.count - 1))]
    }

    /// `{"<stable>": 100 - w, "<candidate>": w}` (the candidate's key marked when both run the same version).
    public static func weights(stable: String?, candidate: String, weight w: Int) -> JSONValue {
        var o: [String: JSONValue] = [:]
        if let stable, stable != candidate { o[stable] = .integer(100 - w) }
        o[stable == candidate ? candidate + " (candidate)" : candidate] = .integer(w)
        if stable == candidate, let stable { o[stable] = .integer(100 - w) }
        return .object(o)
    }

    static func stepData(_ s: Snapshot, index: Int, analysis: AnalysisResult? = nil) -> JSONValue {
        let w = weight(s, index)
        var o: [String: JSONValue] = ["step_index": .integer(index), "weight": .integer(w),
                                      "weights": weights(stable: s.stableVersion, candidate: s.plan.version, weight: w)]
        if let analysis { o["analysis"] = analysis.toJSON() }
        return .object(o)
    }

    /// The progress of step `index`: between the switch's share and the registration's, in step order.
    static func progress(_ s: Snapshot, _ index: Int) -> Double {
        let n = Double(max(1, config(s).steps.count))
        return Step.canaryStep.progress + (Step.register.progress - Step.canaryStep.progress - 1) * Double(index) / n
    }

    /// Validated (and approved at the promotion gate): the first weight step.
    static func begin(_ s: Snapshot, _ before: [RolloutAction]) -> Decision {
        raise(s, to: 0, before)
    }

    /// Sets the weights of step `index`.
    static func raise(_ s: Snapshot, to index: Int, _ before: [RolloutAction]) -> Decision {
        let w = weight(s, index)
        let message = "canary: raising \(s.plan.version) to \(w)% of the traffic"
        var d = Decision(status: .canary, actions: before + [.reportData(.canaryStep, message, progress(s, index), stepData(s, index: index)), .setWeights(w)],
                         step: .canaryStep, progress: progress(s, index), message: message)
        d.canary = CanaryProgress(index: index, stepStartedAt: nil, stepRequests: 0, inconclusiveSince: nil, failures: s.canary.failures)
        return d
    }

    /// Status `canary`.
    static func running(_ s: Snapshot, _ event: RolloutEvent) -> Decision {
        switch event {
        case .weightsSet(let w): return stepTaken(s, w)
        case .weightsFailed(let m):
            let f = Failure(.switchFailed, step: .canaryStep, m)
            let message = "failed at canary_step: \(m)"
            return Decision(status: .failed, actions: [.restoreRoute, .fail(f), .report(.canaryStep, message, 100)], step: .canaryStep,
                            progress: 100, message: message)
        case .analysisWindow(let r, let alive): return window(s, r, slotAlive: alive)
        case .abort(let why): return abort(s, Failure(.aborted, step: .abort, why))
        case .cancelled:
            return interrupt(s, "the request running the canary was cancelled")
        case .ownerGone:
            return interrupt(s, "its agent stopped during the canary")
        default: return Machine.ignore(s, event)
        }
    }

    /// Nobody runs the steps any more: weights back on stable, candidate stopped, status `interrupted`.
    static func interrupt(_ s: Snapshot, _ why: String) -> Decision {
        Decision(status: .interrupted, actions: [.restoreRoute, .interrupt(why)], step: .reconcile, progress: 100,
                 message: "interrupted: \(why); traffic back on the stable version, candidate stopped")
    }

    /// The router took the weights of the current step.
    static func stepTaken(_ s: Snapshot, _ w: Int) -> Decision {
        let i = s.canary.index
        let data = stepData(s, index: i)
        if w >= 100 {
            let message = "\(s.plan.version) takes 100% of the traffic and is live"
            let live: [RolloutAction] = [.noteData(.canaryStep, "canary step \(i + 1): \(s.plan.version) at 100%", data), .setRegistry,
                                         .transition(.switched), .closePrevious, .report(.register, message, Step.register.progress)]
            // The analysis was the bake: the stable version stays warm (weight 0) for the keep-warm time.
            var d = Machine.go(.live, live + BlueGreen.afterSwitch(s) + BlueGreen.afterBake(s), .done, message, [])
            d.canary = s.canary
            return d
        }
        let c = config(s)
        let message = "canary step \(i + 1) of \(c.steps.count): \(s.plan.version) at \(w)%, \(s.stableVersion ?? "the stable version") at \(100 - w)%"
        var d = Decision(status: .canary,
                         actions: [.noteData(.canaryStep, message, data), .reportData(.canaryStep, message, progress(s, i), data),
                                   .measureAnalysis(afterMs: c.analysis.intervalSeconds * 1000)],
                         step: .canaryStep, progress: progress(s, i), message: message)
        d.canary = CanaryProgress(index: i, stepStartedAt: s.now, stepRequests: 0, inconclusiveSince: nil, failures: s.canary.failures)
        return d
    }

    /// One analysis interval at the current step.
    static func window(_ s: Snapshot, _ r: AnalysisResult, slotAlive: Bool) -> Decision {
        let c = config(s)
        let i = s.canary.index
        let w = weight(s, i)
        guard slotAlive else {
            return abort(s, Failure(.slotDied, step: .analysis, "the new version's process died during the canary at \(w)%"))
        }
        var p = s.canary
        let data = stepData(s, index: i, analysis: r)
        let said = "analysis at \(w)%: \(r.message)"
        let noted: [RolloutAction] = [.noteData(.analysis, said, data), .reportData(.analysis, said, progress(s, i), data)]
        let measure = RolloutAction.measureAnalysis(afterMs: c.analysis.intervalSeconds * 1000)
        p.stepRequests += r.candidate.requests
        switch r.verdict {
        case .fail:
            p.failures += 1
            if p.failures >= c.analysis.failureLimit {
                return abort(s, Failure(.analysisFailed, step: .analysis,
                                        "analysis failed \(p.failures) interval\(p.failures == 1 ? "" : "s") in a row at \(w)%: \(r.message)"), noted: noted)
            }
            return waiting(s, p, noted + [measure], "analysis failed at \(w)% (\(p.failures) of \(c.analysis.failureLimit) in a row): \(r.message)")
        case .inconclusive:
            p.inconclusiveSince = p.inconclusiveSince ?? s.now
            if let d = inconclusiveTooLong(s, p, noted) { return d }
            return waiting(s, p, noted + [measure], r.message)
        case .pass:
            p.failures = 0
            let pauseOver = s.now >= (p.stepStartedAt ?? s.now).addingTimeInterval(Double(c.pauseSeconds))
            guard pauseOver else {
                p.inconclusiveSince = nil
                return waiting(s, p, noted + [measure], "analysis passed at \(w)%; pausing \(c.pauseSeconds) s at this step")
            }
            guard p.stepRequests >= c.minRequests else {
                // The pause is over but the candidate has not served enough here: it never advances on no data.
                p.inconclusiveSince = p.inconclusiveSince ?? s.now
                if let d = inconclusiveTooLong(s, p, noted) { return d }
                return waiting(s, p, noted + [measure], "inconclusive: \(p.stepRequests) of \(c.minRequests) requests at \(w)%")
            }
            p.inconclusiveSince = nil
            let next = i + 1
            if c.stepGates {
                let message = "waiting for approval at gate step before raising \(s.plan.version) to \(weight(s, next))%"
                var d = Decision(status: .awaitingStep, actions: noted + [.transition(.awaitStep), .reportData(.stepGate, message, progress(s, i), data)],
                                 step: .stepGate, progress: progress(s, i), message: message)
                d.canary = p
                return d
            }
            var d = raise(s, to: next, noted)
            d.canary?.failures = 0
            return d
        }
    }

    static func waiting(_ s: Snapshot, _ p: CanaryProgress, _ actions: [RolloutAction], _ message: String) -> Decision {
        var d = Decision(status: .canary, actions: actions, step: .analysis, progress: progress(s, p.index), message: message)
        d.canary = p
        return d
    }

    static func inconclusiveTooLong(_ s: Snapshot, _ p: CanaryProgress, _ noted: [RolloutAction]) -> Decision? {
        let c = config(s)
        guard let since = p.inconclusiveSince, s.now.timeIntervalSince(since) >= Double(c.maxInconclusiveSeconds) else { return nil }
        return abort(s, Failure(.analysisInconclusive, step: .analysis,
                                "inconclusive for \(Int(s.now.timeIntervalSince(since))) s at \(weight(s, p.index))% (\(p.stepRequests) of \(c.minRequests) candidate requests at this step; limit \(c.maxInconclusiveSeconds) s)"),
                     noted: noted)
    }

    /// Status `awaiting_step`.
    static func atStepGate(_ s: Snapshot, _ event: RolloutEvent) -> Decision {
        switch event {
        case .approved:
            return raise(s, to: s.canary.index + 1, [.transition(.approve(gate: .step))])
        case .rejected:
            return abort(s, Failure(.aborted, step: .stepGate, "rejected at gate step"))
        case .abort(let why):
            return abort(s, Failure(.aborted, step: .abort, why))
        case .timerFired where s.gateExpired:
            let f = Failure(.approvalExpired, step: .stepGate, "the approval window closed")
            return Decision(status: .expired, actions: [.restoreRoute, .stopSlot(.new), .expire(f)], step: .expire,
                            message: "gate step expired without an answer; traffic back on the stable version")
        default: return Machine.ignore(s, event)
        }
    }

    /// Stops the canary: weights back on stable, the candidate stopped, status `aborted`.
    static func abort(_ s: Snapshot, _ f: Failure, noted: [RolloutAction] = []) -> Decision {
        let message = "aborted: \(f.message); traffic back on \(s.stableVersion ?? "the stable version")"
        return Decision(status: .aborted, actions: noted + [.abort(f), .report(.abort, message, 100)], step: .abort, progress: 100,
                        message: message)
    }
}
