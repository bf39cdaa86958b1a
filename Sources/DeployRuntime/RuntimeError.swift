/// An error from a runtime effect: a stable machine-readable `code` plus a human `message`.
///
/// Codes in use: `spawn_failed`, `command_timeout`, `port_in_use`, `router_config_invalid`, `nginx_failed`,
/// `http_timeout`, `connection_refused`, `http_failed`, `model_not_found`, `bento_not_found`, `slot_busy`,
/// `invalid_name`, `io_failed`, `store_invalid`, `weights_unsupported` (nginx asked for a split); from the HAProxy
/// router: `haproxy_failed`, `invalid_weights`, `route_not_found`, `router_state_invalid`.
public struct RuntimeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable reason string, safe to put on the wire and to match on.
    public var code: String
    /// What went wrong, for a person.
    public var message: String

    /// Creates an error with a stable `code` and a readable `message`.
    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`.
    public var description: String { "\(code): \(message)" }

    static func spawnFailed(_ m: String) -> RuntimeError { .init(code: "spawn_failed", message: m) }
    static func io(_ m: String) -> RuntimeError { .init(code: "io_failed", message: m) }
    static func invalidName(_ m: String) -> RuntimeError { .init(code: "invalid_name", message: m) }
}
