import DeployEngine
import JSON
import JSONRPC

/// The one place the engine's refusals meet JSON-RPC codes (the protocol's x-errors table).
enum ErrorMapping {
    /// The code of a deployment that failed on its own (readiness, smoke tests, bake, interruption): never
    /// sent as a JSON-RPC error, only stored in the deployment's `error`.
    static let deploymentFailed = -32009

    /// The JSON-RPC code of a kind of refusal.
    static func code(_ kind: EngineError.Kind) -> Int {
        switch kind {
        case .notFound: return -32001
        case .conflict: return -32002
        case .planStale: return -32003
        case .approval: return -32004
        case .refused: return -32005
        case .nothingToRollBack: return -32006
        case .ledgerUnavailable: return -32007
        case .runtimeUnavailable: return -32008
        case .invalidParams: return -32602
        case .cancelled: return -32800
        case .internalError: return -32603
        }
    }

    /// The integer `error.code` stored with a failed deployment (see ``StoredErrorCode``).
    static let storedCode: StoredErrorCode = { refusal in refusal.map(code) ?? deploymentFailed }

    /// The JSON-RPC error for an engine refusal.
    static func rpc(_ e: EngineError) -> RPCError {
        if e.kind == .cancelled { return .requestCancelled }
        return RPCError(code: code(e.kind), reason: e.reason, message: e.message, extra: e.extra)
    }
}
