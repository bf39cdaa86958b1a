#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

extension Engine {
    // MARK: - Status and history

    /// The deployment, its events, what is live, and whether its slot runs.
    public func status(_ id: String) async throws(EngineError) -> StatusReport {
        await reconcileOnce()
        let r = try record(id)
        let events = try ledger { () throws(StoreError) in try store.events(deploymentId: id) }
        let live = try registryEntry(r.modelName, r.environment)
        // Only these statuses have a slot process that should be running.
        let running: Set<DeploymentStatus> = [.deploying, .validating, .awaitingPromotion, .switching, .live]
        var alive: Bool? = nil
        if let s = r.slot, running.contains(r.status) {
            alive = await ports(for: r.environment).slots.state(slotRef(r, s))?.alive ?? false
        }
        var endpointAlive: Bool? = nil
        if r.status == .live, let live, live.deploymentId == r.deploymentId {
            endpointAlive = await endpointAnswers(live)
        }
        return StatusReport(record: r, events: events, live: live, slotAlive: alive, endpointAlive: endpointAlive)
    }

    /// One page of history.
    public func history(_ q: HistoryQuery) async throws(EngineError) -> HistoryPage {
        await reconcileOnce()
        return try ledger { () throws(StoreError) in try store.query(q) }
    }

    /// Whether `endpointURL` (the router's stable port) answers BentoML's readiness probe now.
    func endpointAnswers(_ live: RegistryEntry) async -> Bool {
        guard let port = Planner.port(of: live.endpointURL) else { return false }
        let p = ports(for: live.environment)
        return await p.prober.isReady(p.router.endpointAddress(listenPort: port, modelName: live.modelName, environment: live.environment),
                                      path: "/readyz", timeoutMs: 1000)
    }
}
