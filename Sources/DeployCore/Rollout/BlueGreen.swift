/// Blue-green: the new version starts beside the live one, takes all traffic in one switch, and the
/// previous one stays warm for the keep-warm time so a rollback is one switch back.
public enum BlueGreen {
    /// Nothing to do before the bake: the previous slot is the rollback target.
    static func afterSwitch(_ s: Snapshot) -> [RolloutAction] { [] }

    /// Keep the previous slot warm for a while, then stop it.
    static func afterBake(_ s: Snapshot) -> [RolloutAction] {
        s.hasPrevious ? [.scheduleRetire(seconds: s.plan.rollback.keepWarmSeconds)] : []
    }
}
