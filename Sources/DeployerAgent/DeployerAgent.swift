import DeployEngine
import DeployRuntime
import JSON
import JSONRPC

/// How a handler reports progress: natively as `deploy.progress`, or as MCP `notifications/progress`.
public struct ProgressSink: Sendable {
    let emit: @Sendable (_ params: JSONValue, _ percent: Double, _ message: String) -> Void

    public init(emit: @escaping @Sendable (JSONValue, Double, String) -> Void) {
        self.emit = emit
    }

    /// Sends one progress update.
    public func send(_ params: JSONValue, percent: Double, message: String) {
        emit(params, percent, message)
    }

    /// Progress that goes nowhere.
    public static let none = ProgressSink { _, _, _ in }
}

/// A method of the agent's own (not MCP glue), callable natively or as a tool.
public typealias DomainHandler = @Sendable (_ params: JSONValue?, _ progress: ProgressSink) async throws -> JSONValue

/// The agent: wires the JSON-RPC server to the deployment service and MCP.
public final class DeployerAgent: Sendable {
    let server: RPCServer
    let logger: Logger
    let options: ServeOptions
    let service: DeployService
    let mcp: MCPAdapter
    let doc: LazyJSON
    let validators: ParamValidators

    /// `takeover`: the endpoints `serve` took over from nginx at start-up (``routerStartup(_:logger:)``).
    public init(options: ServeOptions, server: RPCServer, logger: Logger, takeover: [TakeoverRecord] = []) {
        self.server = server
        self.logger = logger
        self.options = options
        self.service = DeployService(options: options, logger: logger, takeover: takeover)
        let doc = LazyJSON(text: openRPCDocumentText)
        self.doc = doc
        self.mcp = MCPAdapter(
            allowApprove: options.mcpAllowApprove,
            environments: {
                let home = options.home ?? DeployService.defaultHome(currentEnvironment())
                guard case .success(let policy) = DeployService.loadPolicy(options, home: home) else { return [] }
                return policy.environments.keys.sorted()
            },
            openRPC: { (try? doc.value()) ?? .object([:]) })
        self.validators = ParamValidators(openRPC: { (try? doc.value()) ?? .object([:]) }, mcpMethods: ["initialize", "tools/list", "tools/call"])
    }

    /// The native methods, alphabetised. Each checks its params against the contract before its own checks.
    var domainHandlers: [String: DomainHandler] {
        let s = service
        let handlers: [String: DomainHandler] = [
            "deploy.abort": { p, progress in try await s.abort(p, progress: progress) },
            "deploy.approve": { p, progress in try await s.approve(p, progress: progress) },
            "deploy.execute": { p, progress in try await s.execute(p, progress: progress) },
            "deploy.follow": { p, progress in try await s.follow(p, progress: progress) },
            "deploy.list": { p, _ in try await s.list(p) },
            "deploy.plan": { p, _ in try await s.plan(p) },
            "deploy.rollback": { p, progress in try await s.rollback(p, progress: progress) },
            "deploy.status": { p, _ in try await s.status(p) },
            "deploy.stop": { p, _ in try await s.stop(p) },
            "history.query": { p, _ in try await s.history(p) },
        ]
        let validators = self.validators
        return handlers.reduce(into: [:]) { out, entry in
            let (method, body) = entry
            out[method] = { p, progress in
                try validators.check(method, p)
                return try await body(p, progress)
            }
        }
    }

    /// Registers every method on the server.
    public func install() {
        // Parsed once on first use, not at start-up: cold start stays short.
        let cachedDoc = doc
        server.register("rpc.discover", .immediate { _ throws(RPCError) in try cachedDoc.value() })

        let handlers = domainHandlers
        for (method, body) in handlers {
            server.register(method, .task { params, ctx in
                try await body(params, Self.nativeProgress(ctx))
            })
        }

        let mcp = self.mcp
        let service = self.service
        let validators = self.validators
        server.register("initialize", .immediate { p throws(RPCError) in
            try validators.check("initialize", p)
            return try mcp.initialize(p)
        })
        server.onNotification("notifications/initialized") { _ in }
        server.register("tools/list", .immediate { p throws(RPCError) in
            try validators.check("tools/list", p)
            return mcp.listTools()
        })
        let logger = self.logger
        server.register("tools/call", .task { params, ctx in
            // The arguments are the tool's to check (a bad one is a tool error the model can read), not tools/call's.
            var envelope = params
            if case .object(var o)? = params, case .object? = o["arguments"] {
                o["arguments"] = .object([:])
                envelope = .object(o)
            }
            try validators.check("tools/call", envelope)
            guard let name = params?["name"]?.stringValue else {
                throw RPCError.invalidParams("tools/call needs a tool name", field: "name")
            }
            guard let method = mcp.method(forTool: name), let body = handlers[method] else {
                throw RPCError(code: -32602, reason: "unknown_tool", message: "Unknown tool: \(name)", extra: ["field": "name"])
            }
            let arguments = params?["arguments"] ?? .object([:])
            guard case .object = arguments else {
                throw RPCError.invalidParams("arguments must be an object", field: "arguments")
            }
            do {
                let result: JSONValue
                if method == "deploy.execute", mcp.clientSupportsElicitation {
                    try validators.check(method, arguments)
                    // The human at an elicitation-capable client answers the gates in place of deploy.approve.
                    let answerCheck = try validators.subset(of: "deploy.approve", ["decision", "approver", "comment"])
                    result = try await service.executeAskingAtGates(arguments, progress: Self.mcpProgress(ctx), answerCheck: answerCheck) { message, schema in
                        try await ctx.request("elicitation/create", ["message": .string(message), "requestedSchema": schema])
                    }
                } else {
                    result = try await body(arguments, Self.mcpProgress(ctx))
                }
                return MCPAdapter.toolResult(result)
            } catch let e as RPCError where e.code != -32800 {
                // Domain failures and bad arguments go back to the model as a tool result it can read and act
                // on (MCP 2025-11-25, SEP-1303: input validation errors are tool execution errors).
                logger.info("tool call failed", ["tool": .string(name), "reason": .string(e.reason ?? "")])
                return MCPAdapter.toolError(e)
            }
        })
    }

    static func nativeProgress(_ ctx: RequestContext) -> ProgressSink {
        ProgressSink { params, _, _ in ctx.notify("deploy.progress", params) }
    }

    static func mcpProgress(_ ctx: RequestContext) -> ProgressSink {
        ProgressSink { _, percent, message in ctx.reportProgress(percent, total: 100, message: message) }
    }

    /// Checks the configuration that must be right before serving (the approval policy file), so a typo
    /// is reported at start-up rather than on the first deployment. Returns the problem, if any.
    public static func configurationProblem(_ options: ServeOptions) -> String? {
        let home = options.home ?? DeployService.defaultHome(currentEnvironment())
        switch DeployService.loadPolicy(options, home: home) {
        case .failure(let problem): return problem.message
        case .success(let policy):
            if case .failure(let problem) = DeployService.kubernetesPorts(policy, environment: currentEnvironment(), home: home,
                                                                          catalog: LocalCatalog(home: "/nonexistent")) {
                return problem.message
            }
            return SSHSignatures.configurationProblem(policy)
        }
    }

    /// Releases the ledger connection.
    public func close() async {
        await service.close()
    }
}

/// A JSON document parsed on first use.
final class LazyJSON: Sendable {
    let text: String
    private let cache = Mutex<JSONValue?>(nil)

    init(text: String) { self.text = text }

    func value() throws(RPCError) -> JSONValue {
        if let v = cache.withLock({ $0 }) { return v }
        do {
            let v = try JSONValue.parse(text)
            cache.withLock { $0 = v }
            return v
        } catch {
            throw RPCError.internalError("the embedded OpenRPC document does not parse: \(error)")
        }
    }
}

import Synchronization
