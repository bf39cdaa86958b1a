/// Direct: the first deployment, or development: start, validate, point the endpoint at it. No second
/// slot is kept warm.
public enum Direct {
    /// The previous slot (if any) is stopped as soon as the new one is live.
    static func afterSwitch(_ s: Snapshot) -> [RolloutAction] { s.hasPrevious ? [.stopSlot(.previous)] : [] }

    /// Nothing is left to retire.
    static func afterBake(_ s: Snapshot) -> [RolloutAction] { [] }
}
