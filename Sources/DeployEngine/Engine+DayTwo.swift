#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

/// What is live for one (model, environment), checked against the running processes and the router.
public struct LiveSummary: Sendable {
    public var entry: RegistryEntry
    /// The live slot's process tree runs.
    public var slotAlive: Bool
    /// The endpoint answers the readiness probe through the router now.
    public var endpointAlive: Bool
    /// The warm previous version (one-call rollback target), when its slot still runs.
    public var standby: Standby?
    /// A rollout in flight for the pair, if any.
    public var inFlight: DeploymentRecord?
    /// The router's Prometheus endpoint for this endpoint (HAProxy), nil when the router has none.
    public var metricsURL: String?

    public struct Standby: Sendable {
        public var version: String
        public var deploymentId: String?
        public var slot: String
        public var alive: Bool
    }
}

/// One poll of a deployment being followed.
public struct FollowPoll: Sendable {
    public var record: DeploymentRecord
    /// Events after the seq asked for, oldest first, each with the deployment's status once it happened
    /// (a note carries no status of its own: it takes the one in effect then, not the one now).
    public var events: [(event: DeploymentEvent, status: DeploymentStatus)]
    /// The deployment reached an end: a terminal status, live with its bake over, or its owner gone.
    public var done: Bool
}

/// How a follower waits between reads of a deployment: woken by the ledger's announcements where the store
/// makes them (Postgres `LISTEN`/`NOTIFY`), else a poll every 250 ms (SQLite, or when listening failed).
public final class FollowWaiter: Sendable {
    let waiter: (any EventWaiter)?

    /// Between polls when there is no waiter.
    public static let pollMilliseconds = 250
    /// The longest a notified follower goes without reading: the owner's death writes nothing to the
    /// ledger, so a follower must look (``Engine/followIsOver(_:events:)``) even when no event is announced.
    public static let recheckMilliseconds = 2000

    init(_ waiter: (any EventWaiter)?) { self.waiter = waiter }

    /// `notify` when woken by announcements, `poll` otherwise.
    public var mechanism: String { waiter == nil ? "poll" : "notify" }

    /// Returns when events after `afterSeq` may be in the ledger (announced, or a poll or recheck interval
    /// passed). The blocking wait runs on a thread of its own, never on the cooperative pool or the engine's
    /// executor; cancelling the task interrupts it at once.
    /// - Throws: `CancellationError` when the task is cancelled.
    public func next(afterSeq: Int) async throws {
        guard let waiter else {
            try await Task.sleep(for: .milliseconds(Self.pollMilliseconds))
            return
        }
        await withTaskCancellationHandler {
            _ = await Blocking.run { waiter.wait(afterSequence: afterSeq, timeoutMs: Self.recheckMilliseconds) }
        } onCancel: {
            waiter.interrupt()
        }
        try Task.checkCancellation()
    }

    /// Stops listening (the connection is released).
    public func close() { waiter?.close() }
}

extension Engine {
    /// A waiter for `deploymentId`'s next events, listening from now on, so an event appended between the
    /// caller's next read and its wait still wakes it. Falls back to polling (logged) when the store announces
    /// nothing or listening cannot be set up: following then still works, only later.
    public func followWaiter(deploymentId: String) -> FollowWaiter {
        do throws(StoreError) {
            return FollowWaiter(try store.eventWaiter(deploymentId: deploymentId))
        } catch {
            log("follow_poll_fallback", ["deployment_id": .string(deploymentId), "reason": .string(error.message)])
            return FollowWaiter(nil)
        }
    }

    /// Every live (model, environment) with real liveness (slot and endpoint), its warm standby and any
    /// rollout in flight; optionally only one model or environment.
    public func listLive(modelName: String?, environment: String?) async throws(EngineError) -> [LiveSummary] {
        await reconcileOnce()
        let entries = try ledger { () throws(StoreError) in try store.allRegistryEntries() }
        var out: [LiveSummary] = []
        for e in entries where (modelName == nil || e.modelName == modelName) && (environment == nil || e.environment == environment) {
            let slots = ports(for: e.environment).slots
            let slotAlive = await slots.state(slotRef(e, e.slot))?.alive ?? false
            var standby: LiveSummary.Standby?
            if let prev = e.previousSlot, let version = e.previousVersion, prev != e.slot {
                let alive = await slots.state(slotRef(e, prev))?.alive ?? false
                standby = .init(version: version, deploymentId: e.previousDeploymentId, slot: prev, alive: alive)
            }
            let inFlight = try ledger { () throws(StoreError) in try store.inFlight(modelName: e.modelName, environment: e.environment) }
            out.append(LiveSummary(entry: e, slotAlive: slotAlive, endpointAlive: await endpointAnswers(e),
                                   standby: standby, inFlight: inFlight,
                                   metricsURL: await ports(for: e.environment).router.metricsURL(modelName: e.modelName, environment: e.environment)))
        }
        return out
    }

    /// The deployment now and its events after `afterSeq`, and whether following it can stop.
    public func followPoll(deploymentId: String, afterSeq: Int) async throws(EngineError) -> FollowPoll {
        await reconcileOnce()
        let r = try record(deploymentId)
        let all = try ledger { () throws(StoreError) in try store.events(deploymentId: deploymentId) }
        var status = r.status
        var out: [(event: DeploymentEvent, status: DeploymentStatus)] = []
        for (i, e) in all.enumerated() {
            if let to = e.toStatus { status = to } else if i == 0 { status = r.status }
            if e.seq > afterSeq { out.append((e, status)) }
        }
        return FollowPoll(record: r, events: out, done: followIsOver(r, events: all))
    }

    /// Whether a follower has seen the whole rollout. A live deployment is over once its bake is: the bake
    /// records a `bake` (or `rollback`) event when it ends; without a bake it is over at the switch.
    func followIsOver(_ r: DeploymentRecord, events: [DeploymentEvent]) -> Bool {
        if r.status.isTerminal { return true }
        switch r.status {
        case .live:
            let bake = (try? DeploymentPlan(json: r.plan))?.config.rollback.bakeSeconds ?? 0
            if bake == 0 { return true }
            if events.contains(where: { $0.step == "bake" || $0.step == "rollback" }) { return true }
            return !ownerIsAlive(r.owner)  // the agent that baked it is gone: nothing more will happen
        case .deploying, .validating, .switching:
            return !ownerIsAlive(r.owner)
        default:
            return false  // planned, approved, or waiting at a gate: a human may still act
        }
    }
}
