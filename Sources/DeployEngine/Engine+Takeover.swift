import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

/// One endpoint `serve` moved from the home's nginx to HAProxy before it answered anything.
public struct TakeoverRecord: Sendable, Hashable {
    /// Model name.
    public var modelName: String
    /// Environment.
    public var environment: String
    /// The endpoint's port (unchanged by the move).
    public var port: Int
    /// The slot both routers answered from during the move.
    public var slot: String
    /// How long the port refused connections, ms (0: HAProxy bound beside nginx, nothing was refused).
    public var refusedMs: Double

    /// A record.
    public init(modelName: String, environment: String, port: Int, slot: String, refusedMs: Double) {
        self.modelName = modelName
        self.environment = environment
        self.port = port
        self.slot = slot
        self.refusedMs = refusedMs
    }
}

extension Engine {
    /// Records each endpoint moved from nginx to HAProxy as a `router_takeover` event on the deployment the
    /// registry names live there (the move changed which process serves it). An endpoint with no live
    /// deployment (a registry that says otherwise) is logged; a ledger that does not answer is logged, as
    /// the move itself already happened and is in the agent's log.
    public func recordTakeover(_ moved: [TakeoverRecord]) {
        for m in moved {
            let live: DeploymentRecord?
            do {
                live = try liveDeployment(m.modelName, m.environment)
            } catch {
                log("the router takeover is not recorded: the ledger did not answer",
                    ["model_name": .string(m.modelName), "environment": .string(m.environment), "error": .string(error.message)])
                continue
            }
            guard let r = live else {
                log("the router takeover is not recorded: nothing is live there",
                    ["model_name": .string(m.modelName), "environment": .string(m.environment), "port": .int(Int64(m.port))])
                continue
            }
            let how = m.refusedMs == 0 ? "HAProxy bound beside nginx, no connection refused"
                                       : "the port refused connections for \(Int(m.refusedMs.rounded(.up))) ms"
            note(r, step: "router_takeover",
                 message: "endpoint on port \(m.port) moved from nginx to HAProxy at start-up (slot \(m.slot); \(how))",
                 data: ["port": .integer(m.port), "slot": .string(m.slot), "from": "nginx", "to": "haproxy", "refused_ms": .double(m.refusedMs)])
        }
    }
}
