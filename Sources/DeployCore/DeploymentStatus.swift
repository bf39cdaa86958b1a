/// Where a deployment is in its lifecycle. Raw values are the wire and ledger spelling.
public enum DeploymentStatus: String, Sendable, CaseIterable, Hashable, Codable {
    case planned
    case awaitingApproval = "awaiting_approval"
    case approved
    case rejected
    case deploying
    case validating
    case awaitingPromotion = "awaiting_promotion"
    case switching
    case live
    case failed
    case rolledBack = "rolled_back"
    case interrupted
    /// A live deployment that a newer one replaced.
    case superseded
    /// A plan or gate whose approval window ran out.
    case expired
    /// A live deployment taken down by `deploy.stop`: its route removed, its slots stopped, nothing live after it.
    case stopped
    /// The candidate serves a share of the endpoint's traffic beside the stable version (weight steps, analysis).
    case canary
    /// A canary waits at a step gate for `deploy.approve` (gate `step`) before raising the weight.
    case awaitingStep = "awaiting_step"
    /// A canary stopped by failed analysis or by `deploy.abort`: candidate weight 0 and stopped, stable untouched.
    case aborted

    /// Statuses that hold the (model, environment) rollout lock: at most one deployment per pair may be in one.
    public static let inFlight: Set<DeploymentStatus> = [
        .planned, .awaitingApproval, .approved, .deploying, .validating, .awaitingPromotion, .switching, .canary, .awaitingStep,
    ]

    /// `true` while this status holds the rollout lock.
    public var isInFlight: Bool { Self.inFlight.contains(self) }

    /// `true` for statuses no transition leaves (except `live`, which a rollback or a newer version ends).
    public var isTerminal: Bool {
        switch self {
        case .rejected, .failed, .rolledBack, .interrupted, .superseded, .expired, .aborted, .stopped: return true
        default: return false
        }
    }
}

/// How a deployment reaches traffic. Raw values are the wire and ledger spelling.
public enum DeploymentStrategy: String, Sendable, CaseIterable, Hashable, Codable {
    /// First deployment (or development): start the slot and point the endpoint at it.
    case direct
    /// Start the new version beside the live one, validate, switch, keep the old one warm.
    case blueGreen = "blue_green"
    /// Shift traffic gradually: weight steps beside the live version, each judged by analysis on real traffic.
    case canary
    /// A deployment that restores an earlier version.
    case rollback
}

/// One of the two slots a model runs in per environment.
public enum Slot: String, Sendable, CaseIterable, Hashable, Codable {
    case blue, green

    /// The other slot.
    public var other: Slot { self == .blue ? .green : .blue }
}
