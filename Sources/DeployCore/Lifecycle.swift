/// Something that happens to a deployment; the lifecycle decides where it leads.
public enum LifecycleEvent: Sendable, Hashable {
    /// A person approved `gate`.
    case approve(gate: GateKind)
    /// A person rejected `gate`.
    case reject(gate: GateKind)
    /// `deploy.execute` started the rollout.
    case execute
    /// The new slot answered its readiness probe.
    case slotReady
    /// Smoke tests and the baseline passed; `promotionGate` says whether the plan waits for a promotion approval.
    case validated(promotionGate: Bool)
    /// The router now sends traffic to the new slot.
    case switched
    /// A step failed (the engine tears down the new slot and leaves live untouched).
    case fail
    /// The live deployment was rolled back (automatically during the bake, or by `deploy.rollback`).
    case rollBack
    /// A newer deployment replaced this live one.
    case supersede
    /// The agent running it died or was cancelled.
    case interrupt
    /// An approval window or plan ran out.
    case expire
    /// `deploy.stop` took the live deployment down (route removed, slots stopped).
    case stop
    /// A validated (and, with a promotion gate, approved) canary takes its first weight step.
    case startCanary
    /// A canary reached a step gate.
    case awaitStep
    /// A canary was stopped: failed analysis, or `deploy.abort`.
    case abort

    /// Every event, with every gate and flag value (for exhaustive tests and docs).
    public static let all: [LifecycleEvent] = [
        .approve(gate: .deploy), .approve(gate: .promote), .reject(gate: .deploy), .reject(gate: .promote),
        .execute, .slotReady, .validated(promotionGate: true), .validated(promotionGate: false),
        .switched, .fail, .rollBack, .supersede, .interrupt, .expire, .stop,
        .approve(gate: .step), .reject(gate: .step), .startCanary, .awaitStep, .abort,
    ]

    /// A stable name for the events table, e.g. `approve:deploy`, `validated:promotion_gate`, `roll_back`.
    public var name: String {
        switch self {
        case .approve(let g): return "approve:\(g.rawValue)"
        case .reject(let g): return "reject:\(g.rawValue)"
        case .execute: return "execute"
        case .slotReady: return "slot_ready"
        case .validated(let gate): return gate ? "validated:promotion_gate" : "validated"
        case .switched: return "switched"
        case .fail: return "fail"
        case .rollBack: return "roll_back"
        case .supersede: return "supersede"
        case .interrupt: return "interrupt"
        case .expire: return "expire"
        case .stop: return "stop"
        case .startCanary: return "start_canary"
        case .awaitStep: return "await_step"
        case .abort: return "abort"
        }
    }
}

/// A refused transition.
public struct LifecycleError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The status the deployment was in.
    public var from: DeploymentStatus
    /// The event that was refused.
    public var event: LifecycleEvent
    /// Stable: `not_awaiting_approval` (approve/reject outside the matching gate) or `invalid_transition`.
    public var reason: String
    /// A sentence for people.
    public var message: String

    /// A refusal.
    public init(from: DeploymentStatus, event: LifecycleEvent, reason: String, message: String) {
        self.from = from
        self.event = event
        self.reason = reason
        self.message = message
    }

    public var description: String { "\(reason): \(message)" }
}

/// The deployment state machine: a pure function from (status, event) to the next status.
///
/// ```
/// awaiting_approval --approve(deploy)--> approved      awaiting_approval --reject(deploy)--> rejected
/// planned|approved --execute--> deploying --slotReady--> validating
/// validating --validated(promotionGate: true)--> awaiting_promotion --approve(promote)--> switching
/// validating --validated(promotionGate: false)--> switching --switched--> live
/// awaiting_promotion --reject(promote)--> rejected
/// deploying|validating|switching --fail--> failed
/// live --rollBack--> rolled_back        live --supersede--> superseded        live --stop--> stopped
/// any in-flight status --interrupt--> interrupted
/// planned|awaiting_approval|awaiting_promotion|awaiting_step --expire--> expired
/// validating|awaiting_promotion --startCanary--> canary --awaitStep--> awaiting_step --approve(step)--> canary
/// canary --switched--> live        canary --fail--> failed        canary|awaiting_step --abort--> aborted
/// awaiting_step --reject(step)--> aborted
/// ```
/// Approve and reject must name the gate the deployment is waiting at: approving `promote` while
/// `awaiting_approval` (the deploy gate) is `not_awaiting_approval`. Everything else is refused.
public enum Lifecycle {
    /// The next status after `event`, or why the transition is refused.
    public static func next(_ from: DeploymentStatus, on event: LifecycleEvent) -> Result<DeploymentStatus, LifecycleError> {
        switch (from, event) {
        case (.awaitingApproval, .approve(gate: .deploy)): return .success(.approved)
        case (.awaitingApproval, .reject(gate: .deploy)): return .success(.rejected)
        case (.planned, .execute), (.approved, .execute): return .success(.deploying)
        case (.deploying, .slotReady): return .success(.validating)
        case (.validating, .validated(promotionGate: true)): return .success(.awaitingPromotion)
        case (.validating, .validated(promotionGate: false)): return .success(.switching)
        case (.awaitingPromotion, .approve(gate: .promote)): return .success(.switching)
        case (.awaitingPromotion, .reject(gate: .promote)): return .success(.rejected)
        case (.deploying, .fail), (.validating, .fail), (.switching, .fail): return .success(.failed)
        case (.switching, .switched): return .success(.live)
        case (.live, .rollBack): return .success(.rolledBack)
        case (.live, .supersede): return .success(.superseded)
        case (.live, .stop): return .success(.stopped)
        case (_, .interrupt) where from.isInFlight: return .success(.interrupted)
        case (.planned, .expire), (.awaitingApproval, .expire), (.awaitingPromotion, .expire), (.awaitingStep, .expire): return .success(.expired)
        case (.validating, .startCanary), (.awaitingPromotion, .startCanary): return .success(.canary)
        case (.canary, .awaitStep): return .success(.awaitingStep)
        case (.awaitingStep, .approve(gate: .step)): return .success(.canary)
        case (.awaitingStep, .reject(gate: .step)), (.canary, .abort), (.awaitingStep, .abort): return .success(.aborted)
        case (.canary, .switched): return .success(.live)
        case (.canary, .fail): return .success(.failed)
        case (_, .approve(let gate)), (_, .reject(let gate)):
            let verb = if case .approve = event { "approve" } else { "reject" }
            let waiting = pendingGate(from).map { "it is waiting at the \($0.rawValue) gate" } ?? "it is \(from.rawValue), not awaiting approval"
            return .failure(LifecycleError(
                from: from, event: event, reason: "not_awaiting_approval",
                message: "cannot \(verb) the \(gate.rawValue) gate: \(waiting)"))
        default:
            return .failure(LifecycleError(
                from: from, event: event, reason: "invalid_transition",
                message: "a deployment that is \(from.rawValue) cannot take the event \(event.name)"))
        }
    }

    /// The status a new plan starts in: `awaiting_approval` when a deploy gate is required, else `planned`.
    public static func initialStatus(gates: [Gate]) -> DeploymentStatus {
        gates.contains { $0.kind == .deploy } ? .awaitingApproval : .planned
    }

    /// The gate a deployment in `status` is waiting at (`deploy.approve` defaults to it), or `nil`.
    public static func pendingGate(_ status: DeploymentStatus) -> GateKind? {
        switch status {
        case .awaitingApproval: return .deploy
        case .awaitingPromotion: return .promote
        case .awaitingStep: return .step
        default: return nil
        }
    }

    /// `true` when `event` is allowed from `status`.
    public static func allows(_ status: DeploymentStatus, _ event: LifecycleEvent) -> Bool {
        if case .success = next(status, on: event) { return true }
        return false
    }
}

extension DeploymentStatus {
    /// A sentence a person can read about what this status means.
    public var summary: String {
        switch self {
        case .planned: return "planned; ready to execute"
        case .awaitingApproval: return "waiting for approval before deploying"
        case .approved: return "approved; ready to execute"
        case .rejected: return "rejected by an approver"
        case .deploying: return "starting the new version in its slot"
        case .validating: return "validating the new version (readiness, smoke tests, baseline)"
        case .awaitingPromotion: return "validated; waiting for approval before the traffic switch"
        case .switching: return "switching traffic to the new version"
        case .live: return "serving traffic"
        case .failed: return "failed before taking traffic; the live version was left untouched"
        case .rolledBack: return "rolled back; the previous version serves traffic"
        case .interrupted: return "interrupted: the agent running it stopped; reconciled on the next start"
        case .superseded: return "replaced by a newer deployment"
        case .expired: return "the approval window ran out"
        case .stopped: return "stopped by deploy.stop: the endpoint's route was removed and its slots stopped"
        case .canary: return "canary: the new version serves a share of the traffic beside the stable one, judged by analysis"
        case .awaitingStep: return "canary: waiting for approval (gate step) before raising the new version's weight"
        case .aborted: return "aborted: the new version's weight is 0 and it is stopped; the stable version serves all traffic"
        }
    }
}
