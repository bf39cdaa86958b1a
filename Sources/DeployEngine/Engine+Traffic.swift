#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import JSON

/// One version's share of an endpoint's traffic at an instant.
public struct TrafficShare: Sendable, Hashable {
    public var version: String
    public var deploymentId: String
    /// Percent, 0...100.
    public var weight: Int
}

extension Engine {
    /// The weights in force for (model, environment) at `t` (`history.query traffic_at`): the version live
    /// then (its switch, or the rollback that made it live) at 100, or, while a canary ran beside it, the
    /// canary's last `canary_step` at or before `t` splitting it. Empty when nothing served then.
    public func traffic(modelName: String, environment: String, at t: Date) async throws(EngineError) -> [TrafficShare] {
        await reconcileOnce()
        let live = try ledger { () throws(StoreError) in
            try store.query(HistoryQuery(modelName: modelName, environment: environment, liveAt: t, limit: 1))
        }.deployments.first
        // Canaries created before t, newest first, with their events.
        let canaries = try ledger { () throws(StoreError) in
            try store.query(HistoryQuery(modelName: modelName, environment: environment, strategy: .canary, until: t, limit: 20, includeEvents: true))
        }
        let ended: Set<DeploymentStatus> = [.live, .aborted, .failed, .interrupted, .expired, .rejected]
        for c in canaries.deployments where c.deploymentId != live?.deploymentId {
            let events = (canaries.events[c.deploymentId] ?? []).filter { $0.at <= t }
            guard let step = events.last(where: { $0.step == Step.canaryStep.wireName && $0.data["weight"] != nil }),
                let w = step.data["weight"]?.intValue.flatMap({ Int(exactly: $0) })
            else { continue }
            if events.contains(where: { $0.toStatus.map(ended.contains) == true && $0.at >= step.at }) { continue }
            var shares = [TrafficShare(version: c.modelVersion, deploymentId: c.deploymentId, weight: w)]
            if let live { shares.insert(TrafficShare(version: live.modelVersion, deploymentId: live.deploymentId, weight: 100 - w), at: 0) }
            return shares
        }
        return live.map { [TrafficShare(version: $0.modelVersion, deploymentId: $0.deploymentId, weight: 100)] } ?? []
    }
}
