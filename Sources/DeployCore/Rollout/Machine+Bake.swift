/// The bake: after the switch, windows of probe traffic through the router are compared with the
/// baseline. One slow window is noise on a shared machine (a reload, a GC pause, a busy core): only a
/// regression seen in two windows in a row counts. A dead process counts at once.
extension Machine {
    /// Pause between bake windows.
    public static let bakeIntervalMs = 500
    /// Regressed windows in a row that fail the bake.
    public static let bakeStrikesToFail = 2

    static func baking(_ s: Snapshot, _ event: RolloutEvent) -> Decision {
        switch event {
        case .bakeWindow(let observed, let slotAlive, let stillLive, let traffic) where s.step == .bake:
            return window(s, observed: observed, slotAlive: slotAlive, stillLive: stillLive, traffic: traffic)
        case .cancelled where s.step == .bake:
            // The version is live; only the watching stops. The previous slot still retires on time.
            return done(s, [.note(.bake, "bake stopped: the request was cancelled; \(s.plan.version) stays live")])
        default: return ignore(s, event)
        }
    }

    static func done(_ s: Snapshot, _ before: [RolloutAction], strikes: Int = 0) -> Decision {
        var d = go(.live, before + strategyAfterBake(s), .done, "\(s.plan.version) is live", [])
        d.bakeStrikes = strikes
        return d
    }

    static func window(_ s: Snapshot, observed: Metrics, slotAlive: Bool, stillLive: Bool, traffic: AnalysisResult? = nil) -> Decision {
        guard stillLive else {
            // A manual rollback (or a newer rollout) during the bake ends it: this version is no longer live.
            return Decision(status: .live, actions: [.note(.bake, "bake ended early: another deployment took over the endpoint")],
                            step: .done, message: "bake ended early")
        }
        if !slotAlive {
            return bakeFailed(s, Failure(.slotDied, step: .bake, "the new version's process died during the bake"))
        }
        var strikes = 0
        var actions: [RolloutAction] = []
        if let traffic, traffic.verdict != .inconclusive {
            // Real traffic on both sides: the new version after the switch against the old one just before
            // it, with the canary's comparator and noise floor. The probe baseline (an idle slot) is only the
            // fallback for thin traffic: against it a loaded machine rolls back healthy versions.
            let summary = "bake window (real traffic): " + traffic.message
            actions.append(.noteData(.bakeWindow, summary, .object(["analysis": traffic.toJSON()])))
            actions.append(.report(.bakeWindow, summary, bakeProgress(s)))
            if traffic.verdict == .fail {
                strikes = s.bakeStrikes + 1
                actions.append(.note(.bakeWindow, "bake window \(strikes) of \(bakeStrikesToFail) over the limit: \(traffic.message)"))
                if strikes >= bakeStrikesToFail {
                    return bakeFailed(s, Failure(traffic.regression ?? .errorRateRegression, step: .bake, traffic.message), noted: actions)
                }
            }
            return bakeGoesOn(s, actions, strikes: strikes)
        }
        if let baseline = s.baseline {
            // Every window is reported with its limits, and kept in the ledger, so the bake is no black box
            // to whoever runs it or follows it from another process (deploy.follow reads the ledger).
            let summary = "bake window: " + BakeVerdict.windowSummary(baseline: baseline, observed: observed, policy: s.plan.rollback)
            actions.append(.note(.bakeWindow, summary))
            actions.append(.report(.bakeWindow, summary, bakeProgress(s)))
        }
        if let baseline = s.baseline,
            case .rollback(let reason, let message) = BakeVerdict.evaluate(baseline: baseline, observed: observed, policy: s.plan.rollback)
        {
            strikes = s.bakeStrikes + 1
            actions.append(.note(.bakeWindow, "bake window \(strikes) of \(bakeStrikesToFail) over the limit: \(message)"))
            if strikes >= bakeStrikesToFail {
                return bakeFailed(s, Failure(reason, step: .bake, message), noted: actions)
            }
        }
        return bakeGoesOn(s, actions, strikes: strikes)
    }

    /// The bake passed when its time is up; else the next window.
    static func bakeGoesOn(_ s: Snapshot, _ before: [RolloutAction], strikes: Int) -> Decision {
        var actions = before
        if let end = s.bakeEndsAt, s.now >= end {
            return done(s, actions + [.note(.bake, "bake passed (\(s.plan.rollback.bakeSeconds) s)")], strikes: strikes)
        }
        actions.append(.measureBake(afterMs: bakeIntervalMs))
        return Decision(status: .live, actions: actions, step: .bake, message: "baking", bakeStrikes: strikes)
    }

    /// How far through the bake `s.now` is, as progress between the bake's start and the next step's.
    static func bakeProgress(_ s: Snapshot) -> Double {
        let start = Step.bake.progress
        let span = max(0, Step.done.progress - start - 1)
        guard let end = s.bakeEndsAt, s.plan.rollback.bakeSeconds > 0 else { return start }
        let left = max(0, min(1, end.timeIntervalSince(s.now) / Double(s.plan.rollback.bakeSeconds)))
        return start + span * (1 - left)
    }

    static func bakeFailed(_ s: Snapshot, _ f: Failure, noted: [RolloutAction] = []) -> Decision {
        let failed = noted + [.note(.bake, "bake failed: \(f.message)")]
        guard s.hasWarmPrevious else {
            return done(s, failed + [.note(.bake, "no warm previous version to roll back to; \(s.plan.version) stays live")])
        }
        return Decision(status: .live, actions: failed + [.route(.previous)], step: .rollback, progress: Step.bake.progress,
                        message: "rolling back after a failed bake: \(f.message)", rollbackCause: f)
    }
}
