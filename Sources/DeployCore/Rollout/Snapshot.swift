#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The parts of a plan the machine decides with.
public struct RolloutPlan: Sendable, Hashable {
    /// The strategy that runs the steps (a rollback redeploy runs blue-green).
    public var strategy: DeploymentStrategy
    /// The model version being rolled out.
    public var version: String
    /// The slot it runs in.
    public var slot: String
    /// Whether there are smoke tests to run.
    public var hasSmokeTests: Bool
    /// Whether the plan waits for approval before the switch.
    public var hasPromotionGate: Bool
    /// Baseline error rate above which the new version is refused before it takes traffic.
    public var baselineErrorLimit: Double
    /// Automatic rollback rules, bake and keep-warm times.
    public var rollback: RollbackPolicy
    /// The canary's settings (a canary plan only).
    public var canary: CanaryConfig?

    /// Plan facts.
    public init(strategy: DeploymentStrategy, version: String, slot: String, hasSmokeTests: Bool, hasPromotionGate: Bool,
                baselineErrorLimit: Double = 0.5, rollback: RollbackPolicy = .init(), canary: CanaryConfig? = nil) {
        self.strategy = strategy
        self.version = version
        self.slot = slot
        self.hasSmokeTests = hasSmokeTests
        self.hasPromotionGate = hasPromotionGate
        self.baselineErrorLimit = baselineErrorLimit
        self.rollback = rollback
        self.canary = canary
    }

    /// The facts of a full plan.
    public init(_ plan: DeploymentPlan) {
        self.init(strategy: plan.strategy, version: plan.modelVersion, slot: plan.config.slot.rawValue,
                  hasSmokeTests: !plan.config.smokeTests.isEmpty, hasPromotionGate: plan.hasPromotionGate,
                  rollback: plan.config.rollback, canary: plan.config.canary)
    }
}

/// Everything the machine needs to decide the next step: the record's status, the plan, what is live and
/// what the bake has seen so far. The runner builds it; the machine reads it and never does I/O.
public struct Snapshot: Sendable, Hashable {
    /// The deployment's status in the ledger.
    public var status: DeploymentStatus
    /// The step it is at.
    public var step: Step
    /// The plan's facts.
    public var plan: RolloutPlan
    /// Whether a version was live when the rollout began (a first deployment has none).
    public var hasPrevious: Bool
    /// Whether the previous version still runs warm as the registry's rollback target.
    public var hasWarmPrevious: Bool
    /// Whether the registry names this deployment live.
    public var registryNamesThis: Bool
    /// The metrics baseline taken before the switch.
    public var baseline: Metrics?
    /// Bake windows over the limit in a row so far.
    public var bakeStrikes: Int
    /// When the bake ends (set when the switch is done).
    public var bakeEndsAt: Date?
    /// Now, by the runner's clock.
    public var now: Date
    /// Whether the pending gate's approval window has closed.
    public var gateExpired: Bool
    /// Why a switch back to the previous version is under way (a failed bake); nil when a person asked.
    public var rollbackCause: Failure?
    /// The version live when the rollout began (the canary's stable version).
    public var stableVersion: String?
    /// Where the canary is.
    public var canary: CanaryProgress

    /// A snapshot.
    public init(
        status: DeploymentStatus, step: Step, plan: RolloutPlan, hasPrevious: Bool = false, hasWarmPrevious: Bool = false,
        registryNamesThis: Bool = false, baseline: Metrics? = nil, bakeStrikes: Int = 0, bakeEndsAt: Date? = nil,
        now: Date = Date(timeIntervalSince1970: 0), gateExpired: Bool = false, rollbackCause: Failure? = nil,
        stableVersion: String? = nil, canary: CanaryProgress = .init()
    ) {
        self.status = status
        self.step = step
        self.plan = plan
        self.hasPrevious = hasPrevious
        self.hasWarmPrevious = hasWarmPrevious
        self.registryNamesThis = registryNamesThis
        self.baseline = baseline
        self.bakeStrikes = bakeStrikes
        self.bakeEndsAt = bakeEndsAt
        self.now = now
        self.gateExpired = gateExpired
        self.rollbackCause = rollbackCause
        self.stableVersion = stableVersion
        self.canary = canary
    }
}

/// Where a canary is: its step, since when, what the candidate served at it, and the analysis so far.
public struct CanaryProgress: Sendable, Hashable {
    /// Index of the current step in the plan's `canary.steps`.
    public var index: Int
    /// When the current step's weights took effect.
    public var stepStartedAt: Date?
    /// Requests the candidate served at this step (summed over its intervals).
    public var stepRequests: Int
    /// Since when the canary has been inconclusive without a break (nil: it is not).
    public var inconclusiveSince: Date?
    /// Failed intervals in a row.
    public var failures: Int

    /// Progress.
    public init(index: Int = 0, stepStartedAt: Date? = nil, stepRequests: Int = 0, inconclusiveSince: Date? = nil, failures: Int = 0) {
        self.index = index
        self.stepStartedAt = stepStartedAt
        self.stepRequests = stepRequests
        self.inconclusiveSince = inconclusiveSince
        self.failures = failures
    }
}
