import JSON

/// A JSON-RPC error object. Expected failures are values of this type, built with the static factories.
///
/// Domain errors (codes -32000...-32099) carry a stable machine-readable `data.reason`.
public struct RPCError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var data: JSONValue?

    public init(code: Int, message: String, data: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    /// A domain error with `data = {reason, message, ...extra}`.
    public init(code: Int, reason: String, message: String, extra: [String: JSONValue] = [:]) {
        var d = extra
        d["reason"] = .string(reason)
        d["message"] = .string(message)
        self.init(code: code, message: message, data: .object(d))
    }

    /// The stable reason string, when `data` carries one.
    public var reason: String? { data?["reason"]?.stringValue }

    public var description: String { "\(code) \(message)" }

    public static func parseError(_ detail: String) -> RPCError {
        RPCError(code: -32700, reason: "parse_error", message: "Parse error: \(detail)")
    }
    public static func invalidRequest(_ detail: String, reason: String = "invalid_request") -> RPCError {
        RPCError(code: -32600, reason: reason, message: "Invalid Request: \(detail)")
    }
    /// A batch with more than `max` elements, refused whole.
    public static func batchTooLarge(max: Int) -> RPCError {
        RPCError(
            code: -32600, reason: "batch_too_large", message: "Invalid Request: a batch of more than \(max) requests",
            extra: ["max_batch_size": .int(Int64(max))])
    }
    public static func methodNotFound(_ method: String) -> RPCError {
        RPCError(code: -32601, reason: "method_not_found", message: "Method not found: \(method)", extra: ["method": .string(method)])
    }
    /// Invalid params naming the offending field.
    public static func invalidParams(_ detail: String, field: String? = nil) -> RPCError {
        var extra: [String: JSONValue] = [:]
        if let field { extra["field"] = .string(field) }
        return RPCError(code: -32602, reason: "invalid_params", message: "Invalid params: \(detail)", extra: extra)
    }
    public static func internalError(_ detail: String) -> RPCError {
        RPCError(code: -32603, reason: "internal_error", message: "Internal error: \(detail)")
    }
    public static let requestCancelled = RPCError(code: -32800, reason: "cancelled", message: "Request cancelled")

    /// The error object as JSON.
    public var json: JSONValue {
        var o: [String: JSONValue] = ["code": .int(Int64(code)), "message": .string(message)]
        if let data { o["data"] = data }
        return .object(o)
    }
}
