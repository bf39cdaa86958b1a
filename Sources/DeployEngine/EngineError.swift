import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

/// A failure the caller can act on: what kind of refusal it is, a stable reason and a sentence. The
/// engine knows no transport: the agent maps each kind to its JSON-RPC code (DeployerAgent/ErrorMapping).
public struct EngineError: Error, Sendable, CustomStringConvertible {
    /// The kinds of refusal, each a row of the protocol's error table.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// A deployment, model or bento does not exist.
        case notFound
        /// Another rollout holds the lock, the status changed meanwhile, or a key names another request.
        case conflict
        /// The live version changed since the plan was made.
        case planStale
        /// The approval was refused, is missing, or came too late.
        case approval
        /// The planner or the policy refuses the request.
        case refused
        /// A parameter is invalid (named in `extra["field"]`).
        case invalidParams
        /// There is nothing to roll back to.
        case nothingToRollBack
        /// The ledger cannot be reached.
        case ledgerUnavailable
        /// The runtime (slots, router) failed.
        case runtimeUnavailable
        /// The request was cancelled.
        case cancelled
        /// A bug or a corrupt record.
        case internalError
    }

    /// What kind of refusal.
    public var kind: Kind
    /// Stable, machine-readable.
    public var reason: String
    /// A sentence for people.
    public var message: String
    /// More fields for the error's `data`.
    public var extra: [String: JSONValue]

    /// An error.
    public init(_ kind: Kind, reason: String, message: String, extra: [String: JSONValue] = [:]) {
        self.kind = kind
        self.reason = reason
        self.message = message
        self.extra = extra
    }

    public var description: String { "\(reason): \(message)" }

    /// Not there.
    public static func notFound(_ reason: String, _ message: String) -> EngineError { .init(.notFound, reason: reason, message: message) }
    /// Another rollout is in flight (`id` names it when known).
    public static func rolloutInProgress(_ id: String?, _ message: String) -> EngineError {
        .init(.conflict, reason: "rollout_in_progress", message: message, extra: id.map { ["deployment_id": .string($0)] } ?? [:])
    }
    /// Plan again.
    public static func planStale(_ message: String) -> EngineError { .init(.planStale, reason: "plan_stale", message: message) }
    /// An approval problem.
    public static func approval(_ reason: String, _ message: String) -> EngineError { .init(.approval, reason: reason, message: message) }
    /// A refusal by the planner or the policy.
    public static func refused(_ reason: String, _ message: String) -> EngineError { .init(.refused, reason: reason, message: message) }
    /// An invalid parameter.
    public static func invalidParams(field: String, _ message: String) -> EngineError {
        .init(.invalidParams, reason: "invalid_params", message: message, extra: ["field": .string(field)])
    }
    /// The request was cancelled.
    public static let cancelled = EngineError(.cancelled, reason: "cancelled", message: "Request cancelled")
    /// A planner refusal: one that names a field is about the caller's params, the rest are refusals.
    public static func planRefusal(_ r: PlanRefusal) -> EngineError {
        if let field = r.field { return .invalidParams(field: field, r.message) }
        return .refused(r.reason, r.message)
    }
    /// Nothing to roll back.
    public static func nothingToRollBack(_ reason: String, _ message: String) -> EngineError {
        .init(.nothingToRollBack, reason: reason, message: message)
    }
    /// Nothing is live for the model and environment (`deploy.stop`).
    public static func nothingDeployed(_ message: String) -> EngineError {
        .init(.nothingToRollBack, reason: "nothing_deployed", message: message)
    }
    /// A ledger failure, by what the ledger said.
    public static func ledger(_ e: StoreError) -> EngineError {
        switch e.code {
        case .notFound: return .notFound("deployment_not_found", e.message)
        case .rolloutInProgress: return .rolloutInProgress(e.deploymentId, e.message)
        case .invalidCursor: return .invalidParams(field: "cursor", e.message)
        case .statusConflict:
            return .init(.conflict, reason: "status_conflict", message: e.message,
                         extra: e.actualStatus.map { ["status": .string($0.rawValue)] } ?? [:])
        case .duplicateIdempotencyKey: return .invalidParams(field: "idempotency_key", e.message)
        case .database: return .init(.ledgerUnavailable, reason: "ledger_unavailable", message: e.message)
        }
    }
    /// A runtime failure.
    public static func runtime(_ e: RuntimeError) -> EngineError {
        // The cluster's own reasons (kube_*, kubectl_*) are stable and say more than runtime_unavailable.
        let kube = e.code.hasPrefix("kube_") || e.code.hasPrefix("kubectl_")
        return .init(.runtimeUnavailable, reason: kube ? e.code : "runtime_unavailable", message: "\(e.code): \(e.message)")
    }
    /// A refused lifecycle transition: approve/reject outside the gate is an approval problem, the rest a conflict.
    public static func lifecycle(_ e: LifecycleError, status: DeploymentStatus) -> EngineError {
        let kind: Kind = switch e.event {
        case .approve, .reject: .approval
        default: .conflict
        }
        return .init(kind, reason: e.reason, message: e.message, extra: ["status": .string(status.rawValue)])
    }
}

/// The integer `error.code` stored with a failed deployment: the refusal's code when a refusal ended it
/// (`kind`), else the code of a deployment that failed on its own. The agent provides it, so the codes
/// live in one place (DeployerAgent/ErrorMapping).
public typealias StoredErrorCode = @Sendable (_ refusal: EngineError.Kind?) -> Int
