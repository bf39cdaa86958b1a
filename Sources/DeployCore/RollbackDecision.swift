/// What the registry says about a (model, environment) when a rollback is asked for.
public struct RollbackFacts: Sendable, Hashable {
    /// The live deployment, if any.
    public var live: LiveFacts?
    /// The version that was live before it (the registry's rollback target), if any.
    public var previousVersion: String?
    /// The slot the previous version runs in, if it is still running.
    public var previousSlot: Slot?
    /// `true` while the previous slot is still running and ready (within its keep-warm time).
    public var previousWarm: Bool
    /// `false` when the previous deployment was itself rolled back or failed: it is no rollback target
    /// (rolling back twice must not re-promote what was just rolled back).
    public var previousHealthy: Bool
    /// Versions that were live in this environment before and left it healthy (superseded by a newer
    /// deployment), newest first: the redeploy targets.
    public var history: [String]
    /// Versions that were live here once but whose newest deployment was rolled back or failed, with why.
    /// Bringing one back is a new deployment (`deploy.plan`, with its gates), not a rollback.
    public var unhealthy: [String: String]

    /// Rollback facts.
    public init(
        live: LiveFacts?, previousVersion: String? = nil, previousSlot: Slot? = nil, previousWarm: Bool = false,
        previousHealthy: Bool = true, history: [String] = [], unhealthy: [String: String] = [:]
    ) {
        self.live = live
        self.previousVersion = previousVersion
        self.previousSlot = previousSlot
        self.previousWarm = previousWarm
        self.previousHealthy = previousHealthy
        self.history = history
        self.unhealthy = unhealthy
    }
}

/// Why a rollback changes nothing. Raw values are the decision's own spelling; ``wireReason`` is what the
/// caller is told.
public enum RollbackRefusal: String, Sendable, Hashable, CaseIterable {
    /// Nothing is live, or the live version is the first one.
    case nothingToRollBack = "nothing_to_roll_back"
    /// The target is the live version.
    case alreadyLive = "already_live"
    /// The target was never live here.
    case versionNotInHistory = "version_not_in_history"
    /// The target's last deployment here was rolled back or failed.
    case rollbackTargetUnhealthy = "rollback_target_unhealthy"

    /// The stable `reason` the caller gets: rolling back to the live version is nothing to roll back, too.
    public var wireReason: String { self == .alreadyLive ? Self.nothingToRollBack.rawValue : rawValue }
}

/// How `deploy.rollback` undoes the live deployment.
public enum RollbackDecision: Sendable, Hashable {
    /// The target still runs warm in `slot`: one router switch.
    case switchToWarm(slot: Slot)
    /// The target is not running: redeploy `version` through the blue-green steps.
    case redeploy(version: String)
    /// Nothing changes, for `reason`.
    case refuse(reason: RollbackRefusal, message: String)

    /// Decides how to roll back to `toVersion` (default: the previous live version).
    public static func decide(_ facts: RollbackFacts, toVersion: String?) -> RollbackDecision {
        guard let live = facts.live else {
            return .refuse(reason: .nothingToRollBack, message: "nothing is live, so there is nothing to roll back")
        }
        guard let target = toVersion ?? facts.previousVersion else {
            return .refuse(
                reason: .nothingToRollBack,
                message: "\(live.version) is the first version deployed here; there is no previous version to roll back to")
        }
        if target == live.version {
            return .refuse(reason: .alreadyLive, message: "\(target) is already live (deployment \(live.deploymentId))")
        }
        let previousRefused = target == facts.previousVersion && !facts.previousHealthy
        if previousRefused || facts.unhealthy[target] != nil {
            let why = facts.unhealthy[target] ?? "its deployment was rolled back"
            return .refuse(
                reason: .rollbackTargetUnhealthy,
                message: "\(target) cannot come back by rollback: \(why); a rollback only returns to a version that left live healthy. To bring it back, plan a deployment (deploy.plan), with its gates")
        }
        if target == facts.previousVersion, facts.previousWarm, let slot = facts.previousSlot, slot != live.slot {
            return .switchToWarm(slot: slot)
        }
        if target == facts.previousVersion || facts.history.contains(target) {
            return .redeploy(version: target)
        }
        return .refuse(
            reason: .versionNotInHistory,
            message: "\(target) was never live here; roll back only to an earlier live version (\(([facts.previousHealthy ? facts.previousVersion : nil].compactMap { $0 } + facts.history).uniqued.joined(separator: ", ")))")
    }
}

extension Array where Element: Hashable {
    var uniqued: [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
