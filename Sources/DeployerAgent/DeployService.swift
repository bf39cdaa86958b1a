#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import DeployCore
import DeployEngine
import DeploymentStore
import DeployRuntime
import JSON
import JSONRPC
import Synchronization

/// The deployment methods: wire params in, engine calls, wire results out.
///
/// The engine (and with it the ledger) is opened on the first deployment call, not at start-up,
/// so `initialize` and `ping` answer in a couple of milliseconds.
final class DeployService: Sendable {
    let options: ServeOptions
    let logger: Logger
    private let engineState = Mutex<Engine?>(nil)
    /// Endpoints `serve` took over from nginx before it answered anything: recorded on their live deployments
    /// when the engine (and so the ledger) is made.
    let takeover: [TakeoverRecord]

    init(options: ServeOptions, logger: Logger, takeover: [TakeoverRecord] = []) {
        self.options = options
        self.logger = logger
        self.takeover = takeover
    }

    // MARK: - Wiring

    func engine() throws(RPCError) -> Engine {
        // Made under the lock: concurrent first calls must share one engine (one ledger connection,
        // one reconciliation), not race to open and migrate the ledger twice.
        // A failure is not kept: a ledger that was down at the first call is tried again at the next.
        try engineState.withLock { state -> Result<Engine, RPCError> in
            if let existing = state { return .success(existing) }
            let made = Result { () throws(RPCError) -> Engine in try makeEngine() }
            if case .success(let e) = made { state = e }
            return made
        }.get()
    }

    private func makeEngine() throws(RPCError) -> Engine {
        let env = currentEnvironment()
        let home = options.home ?? Self.defaultHome(env)
        let store: any DeploymentStore
        do {
            store = try openStore(databaseURL: options.databaseURL, home: home)
            try store.migrate()
        } catch {
            logger.error("the ledger cannot be opened", ["error": .string(error.message)])
            throw RPCError(code: ErrorMapping.code(.ledgerUnavailable), reason: "ledger_unavailable", message: "the ledger cannot be opened: \(error.message)")
        }
        let policy: ApprovalPolicy
        switch Self.loadPolicy(options, home: home) {
        case .success(let p): policy = p
        case .failure(let problem):
            // `serve` checks the policy before answering anything, so this is a file changed since.
            throw RPCError.internalError(problem.message)
        }
        let bentoml = options.bentoml ?? (try? ProcessLauncher.resolve("bentoml")) ?? "bentoml"
        let nginx = options.nginx ?? (try? ProcessLauncher.resolve("nginx")) ?? (access("/usr/sbin/nginx", X_OK) == 0 ? "/usr/sbin/nginx" : "nginx")
        let haproxy = options.haproxy ?? HAProxyRouter.defaultExecutable
        let bentomlHome = env["BENTOML_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((env["HOME"] ?? "/root") + "/bentoml")
        let config = EngineConfig(home: home, bentoml: bentoml, bentomlHome: bentomlHome, nginx: nginx, agentID: Engine.makeAgentID())
        let logger = self.logger
        logger.info("engine ready", ["home": .string(home), "ledger": .string(options.databaseURL == nil ? "sqlite" : "postgres"),
                                     "bentoml": .string(bentoml), "bentoml_home": .string(bentomlHome), "nginx": .string(nginx),
                                     "router": .string(options.router.rawValue), "haproxy": .string(haproxy)])
        var runtime = RuntimePorts.local(home: home, bentoml: bentoml, bentomlHome: bentomlHome, nginx: nginx,
                                         router: options.router, haproxy: haproxy)
        switch Self.kubernetesPorts(policy, environment: env, home: home, catalog: runtime.catalog) {
        case .success(let ports): runtime.environments = ports
        case .failure(let problem): throw RPCError.internalError(problem.message)
        }
        let engine = Engine(config: config, store: store, policy: policy, runtime: runtime, storedCode: ErrorMapping.storedCode,
                            log: { msg, fields in logger.debug(msg, fields) })
        engine.watchRouter()
        engine.recordTakeover(takeover)
        return engine
    }

    /// The approval policy: `--policy FILE`, else `<home>/policy.json` when present, else the built-in one.
    static func loadPolicy(_ options: ServeOptions, home: String) -> Result<ApprovalPolicy, ConfigurationError> {
        let path = options.policyPath ?? (access(home + "/policy.json", F_OK) == 0 ? home + "/policy.json" : nil)
        guard let path else { return .success(ApprovalPolicy.defaults) }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            return .failure(ConfigurationError(message: "cannot read the approval policy \(path)"))
        }
        do {
            return .success(try ApprovalPolicy(json: try JSONValue.parse(text)))
        } catch {
            return .failure(ConfigurationError(message: "the approval policy \(path) is invalid: \(error)"))
        }
    }

    /// A configuration file that `serve` cannot use.
    struct ConfigurationError: Error {
        var message: String
    }

    static func defaultHome(_ env: [String: String]) -> String {
        if let x = env["XDG_STATE_HOME"], !x.isEmpty { return x + "/model-deployer" }
        return (env["HOME"] ?? "/tmp") + "/.local/state/model-deployer"
    }

    /// Stops the `kubectl proxy` processes the Kubernetes runtime started.
    func close() async {
        KubeProxy.stopAll()
    }

    /// Runs an engine call on the blocking executor: ledger calls and hashing block their thread, and on
    /// the cooperative pool (two threads here) two slow plans would stall every other request.
    func call<T>(_ body: (Engine) async throws(EngineError) -> T) async throws(RPCError) -> T {
        try await withTaskExecutorPreference(BlockingExecutor.shared) { () async throws(RPCError) -> T in
            let engine = try engine()
            do throws(EngineError) { return try await body(engine) } catch {
                throw ErrorMapping.rpc(error)
            }
        }
    }

    static func progressHandler(_ sink: ProgressSink) -> ProgressHandler {
        { u in
            let params: JSONValue = [
                "deployment_id": .string(u.deploymentId), "status": .string(u.status.rawValue), "step": .string(u.step),
                "message": .string(u.message), "progress": .double(u.percent), "at": .string(RFC3339.format(u.at)),
            ]
            if let data = u.data, case .object(var o) = params {
                o["data"] = data
                sink.send(.object(o), percent: u.percent, message: u.message)
                return
            }
            sink.send(params, percent: u.percent, message: u.message)
        }
    }

    // MARK: - Methods

    func plan(_ raw: JSONValue?) async throws -> JSONValue {
        let p = try Params(raw, allowed: ["model_name", "model_version", "environment", "requested_by", "bento", "strategy",
                                          "smoke_tests", "requirements", "gates", "idempotency_key", "signed_at", "signature", "canary"])
        let model = try p.name("model_name")!
        let version = try p.name("model_version")!
        let env = try p.name("environment")!
        let requestedBy = try p.actor("requested_by")!
        let bento = try p.string("bento")
        if let bento, let problem = Names.validateTag(bento, field: "bento") { throw RPCError.invalidParams(problem, field: "bento") }
        let strategy = try p.enumValue("strategy", StrategyRequest.self) ?? .auto
        var smoke: [SmokeTest] = []
        if let s = p.members["smoke_tests"], !s.isNull {
            guard case .array(let items) = s else { throw RPCError.invalidParams("smoke_tests must be an array", field: "smoke_tests") }
            for (i, item) in items.enumerated() {
                let path = "smoke_tests[\(i)]"
                guard case .object(let o) = item else { throw RPCError.invalidParams("\(path) must be an object", field: path) }
                for k in o.keys where !["api", "input", "expect"].contains(k) {
                    throw RPCError.invalidParams("\(path) has an unknown member '\(k)'", field: "\(path).\(k)")
                }
                guard let given = o["api"]?.stringValue else { throw RPCError.invalidParams("\(path).api must be a string", field: "\(path).api") }
                // BentoML's docs show routes ("/classify"); the plan stores the API name either way.
                let api = Names.apiName(given)
                if let problem = Names.validateAPI(api, field: "\(path).api") { throw RPCError.invalidParams(problem, field: "\(path).api") }
                guard let input = o["input"] else { throw RPCError.invalidParams("\(path).input is required", field: "\(path).input") }
                smoke.append(SmokeTest(api: api, input: input, expect: o["expect"]))
            }
        }
        var req = RequirementOverrides()
        if let r = p.members["requirements"], !r.isNull {
            guard case .object(let o) = r else { throw RPCError.invalidParams("requirements must be an object", field: "requirements") }
            for k in o.keys where !["cpu", "memory_mb", "gpu", "expected_rps", "latency_slo_ms"].contains(k) {
                throw RPCError.invalidParams("requirements has an unknown member '\(k)'", field: "requirements.\(k)")
            }
            req.cpu = try p.number("cpu", in: o, path: "requirements.cpu")
            req.memoryMB = try p.wholeNumber("memory_mb", in: o, path: "requirements.memory_mb", roundingUp: true)
            req.gpu = try p.wholeNumber("gpu", in: o, path: "requirements.gpu", roundingUp: false)
            req.expectedRPS = try p.number("expected_rps", in: o, path: "requirements.expected_rps")
            req.latencySLOms = try p.number("latency_slo_ms", in: o, path: "requirements.latency_slo_ms")
        }
        var gates: [GateKind] = []
        if let g = p.members["gates"], !g.isNull {
            guard case .array(let items) = g else { throw RPCError.invalidParams("gates must be an array", field: "gates") }
            for item in items {
                guard let s = item.stringValue, let k = GateKind(rawValue: s), k != .step else {
                    throw RPCError.invalidParams("gates entries must be \"deploy\" or \"promote\"", field: "gates")
                }
                gates.append(k)
            }
        }
        let key = try p.string("idempotency_key")
        if let key, key.isEmpty || key.utf8.count > 200 { throw RPCError.invalidParams("idempotency_key must be 1..200 characters", field: "idempotency_key") }
        var request = PlanRequest(modelName: model, modelVersion: version, environment: env, requestedBy: requestedBy, bento: bento,
                                  strategy: strategy, smokeTests: smoke, requirements: req, extraGates: gates, idempotencyKey: key)
        request.signature = try Self.planSignature(p)  // signed requests: DeployService+Signatures.swift
        if let c = p.members["canary"], !c.isNull {
            guard case .object = c else { throw RPCError.invalidParams("canary must be an object", field: "canary") }
            request.canary = c
        }
        let r = try await call { (e) async throws(EngineError) in try await e.plan(request) }
        return ["deployment_id": .string(r.deploymentId), "status": .string(r.status.rawValue), "plan_hash": .string(r.planHash),
                "plan": r.plan, "deployment": Wire.deployment(r)]
    }

    func approve(_ raw: JSONValue?, progress: ProgressSink) async throws -> JSONValue {
        let p = try Params(raw, allowed: ["deployment_id", "approver", "decision", "gate", "comment", "signature"])
        let id = try p.required("deployment_id")
        let approver = try p.actor("approver")!
        let decision = try p.required("decision")
        guard decision == "approve" || decision == "reject" else {
            throw RPCError.invalidParams("decision must be \"approve\" or \"reject\"", field: "decision")
        }
        let gate = try p.enumValue("gate", GateKind.self)
        let comment = try p.string("comment")
        let signature = try p.string("signature")
        let handler = Self.progressHandler(progress)
        let o = try await call { (e) async throws(EngineError) in
            try await e.approve(deploymentId: id, approver: approver, decision: decision, gate: gate, comment: comment, signature: signature, progress: handler)
        }
        var out: [String: JSONValue] = [
            "deployment_id": .string(o.record.deploymentId), "status": .string(o.record.status.rawValue), "gate": .string(o.gate.rawValue),
            "decision": .string(o.decision), "approved_by": .string(o.record.approvedBy),
        ]
        if let x = o.execution { out["output"] = Wire.output(x) }
        return .object(out)
    }

    func execute(_ raw: JSONValue?, progress: ProgressSink) async throws -> JSONValue {
        let p = try Params(raw, allowed: ["deployment_id", "idempotency_key"])
        let id = try p.required("deployment_id")
        let key = try p.string("idempotency_key")
        let handler = Self.progressHandler(progress)
        let r = try await call { (e) async throws(EngineError) in try await e.execute(deploymentId: id, idempotencyKey: key, progress: handler) }
        return Wire.output(r)
    }

    /// `deploy.execute` for an MCP client that declared `elicitation`: an open gate is put to the human at the
    /// client (`elicitation/create`), whose answer approves or rejects it, with the policy's rules (four
    /// eyes, approvers) applied as for `deploy.approve`. A declined or cancelled question leaves the gate open.
    /// `answerCheck` holds `deploy.approve`'s limits for the answer's members.
    func executeAskingAtGates(
        _ raw: JSONValue?, progress: ProgressSink, answerCheck: SchemaValidator?,
        elicit: @escaping @Sendable (String, JSONValue) async throws -> JSONValue
    ) async throws -> JSONValue {
        let p = try Params(raw, allowed: ["deployment_id", "idempotency_key"])
        let id = try p.required("deployment_id")
        let handler = Self.progressHandler(progress)
        let current = try await call { (e) async throws(EngineError) in try await e.status(id) }.record
        if current.status == .awaitingApproval {
            guard let answer = try await ask(current, gate: .deploy, answerCheck: answerCheck, elicit: elicit, progress: handler) else {
                return Wire.output(try await call { (e) async throws(EngineError) in try await e.status(id) }.record)
            }
            if answer.record.status == .rejected { return Wire.output(answer.record) }
        }
        let key = try p.string("idempotency_key")
        var out = try await call { (e) async throws(EngineError) in try await e.execute(deploymentId: id, idempotencyKey: key, progress: handler) }
        if out.status == .awaitingPromotion,
            let answer = try await ask(out, gate: .promote, answerCheck: answerCheck, elicit: elicit, progress: handler)
        {
            out = answer.execution ?? answer.record
        }
        return Wire.output(out)
    }

    /// Puts one gate to the human; nil when they declined or cancelled.
    private func ask(
        _ r: DeploymentRecord, gate: GateKind, answerCheck: SchemaValidator?, elicit: @Sendable (String, JSONValue) async throws -> JSONValue,
        progress: @escaping ProgressHandler
    ) async throws -> ApprovalOutcome? {
        try refuseElicitationIfSigned(r, gate: gate)  // signed approvals: DeployService+Signatures.swift
        let what = gate == .deploy ? "deploy" : "switch traffic to"
        let message = "Approve: \(what) \(r.modelName):\(r.modelVersion) in \(r.environment) (deployment \(r.deploymentId), "
            + "\(r.strategy.rawValue), requested by \(r.requestedBy)\(r.previousVersion.map { ", replacing \($0)" } ?? "")). "
            + "The person asking cannot approve their own deployment where the policy requires four eyes."
        let schema: JSONValue = [
            "type": "object",
            "properties": [
                "decision": ["type": "string", "enum": ["approve", "reject"], "description": "approve or reject this gate"],
                "approver": ["type": "string", "description": "your name, recorded in the audit trail"],
                "comment": ["type": "string", "description": "optional note for the audit trail"],
            ],
            "required": ["decision", "approver"],
        ]
        let answer = try await elicit(message, schema)
        guard answer["action"]?.stringValue == "accept", let content = answer["content"] else {
            logger.info("gate question declined", ["deployment_id": .string(r.deploymentId), "gate": .string(gate.rawValue)])
            return nil
        }
        try answerCheck?.check(content)
        let p = try Params(content, allowed: ["decision", "approver", "comment"])
        let approver = try p.actor("approver")!
        let decision = try p.required("decision")
        guard decision == "approve" || decision == "reject" else {
            throw RPCError.invalidParams("decision must be \"approve\" or \"reject\"", field: "decision")
        }
        let comment = try p.string("comment")
        return try await call { (e) async throws(EngineError) in
            try await e.approve(deploymentId: r.deploymentId, approver: approver, decision: decision, gate: gate,
                                comment: comment.map { "\($0) (via MCP elicitation)" } ?? "via MCP elicitation", progress: progress)
        }
    }

    func rollback(_ raw: JSONValue?, progress: ProgressSink) async throws -> JSONValue {
        let p = try Params(raw, allowed: ["model_name", "environment", "to_version", "reason", "requested_by"])
        let model = try p.name("model_name")!
        let env = try p.name("environment")!
        let to = try p.name("to_version", required: false)
        let reason = try p.string("reason")
        let by = try p.actor("requested_by")!
        let handler = Self.progressHandler(progress)
        let o = try await call { (e) async throws(EngineError) in
            try await e.rollback(modelName: model, environment: env, toVersion: to, reason: reason, requestedBy: by, progress: handler)
        }
        return ["deployment_id": .string(o.record.deploymentId), "rollback_of": .string(o.record.rollbackOf), "status": .string(o.record.status.rawValue),
                "model_name": .string(model), "environment": .string(env), "from_version": .string(o.fromVersion),
                "to_version": .string(o.toVersion), "endpoint_url": .string(o.record.endpointURL), "duration_ms": .double(o.durationMs),
                "deployment_strategy": "rollback", "error": o.record.error ?? .null]
    }

    func abort(_ raw: JSONValue?, progress: ProgressSink) async throws -> JSONValue {
        let p = try Params(raw, allowed: ["deployment_id", "requested_by", "reason"])
        let id = try p.required("deployment_id")
        let by = try p.actor("requested_by")!
        let reason = try p.string("reason")
        let handler = Self.progressHandler(progress)
        let r = try await call { (e) async throws(EngineError) in try await e.abort(deploymentId: id, requestedBy: by, reason: reason, progress: handler) }
        return ["deployment": Wire.deployment(r)]
    }

    func status(_ raw: JSONValue?) async throws -> JSONValue {
        let p = try Params(raw, allowed: ["deployment_id"])
        let id = try p.required("deployment_id")
        let s = try await call { (e) async throws(EngineError) in try await e.status(id) }
        let runtime = try engine().runtimeDescription(modelName: s.record.modelName, environment: s.record.environment, version: s.record.modelVersion)
        return ["deployment": Self.with(runtime, Wire.deployment(s.record)), "events": .array(s.events.map(Wire.event)),
                "live": s.live.map(Wire.registry) ?? .null, "slot_alive": s.slotAlive.map { .bool($0) } ?? .null,
                "endpoint_alive": s.endpointAlive.map { .bool($0) } ?? .null, "chain": EventChain.verify(s.events).json]
    }

    /// `deployment` with its `runtime` (where it runs: this machine or its Kubernetes objects).
    static func with(_ runtime: JSONValue, _ deployment: JSONValue) -> JSONValue {
        guard case .object(var o) = deployment else { return deployment }
        o["runtime"] = runtime
        return .object(o)
    }

    func history(_ raw: JSONValue?) async throws -> JSONValue {
        let p = try Params(raw, allowed: ["model_name", "model_version", "environment", "status", "deployment_strategy", "deployment_id",
                                          "since", "until", "live_at", "traffic_at", "limit", "cursor", "include_events"])
        var q = HistoryQuery()
        q.modelName = try p.name("model_name", required: false)
        q.modelVersion = try p.name("model_version", required: false)
        q.environment = try p.name("environment", required: false)
        if let s = p.members["status"], !s.isNull {
            let items: [JSONValue]
            switch s {
            case .string: items = [s]
            case .array(let a): items = a
            default: throw RPCError.invalidParams("status must be a string or an array of strings", field: "status")
            }
            for item in items {
                guard let str = item.stringValue, let st = DeploymentStatus(rawValue: str) else {
                    throw RPCError.invalidParams("status has an unknown value \(item.jsonString)", field: "status")
                }
                q.statuses.append(st)
            }
        }
        q.strategy = try p.enumValue("deployment_strategy", DeploymentStrategy.self)
        q.deploymentId = try p.string("deployment_id")
        q.since = try p.time("since")
        q.until = try p.time("until")
        q.liveAt = try p.time("live_at")
        if q.liveAt != nil, q.modelName == nil || q.environment == nil {
            throw RPCError.invalidParams("live_at needs model_name and environment", field: "live_at")
        }
        let trafficAt = try p.time("traffic_at")
        if trafficAt != nil, q.modelName == nil || q.environment == nil {
            throw RPCError.invalidParams("traffic_at needs model_name and environment", field: "traffic_at")
        }
        q.limit = try p.int("limit", in: 1...1000) ?? 50
        q.cursor = try p.string("cursor")
        q.includeEvents = try p.bool("include_events") ?? false
        let query = q
        let page = try await call { (e) async throws(EngineError) in try await e.history(query) }
        let engine = try engine()
        let items: [JSONValue] = page.deployments.map { r in
            var d = Self.with(engine.runtimeDescription(modelName: r.modelName, environment: r.environment, version: r.modelVersion),
                              Wire.deployment(r))
            if query.includeEvents, case .object(var o) = d {
                o["events"] = .array((page.events[r.deploymentId] ?? []).map(Wire.event))
                o["chain"] = EventChain.verify(page.events[r.deploymentId] ?? []).json
                d = .object(o)
            }
            return d
        }
        var out: [String: JSONValue] = ["deployments": .array(items), "next_cursor": .string(page.nextCursor)]
        if let trafficAt, let model = query.modelName, let env = query.environment {
            let shares = try await call { (e) async throws(EngineError) in try await e.traffic(modelName: model, environment: env, at: trafficAt) }
            out["traffic"] = .array(shares.map { ["version": .string($0.version), "deployment_id": .string($0.deploymentId), "weight": .integer($0.weight)] })
        }
        if !page.unreadable.isEmpty {
            for u in page.unreadable {
                logger.warning("a ledger row cannot be read", ["deployment_id": .string(u.deploymentId), "problem": .string(u.problem)])
            }
            out["unreadable"] = .array(page.unreadable.map { u in
                var o: [String: JSONValue] = ["deployment_id": .string(u.deploymentId), "problem": .string(u.problem)]
                if let seq = u.eventSeq { o["event_seq"] = .int(Int64(seq)) }
                return .object(o)
            })
        }
        return .object(out)
    }
}

/// Ledger records in their wire form.
enum Wire {
    static func deployment(_ r: DeploymentRecord) -> JSONValue {
        [
            "deployment_id": .string(r.deploymentId), "model_name": .string(r.modelName), "model_version": .string(r.modelVersion),
            "environment": .string(r.environment), "bento_tag": .string(r.bentoTag), "endpoint_url": .string(r.endpointURL),
            "deployment_strategy": .string(r.strategy.rawValue), "status": .string(r.status.rawValue),
            "previous_version": .string(r.previousVersion), "slot": .string(r.slot), "plan": r.plan, "plan_hash": .string(r.planHash),
            "health_check_passed": r.healthCheckPassed.map { .bool($0) } ?? .null,
            "metrics_baseline": r.metricsBaseline.map { .object($0.mapValues { .double($0) }) } ?? .null,
            "requested_by": .string(r.requestedBy), "approved_by": .string(r.approvedBy), "approved_at": RFC3339.format(r.approvedAt),
            "started_at": RFC3339.format(r.startedAt), "finished_at": RFC3339.format(r.finishedAt), "error": r.error ?? .null,
            "rollback_of": .string(r.rollbackOf), "idempotency_key": .string(r.idempotencyKey),
            "created_at": .string(RFC3339.format(r.createdAt)), "updated_at": .string(RFC3339.format(r.updatedAt)),
        ]
    }

    static func event(_ e: DeploymentEvent) -> JSONValue {
        [
            "deployment_id": .string(e.deploymentId), "seq": .int(Int64(e.seq)), "at": .string(RFC3339.format(e.at)),
            "from_status": .string(e.fromStatus?.rawValue), "to_status": .string(e.toStatus?.rawValue), "step": .string(e.step),
            "actor": .string(e.actor), "message": .string(e.message), "data": e.data,
        ]
    }

    static func registry(_ e: RegistryEntry) -> JSONValue {
        [
            "model_name": .string(e.modelName), "environment": .string(e.environment), "model_version": .string(e.modelVersion),
            "deployment_id": .string(e.deploymentId), "endpoint_url": .string(e.endpointURL), "slot": .string(e.slot),
            "bento_tag": .string(e.bentoTag), "previous_version": .string(e.previousVersion),
            "previous_deployment_id": .string(e.previousDeploymentId), "previous_slot": .string(e.previousSlot),
            "updated_at": .string(RFC3339.format(e.updatedAt)),
        ]
    }

    /// The seed's `ModelDeployerOutput`, plus status and where the rollout stands.
    static func output(_ r: DeploymentRecord) -> JSONValue {
        var o: [String: JSONValue] = [
            "deployment_id": .string(r.deploymentId), "endpoint_url": .string(r.endpointURL),
            "deployment_strategy": .string(r.strategy.rawValue), "previous_version": .string(r.previousVersion),
            "deployment_timestamp": .string(RFC3339.format(r.finishedAt ?? r.startedAt ?? r.updatedAt)),
            "health_check_passed": .bool(r.healthCheckPassed ?? false),
            "metrics_baseline": .object((r.metricsBaseline ?? [:]).mapValues { .double($0) }),
            "status": .string(r.status.rawValue), "model_name": .string(r.modelName), "model_version": .string(r.modelVersion),
            "environment": .string(r.environment), "slot": .string(r.slot),
        ]
        if r.status == .awaitingPromotion { o["gate"] = "promote" }
        if let e = r.error { o["error"] = e }
        return .object(o)
    }
}

// MARK: - Start-up: a home another router serves

extension DeployerAgent {
    /// Before `serve` answers anything: a home whose endpoints the other router serves.
    ///
    /// With the HAProxy router, the home's running nginx (the release before) hands its endpoints to HAProxy
    /// once (``RouterTakeover``: HAProxy binds beside nginx with `SO_REUSEPORT`, then nginx lets go), each
    /// logged. An endpoint HAProxy cannot take stays with nginx and `serve` exits 2 naming it: serving on
    /// with it, every later switch of that endpoint would fail on its port (measured before this existed).
    /// With the nginx router, a home whose endpoints HAProxy serves is refused (no silent split).
    /// A home with neither is not touched. Returns the problem that must stop `serve` (exit 2), if any, and
    /// the endpoints moved (the agent records each on its live deployment once the ledger is open).
    public static func routerStartup(_ options: ServeOptions, logger: Logger) async -> (problem: String?, moved: [TakeoverRecord]) {
        var moved: [TakeoverRecord] = []
        let problem = await routerStartupProblem(options, logger: logger) { moved = $0 }
        return (problem, moved)
    }

    static func routerStartupProblem(_ options: ServeOptions, logger: Logger,
                                     moved: (_ records: [TakeoverRecord]) -> Void) async -> String? {
        let env = currentEnvironment()
        let home = options.home ?? DeployService.defaultHome(env)
        let nginxPath = options.nginx ?? (try? ProcessLauncher.resolve("nginx")) ?? (access("/usr/sbin/nginx", X_OK) == 0 ? "/usr/sbin/nginx" : "nginx")
        let nginx = NginxRouter(home: home, nginx: nginxPath)
        let haproxy = HAProxyRouter(home: home, haproxy: options.haproxy ?? HAProxyRouter.defaultExecutable)
        switch options.router {
        case .nginx:
            let routes: [HAProxyRoute]
            do { routes = try haproxy.routes() } catch { return "the home's HAProxy state (router/routes.json) cannot be read (\(error.message)); run serve with --router haproxy" }
            guard !routes.isEmpty else { return nil }
            let names = routes.map { "\($0.modelName)/\($0.environment) on port \($0.port)" }.joined(separator: ", ")
            return "HAProxy serves this home's endpoints (\(names)); the nginx router cannot take them over: run serve with --router haproxy (the default)"
        case .haproxy:
            guard nginx.isServing() else { return nil }
            let router = HAProxyTrafficRouter(haproxy)
            let outcome = await RouterTakeover.run(nginx: nginx, haproxy: router) { msg, fields in
                logger.info(msg, fields.mapValues { JSONValue.string($0) })
            }
            // The engine's router reads the request log of the processes started here: free the port for it.
            haproxy.releaseLogReader()
            moved(outcome.moved.map { TakeoverRecord(modelName: $0.modelName, environment: $0.environment, port: $0.listenPort,
                                                     slot: $0.primary?.slot.rawValue ?? "", refusedMs: outcome.refusedMs[$0.listenPort] ?? 0) })
            if outcome.moved.isEmpty && outcome.kept.isEmpty && outcome.lost.isEmpty { return nil }
            for (route, reason) in outcome.kept {
                logger.error("router takeover: endpoint left with nginx", ["model": .string(route.modelName), "environment": .string(route.environment),
                                                                           "port": .string(String(route.listenPort)), "reason": .string(reason)])
            }
            for (route, reason) in outcome.lost {
                logger.error("router takeover: endpoint not served", ["model": .string(route.modelName), "environment": .string(route.environment),
                                                                      "port": .string(String(route.listenPort)), "reason": .string(reason)])
            }
            if outcome.nginxStopped {
                logger.info("router takeover: done, nginx stopped", ["endpoints": .string(String(outcome.moved.count)),
                                                                    "max_refused_ms": .string(String(Int((outcome.refusedMs.values.max() ?? 0).rounded(.up))))])
            }
            let failed = outcome.kept.map(\.route) + outcome.lost.map(\.route)
            guard !failed.isEmpty else { return nil }
            let names = failed.map { "\($0.modelName)/\($0.environment) on port \($0.listenPort)" }.joined(separator: ", ")
            // `--router nginx` is advice only while HAProxy serves nothing of this home (it refuses a home HAProxy serves).
            let haproxyServesSome = !outcome.moved.isEmpty || ((try? haproxy.routes()) ?? []).isEmpty == false
            return "HAProxy could not take over \(names) from this home's nginx (see the log above); "
                + (outcome.lost.isEmpty ? "nginx still serves it. " : "")
                + (haproxyServesSome ? "Fix the cause and start serve again to finish the move"
                                     : "Run serve with --router nginx, or fix the cause and start serve again to finish the move")
        }
    }
}
