#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeployEngine
import DeploymentStore
import JSON
import JSONRPC

extension DeployService {
    /// `deploy.list`: what is live now, per (model, environment), with real liveness.
    func list(_ raw: JSONValue?) async throws -> JSONValue {
        let p = try Params(raw, allowed: ["model_name", "environment"])
        let model = try p.name("model_name", required: false)
        let env = try p.name("environment", required: false)
        let rows = try await call { (e) async throws(EngineError) in try await e.listLive(modelName: model, environment: env) }
        return ["live": .array(rows.map(Self.liveRow))]
    }

    /// `deploy.stop`: takes (model, environment) down (route removed, slots stopped, live deployment `stopped`).
    /// Not an MCP tool: a person runs it.
    func stop(_ raw: JSONValue?) async throws -> JSONValue {
        let p = try Params(raw, allowed: ["model_name", "environment", "requested_by", "reason"])
        let model = try p.name("model_name")!
        let env = try p.name("environment")!
        let by = try p.actor("requested_by")!
        let reason = try p.string("reason")
        let o = try await call { (e) async throws(EngineError) in
            try await e.stop(modelName: model, environment: env, reason: reason, requestedBy: by)
        }
        return ["deployment": o.record.map(Wire.deployment) ?? .null, "stopped_slots": .array(o.stoppedSlots.map { .string($0) })]
    }

    static func liveRow(_ s: LiveSummary) -> JSONValue {
        let e = s.entry
        var standby: JSONValue = .null
        if let w = s.standby {
            standby = ["model_version": .string(w.version), "deployment_id": .string(w.deploymentId), "slot": .string(w.slot),
                       "alive": .bool(w.alive)]
        }
        var inFlight: JSONValue = .null
        if let r = s.inFlight {
            inFlight = ["deployment_id": .string(r.deploymentId), "status": .string(r.status.rawValue),
                        "model_version": .string(r.modelVersion), "requested_by": .string(r.requestedBy)]
        }
        return [
            "model_name": .string(e.modelName), "environment": .string(e.environment), "model_version": .string(e.modelVersion),
            "deployment_id": .string(e.deploymentId), "endpoint_url": .string(e.endpointURL), "slot": .string(e.slot),
            "slot_alive": .bool(s.slotAlive), "endpoint_alive": .bool(s.endpointAlive), "standby": standby,
            "in_flight": inFlight, "since": .string(RFC3339.format(e.updatedAt)), "metrics_url": .string(s.metricsURL),
        ]
    }

    /// How far along a status is, for followers (who see ledger events, not the executing agent's steps).
    static func followPercent(_ status: DeploymentStatus) -> Double {
        switch status {
        case .planned, .awaitingApproval, .approved: return 0
        case .deploying: return 10
        case .validating: return 40
        case .awaitingPromotion: return 70
        case .switching, .canary, .awaitingStep: return 75
        case .live: return 90
        case .failed, .rejected, .rolledBack, .interrupted, .superseded, .expired, .aborted, .stopped: return 100
        }
    }

    /// `deploy.follow`: streams a deployment's ledger events as `deploy.progress` notifications, from any
    /// agent process sharing the ledger, until the rollout ends; answers with the deployment as it ended.
    /// Between reads it waits for the ledger to announce an event (Postgres `LISTEN`/`NOTIFY`, rechecking
    /// every 2 s) or polls every 250 ms (SQLite); cancelling the request stops following at once.
    func follow(_ raw: JSONValue?, progress: ProgressSink) async throws -> JSONValue {
        let p = try Params(raw, allowed: ["deployment_id", "after_seq"])
        let id = try p.required("deployment_id")
        var lastSeq = try p.int("after_seq", in: 0...Int(Int32.max)) ?? 0
        // Listening starts before the first read, so nothing appended between a read and a wait is missed.
        let waiter = try await call { (e) async throws(EngineError) in e.followWaiter(deploymentId: id) }
        defer { waiter.close() }
        while true {
            let seq = lastSeq
            let poll = try await call { (e) async throws(EngineError) in try await e.followPoll(deploymentId: id, afterSeq: seq) }
            for (ev, status) in poll.events {
                var percent = Self.followPercent(status)
                if poll.done, ev.seq == poll.events.last?.event.seq { percent = 100 }
                let params: JSONValue = [
                    "deployment_id": .string(id), "status": .string(status.rawValue), "step": .string(ev.step),
                    "message": .string(ev.message), "progress": .double(percent), "at": .string(RFC3339.format(ev.at)),
                ]
                // Canary steps and analysis windows carry their weights and figures, as deploy.progress does live.
                if [Step.canaryStep.wireName, Step.analysis.wireName].contains(ev.step), case .object(var o) = params, case .object(let d) = ev.data, !d.isEmpty {
                    o["data"] = ev.data
                    progress.send(.object(o), percent: percent, message: ev.message)
                } else {
                    progress.send(params, percent: percent, message: ev.message)
                }
                lastSeq = max(lastSeq, ev.seq)
            }
            if poll.done {
                return ["deployment": Wire.deployment(poll.record), "last_seq": .integer(lastSeq)]
            }
            try await waiter.next(afterSeq: lastSeq)
        }
    }
}
