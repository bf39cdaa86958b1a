import JSON
import JSONRPC
import Synchronization

/// MCP over the same stdio: `initialize`, `tools/list`, `tools/call`, mapped onto the native methods.
///
/// Tool names use `[a-z_]` only (LLM function calling rejects dots); each tool's input and output schema
/// come from `protocol/openrpc.json`, so the MCP view and the native view cannot disagree.
final class MCPAdapter: Sendable {
    /// Protocol revisions this agent speaks, oldest first.
    static let supportedVersions = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]

    /// Native methods offered as tools, in listing order.
    static let toolMethods = ["deploy.plan", "deploy.execute", "deploy.abort", "deploy.rollback", "deploy.status", "deploy.list", "deploy.follow", "history.query"]
    static let approveMethod = "deploy.approve"

    let allowApprove: Bool
    /// The environments the approval policy knows, listed as an enum in the tools' schemas so a model
    /// does not guess; empty when unknown.
    let environments: @Sendable () -> [String]
    private let clientCapabilities = Mutex<JSONValue?>(nil)
    private let toolCache = Mutex<[Tool]?>(nil)
    private let openRPC: @Sendable () -> JSONValue

    struct Tool: Sendable {
        var name: String
        var method: String
        var definition: JSONValue
    }

    /// - Parameter openRPC: the contract, asked for on first use (not at start-up).
    init(allowApprove: Bool, environments: @escaping @Sendable () -> [String] = { [] }, openRPC: @escaping @Sendable () -> JSONValue) {
        self.allowApprove = allowApprove
        self.environments = environments
        self.openRPC = openRPC
    }

    /// The tools, built from the contract once.
    var tools: [Tool] {
        if let t = toolCache.withLock({ $0 }) { return t }
        var methods = Self.toolMethods
        if allowApprove { methods.insert(Self.approveMethod, at: 1) }
        let doc = openRPC()
        let envs = environments()
        let t = methods.map { Self.tool(for: $0, openRPC: doc, environments: envs) }
        toolCache.withLock { $0 = t }
        return t
    }

    /// Whether the connected MCP client declared the `elicitation` capability.
    var clientSupportsElicitation: Bool {
        clientCapabilities.withLock { $0?["elicitation"] != nil }
    }

    func initialize(_ params: JSONValue?) throws(RPCError) -> JSONValue {
        guard case .object? = params else { throw .invalidParams("initialize needs an object with protocolVersion") }
        guard let requested = params?["protocolVersion"]?.stringValue else {
            throw .invalidParams("protocolVersion must be a string", field: "protocolVersion")
        }
        clientCapabilities.withLock { $0 = params?["capabilities"] }
        // The MCP lifecycle: answer with the client's version when supported, else the newest we speak.
        let version = Self.supportedVersions.contains(requested) ? requested : Self.supportedVersions.last!
        return [
            "protocolVersion": .string(version),
            "capabilities": ["tools": ["listChanged": false]],
            "serverInfo": ["name": .string(AgentInfo.name), "version": .string(AgentInfo.version)],
            "instructions": .string(
                "Plans, executes and rolls back BentoML model deployments. Call deploy_plan, then deploy_execute "
                    + "once the plan is approved by a human (approvals are not an MCP tool by default)."),
        ]
    }

    func listTools() -> JSONValue {
        ["tools": .array(tools.map(\.definition))]
    }

    /// The native method behind tool `name`, or nil for an unknown tool.
    func method(forTool name: String) -> String? {
        tools.first { $0.name == name }?.method
    }

    /// Wraps a native result as a tool result.
    static func toolResult(_ result: JSONValue) -> JSONValue {
        var content: [JSONValue] = [["type": "text", "text": .string(result.jsonString)]]
        if let next = gateGuidance(result) { content.append(["type": "text", "text": .string(next)]) }
        return ["content": .array(content), "structuredContent": result, "isError": false]
    }

    /// What a model should tell its user when a deployment waits at a gate: a person approves, with a
    /// command they can run; the model cannot (`deploy_approve` is not its tool, and must not be).
    static func gateGuidance(_ result: JSONValue) -> String? {
        let status = result["status"]?.stringValue ?? result["deployment"]?["status"]?.stringValue
        let id = result["deployment_id"]?.stringValue ?? result["deployment"]?["deployment_id"]?.stringValue
        guard let id, let status, status == "awaiting_approval" || status == "awaiting_promotion" else { return nil }
        let gate = status == "awaiting_approval" ? "deploy" : "promote"
        let then = gate == "deploy" ? " Once approved, call deploy_execute again with this deployment_id." : " The rollout resumes by itself once approved."
        return "Deployment \(id) waits for a human approval at gate \(gate). You cannot approve it. Ask a person allowed to approve "
            + "(not the requester where four eyes applies) to run: deployctl approve --id \(id) --gate \(gate) --approver <their name> "
            + "(or deploy.approve from their own client).\(then)"
    }

    /// Wraps a domain failure or an input error as a tool result with `isError: true`, so the model sees
    /// the code, reason and offending field and can correct its call.
    static func toolError(_ e: RPCError) -> JSONValue {
        var detail: [String: JSONValue] = ["code": .int(Int64(e.code)), "message": .string(e.message)]
        if let data = e.data {
            detail["data"] = data
            if let reason = data["reason"] { detail["reason"] = reason }
            if let field = data["field"] { detail["field"] = field }
        }
        let body: JSONValue = ["error": .object(detail)]
        return ["content": [["type": "text", "text": .string(body.jsonString)]], "structuredContent": body, "isError": true]
    }

    static func tool(for method: String, openRPC: JSONValue, environments: [String] = []) -> Tool {
        let name = method.replacingDots()
        let components = openRPC["components"]?["schemas"]?.objectValue ?? [:]
        let entry = openRPC["methods"]?.arrayValue?.first { $0["name"]?.stringValue == method }
        var properties: [String: JSONValue] = [:]
        var required: [JSONValue] = []
        for p in entry?["params"]?.arrayValue ?? [] {
            guard let pname = p["name"]?.stringValue else { continue }
            var schema = inline(p["schema"] ?? .object([:]), components, depth: 0)
            if let d = p["description"], schema["description"] == nil, case .object(var o) = schema {
                o["description"] = d
                schema = .object(o)
            }
            if pname == "environment", !environments.isEmpty, case .object(var o) = schema {
                o["enum"] = .array(environments.map { .string($0) })
                schema = .object(o)
            }
            properties[pname] = schema
            if p["required"]?.boolValue == true { required.append(.string(pname)) }
        }
        var input: [String: JSONValue] = ["type": "object", "properties": .object(properties), "additionalProperties": false]
        if !required.isEmpty { input["required"] = .array(required) }
        var def: [String: JSONValue] = [
            "name": .string(name),
            "description": .string(entry?["description"]?.stringValue ?? entry?["summary"]?.stringValue ?? method),
            "inputSchema": .object(input),
        ]
        if let r = entry?["result"]?["schema"] {
            let out = inline(r, components, depth: 0)
            if out["type"]?.stringValue == "object" { def["outputSchema"] = out }
        }
        return Tool(name: name, method: method, definition: .object(def))
    }

    /// Replaces `$ref: #/components/schemas/X` with the schema itself: MCP clients see each tool's schema alone.
    static func inline(_ v: JSONValue, _ components: [String: JSONValue], depth: Int) -> JSONValue {
        guard depth < 32 else { return .object([:]) }
        switch v {
        case .object(let o):
            if let ref = o["$ref"]?.stringValue, ref.hasPrefix("#/components/schemas/") {
                let key = String(ref.dropFirst("#/components/schemas/".count))
                return inline(components[key] ?? .object([:]), components, depth: depth + 1)
            }
            var out: [String: JSONValue] = [:]
            // Our own `x-` keywords mean nothing to a model's function-calling schema checker, and strict ones refuse them.
            for (k, x) in o where !k.hasPrefix("x-") { out[k] = inline(x, components, depth: depth + 1) }
            return .object(out)
        case .array(let a):
            return .array(a.map { inline($0, components, depth: depth + 1) })
        default:
            return v
        }
    }
}

extension String {
    func replacingDots() -> String {
        String(map { $0 == "." ? "_" : $0 })
    }
}
