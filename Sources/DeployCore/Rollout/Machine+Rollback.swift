/// The switch back to the warm previous version: asked for by a person (`deploy.rollback`), or by the
/// bake after a regression. One route change; the rollback is recorded only once it took effect, so a
/// crash before leaves the registry (and so reconciliation) on the version being undone.
extension Machine {
    static func rollingBack(_ s: Snapshot, _ event: RolloutEvent) -> Decision {
        switch event {
        case .rollBack where s.step != .rollback:
            guard s.hasWarmPrevious else { return ignore(s, event) }
            // A cause set by the caller (deploy.abort during the bake) is carried to the record of the switch back.
            return Decision(status: .live, actions: [.route(.previous)], step: .rollback, progress: Step.bake.progress,
                            message: "switching back to the warm previous version", rollbackCause: s.rollbackCause)
        case .switched where s.step == .rollback:
            let back: [RolloutAction] = [.recordRollback(cause: s.rollbackCause)]
            let retire: RolloutAction = .retireUndone(seconds: s.plan.rollback.keepWarmSeconds)
            let said = s.rollbackCause == nil ? "the previous version is live again" : "rolled back after a failed bake: \(s.rollbackCause!.message)"
            return Decision(status: .rolledBack, actions: back + [.report(.rollback, said, 100), retire], step: .rollback, progress: 100,
                            message: said, rollbackCause: s.rollbackCause)
        case .switchFailed(let reason, let m) where s.step == .rollback:
            let failed: [RolloutAction] = [.restoreRoute, .recordFailedRollback(Failure(reason, step: .switchTraffic, m))]
            guard s.rollbackCause != nil else {
                return Decision(status: .live, actions: failed, step: .done, progress: 100, message: "the switch back failed: \(m)")
            }
            return done(s, failed + [.note(.bake, "automatic rollback failed: \(m); \(s.plan.version) stays live")])
        default: return ignore(s, event)
        }
    }
}
