import JSON
import JSONRPC

/// The deployment methods (temporary: replaced by the engine-backed service).
final class DeployService: Sendable {
    init(options: ServeOptions, logger: Logger) {}
    func plan(_ p: JSONValue?) async throws -> JSONValue { throw RPCError.internalError("not implemented yet") }
    func approve(_ p: JSONValue?, progress: ProgressSink) async throws -> JSONValue { throw RPCError.internalError("not implemented yet") }
    func execute(_ p: JSONValue?, progress: ProgressSink) async throws -> JSONValue { throw RPCError.internalError("not implemented yet") }
    func rollback(_ p: JSONValue?, progress: ProgressSink) async throws -> JSONValue { throw RPCError.internalError("not implemented yet") }
    func status(_ p: JSONValue?) async throws -> JSONValue { throw RPCError.internalError("not implemented yet") }
    func history(_ p: JSONValue?) async throws -> JSONValue { throw RPCError.internalError("not implemented yet") }
    func close() async {}
}
