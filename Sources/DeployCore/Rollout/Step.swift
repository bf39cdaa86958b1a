/// A step of a rollout. Each step owns its share of the progress, so the percentages reported follow the
/// plan's order and never go back.
public enum Step: String, Sendable, Hashable, CaseIterable {
    case plan
    case execute
    case startSlot = "start_slot"
    case readiness
    case smokeTests = "smoke_tests"
    case baseline
    case deployGate = "gate:deploy"
    case promotionGate = "gate:promote"
    /// A canary's step gate.
    case stepGate = "gate:step"
    case validate
    case switchTraffic = "switch"
    /// A canary weight step (its weights in the event's data).
    case canaryStep = "canary_step"
    /// One canary analysis interval (candidate against stable, same interval).
    case analysis
    /// A canary stopped: weights back on stable, candidate stopped.
    case abort
    case register
    case bake
    /// One analysis window of the bake (its figures against the limits). The bake's end is a `bake` event.
    case bakeWindow = "bake_window"
    case retirePrevious = "retire_previous"
    case done
    case reconcile
    case rollback
    case expire

    /// The wire spelling (events' and progress notifications' `step`).
    public var wireName: String { rawValue }

    /// The progress reached when the step begins, 0...100.
    public var progress: Double {
        switch self {
        case .plan, .deployGate: return 0
        case .execute: return 5
        case .startSlot: return 10
        case .readiness: return 20
        case .smokeTests: return 40
        case .baseline: return 55
        case .promotionGate, .validate: return 65
        case .switchTraffic, .canaryStep, .analysis, .stepGate: return 75
        case .register: return 85
        case .bake, .bakeWindow: return 90
        case .retirePrevious: return 95
        case .done, .reconcile, .rollback, .expire, .abort: return 100
        }
    }

    /// The gate step of `kind`.
    public static func gate(_ kind: GateKind) -> Step {
        switch kind {
        case .deploy: return .deployGate
        case .promote: return .promotionGate
        case .step: return .stepGate
        }
    }
}
