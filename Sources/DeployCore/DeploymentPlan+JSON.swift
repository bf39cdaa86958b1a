import JSON

// Wire and ledger format of plans: snake_case keys, `null` for absent optionals (except `expect` and
// baseline `input`, whose absence differs from an explicit JSON null and so are omitted when absent).

extension JSONValue {
    fileprivate static func optional(_ s: String?) -> JSONValue { s.map { .string($0) } ?? .null }
    fileprivate static func optional(_ d: Double?) -> JSONValue { d.map { .double($0) } ?? .null }
    fileprivate static func optional(_ i: Int64?) -> JSONValue { i.map { .int($0) } ?? .null }
    fileprivate static func strings(_ a: [String]) -> JSONValue { .array(a.map { .string($0) }) }
}

private func enumValue<E: RawRepresentable>(_ r: ObjectReader, _ key: String, _: E.Type) throws(JSONShapeError) -> E where E.RawValue == String {
    let s = try r.string(key)
    guard let e = E(rawValue: s) else { throw JSONShapeError(path: r.at(key), message: "unknown value \(Names.quoted(s))") }
    return e
}

extension SmokeTest {
    /// `{"api", "input", "expect"?}`.
    public func toJSON() -> JSONValue {
        var o: [String: JSONValue] = ["api": .string(api), "input": input]
        if let expect { o["expect"] = expect }
        return .object(o)
    }

    /// Parses `{"api", "input", "expect"?}`; a missing `input` is `{}`.
    public init(json: JSONValue, path: String = "") throws(JSONShapeError) {
        let r = try ObjectReader(json, path: path)
        try r.rejectUnknown(["api", "input", "expect"])
        self.init(api: try r.string("api"), input: r.members["input"] ?? .object([:]), expect: r.members["expect"])
    }
}

extension BaselineSpec {
    /// `{"requests", "concurrency", "api", "input"?}`.
    public func toJSON() -> JSONValue {
        var o: [String: JSONValue] = ["requests": .integer(requests), "concurrency": .integer(concurrency), "api": .optional(api)]
        if let input { o["input"] = input }
        return .object(o)
    }

    /// Parses a baseline spec.
    public init(json: JSONValue, path: String = "") throws(JSONShapeError) {
        let r = try ObjectReader(json, path: path)
        self.init(requests: try r.int("requests"), concurrency: try r.int("concurrency"), api: try r.optionalString("api"), input: r.members["input"])
    }
}

extension RollbackPolicy {
    /// snake_case JSON.
    public func toJSON() -> JSONValue {
        .object([
            "on_readiness_failure": .bool(onReadinessFailure), "on_smoke_failure": .bool(onSmokeFailure),
            "error_rate_factor": .double(errorRateFactor), "latency_factor": .double(latencyFactor),
            "bake_seconds": .integer(bakeSeconds), "keep_warm_seconds": .integer(keepWarmSeconds),
            "min_error_rate": .double(minErrorRate), "latency_floor_ms": .double(latencyFloorMs),
        ])
    }

    /// Parses a rollback policy.
    public init(json: JSONValue, path: String = "") throws(JSONShapeError) {
        let r = try ObjectReader(json, path: path)
        self.init(
            onReadinessFailure: try r.bool("on_readiness_failure"), onSmokeFailure: try r.bool("on_smoke_failure"),
            errorRateFactor: try r.double("error_rate_factor"), latencyFactor: try r.double("latency_factor"),
            bakeSeconds: try r.int("bake_seconds"), keepWarmSeconds: try r.int("keep_warm_seconds"),
            minErrorRate: try r.double("min_error_rate"), latencyFloorMs: try r.double("latency_floor_ms"))
    }
}

extension DeploymentConfig {
    /// snake_case JSON.
    public func toJSON() -> JSONValue {
        var o: [String: JSONValue] = [
            "slot": .string(slot.rawValue), "slot_port": .integer(slotPort), "router_port": .integer(routerPort),
            "health_path": .string(healthPath), "startup_deadline_seconds": .integer(startupDeadlineSeconds),
            "probe_timeout_ms": .integer(probeTimeoutMs), "probe_interval_ms": .integer(probeIntervalMs),
            "smoke_tests": .array(smokeTests.map { $0.toJSON() }), "baseline": baseline.toJSON(), "rollback": rollback.toJSON(),
        ]
        // Only a canary plan has the member, so other plans (and their hashes) are as before.
        if let canary { o["canary"] = canary.toJSON() }
        return .object(o)
    }

    /// Parses a config.
    public init(json: JSONValue, path: String = "") throws(JSONShapeError) {
        let r = try ObjectReader(json, path: path)
        var tests: [SmokeTest] = []
        for (i, t) in try r.array("smoke_tests").enumerated() { tests.append(try SmokeTest(json: t, path: "\(r.at("smoke_tests"))[\(i)]")) }
        var canary: CanaryConfig?
        if let c = r.value("canary") { canary = try CanaryConfig(json: c, path: r.at("canary")) }
        self.init(
            slot: try enumValue(r, "slot", Slot.self), slotPort: try r.int("slot_port"), routerPort: try r.int("router_port"),
            healthPath: try r.string("health_path"), startupDeadlineSeconds: try r.int("startup_deadline_seconds"),
            probeTimeoutMs: try r.int("probe_timeout_ms"), probeIntervalMs: try r.int("probe_interval_ms"), smokeTests: tests,
            baseline: try BaselineSpec(json: try r.require("baseline"), path: r.at("baseline")),
            rollback: try RollbackPolicy(json: try r.require("rollback"), path: r.at("rollback")),
            canary: canary)
    }
}

extension HostCheck {
    /// snake_case JSON.
    public func toJSON() -> JSONValue {
        .object([
            "free_memory_mb": .integer(freeMemoryMB), "cpu_count": .integer(cpuCount), "gpu_count": .integer(gpuCount),
            "fits": .bool(fits), "message": .string(message),
        ])
    }

    /// Parses a host check.
    public init(json: JSONValue, path: String = "") throws(JSONShapeError) {
        let r = try ObjectReader(json, path: path)
        self.init(
            freeMemoryMB: try r.int("free_memory_mb"), cpuCount: try r.int("cpu_count"), gpuCount: try r.int("gpu_count"),
            fits: try r.bool("fits"), message: try r.string("message"))
    }
}

extension PlanRequirements {
    /// snake_case JSON.
    public func toJSON() -> JSONValue {
        .object([
            "estimated_memory_mb": .integer(estimatedMemoryMB), "memory_basis": .string(memoryBasis), "cpu": .optional(cpu),
            "gpu": .integer(gpu), "expected_rps": .optional(expectedRPS), "latency_slo_ms": .optional(latencySLOms),
            "framework": .optional(framework), "model_size_bytes": .optional(modelSizeBytes),
            "model_creation_time": .optional(modelCreationTime), "labels": .object(labels.mapValues { .string($0) }),
            "metadata": metadata, "declared_resources": declaredResources ?? .null, "apis": .strings(apis), "host": host.toJSON(),
        ])
    }

    /// Parses requirements.
    public init(json: JSONValue, path: String = "") throws(JSONShapeError) {
        let r = try ObjectReader(json, path: path)
        var labels: [String: String] = [:]
        if let l = try r.optionalObject("labels") {
            for (k, v) in l.members {
                guard let s = v.stringValue else { throw JSONShapeError(path: l.at(k), message: "expected a string, got \(v.typeName)") }
                labels[k] = s
            }
        }
        self.init(
            estimatedMemoryMB: try r.int("estimated_memory_mb"), memoryBasis: try r.string("memory_basis"), cpu: try r.optionalDouble("cpu"),
            gpu: try r.int("gpu"), expectedRPS: try r.optionalDouble("expected_rps"), latencySLOms: try r.optionalDouble("latency_slo_ms"),
            framework: try r.optionalString("framework"), modelSizeBytes: try r.optionalInt64("model_size_bytes"),
            modelCreationTime: try r.optionalString("model_creation_time"), labels: labels,
            metadata: r.members["metadata"] ?? .object([:]), declaredResources: r.value("declared_resources"),
            apis: try r.optionalStrings("apis") ?? [], host: try HostCheck(json: try r.require("host"), path: r.at("host")))
    }
}

extension Gate {
    /// `{"kind", "approvers", "four_eyes", "timeout_seconds"}`.
    public func toJSON() -> JSONValue {
        .object([
            "kind": .string(kind.rawValue), "approvers": approvers.map { .strings($0) } ?? .null, "four_eyes": .bool(fourEyes),
            "timeout_seconds": timeoutSeconds.map { .integer($0) } ?? .null,
        ])
    }

    /// Parses a gate.
    public init(json: JSONValue, path: String = "") throws(JSONShapeError) {
        let r = try ObjectReader(json, path: path)
        self.init(
            kind: try enumValue(r, "kind", GateKind.self), approvers: try r.optionalStrings("approvers"),
            fourEyes: try r.optionalBool("four_eyes") ?? false, timeoutSeconds: try r.optionalInt("timeout_seconds"))
    }
}

extension LiveFacts {
    /// `{"version", "deployment_id", "slot", "endpoint_url", "bento_tag"}`.
    public func toJSON() -> JSONValue {
        .object([
            "version": .string(version), "deployment_id": .string(deploymentId), "slot": .string(slot.rawValue),
            "endpoint_url": .string(endpointURL), "bento_tag": .string(bentoTag),
        ])
    }

    /// Parses live facts.
    public init(json: JSONValue, path: String = "") throws(JSONShapeError) {
        let r = try ObjectReader(json, path: path)
        self.init(
            version: try r.string("version"), deploymentId: try r.string("deployment_id"), slot: try enumValue(r, "slot", Slot.self),
            endpointURL: try r.string("endpoint_url"), bentoTag: try r.string("bento_tag"))
    }
}

extension DeploymentPlan {
    /// The wire and ledger form: snake_case keys; `recorded_live` holds the facts the plan was made from.
    public func toJSON() -> JSONValue {
        .object([
            "model_name": .string(modelName), "model_version": .string(modelVersion), "environment": .string(environment),
            "bento_tag": .string(bentoTag), "strategy": .string(strategy.rawValue), "reasons": .strings(reasons),
            "steps": .strings(steps), "config": config.toJSON(), "requirements": requirements.toJSON(),
            "gates": .array(gates.map { $0.toJSON() }), "previous_version": .optional(previousVersion),
            "replaces_endpoint": .optional(replacesEndpoint), "recorded_live": recordedLive?.toJSON() ?? .null,
        ])
    }

    /// Parses the form ``toJSON()`` writes.
    /// - Throws: `JSONShapeError` naming the path at fault.
    public init(json: JSONValue) throws(JSONShapeError) {
        let r = try ObjectReader(json)
        var gates: [Gate] = []
        for (i, g) in try r.array("gates").enumerated() { gates.append(try Gate(json: g, path: "gates[\(i)]")) }
        self.init(
            modelName: try r.string("model_name"), modelVersion: try r.string("model_version"), environment: try r.string("environment"),
            bentoTag: try r.string("bento_tag"), strategy: try enumValue(r, "strategy", DeploymentStrategy.self),
            reasons: try r.strings("reasons"), steps: try r.strings("steps"),
            config: try DeploymentConfig(json: try r.require("config"), path: "config"),
            requirements: try PlanRequirements(json: try r.require("requirements"), path: "requirements"), gates: gates,
            previousVersion: try r.optionalString("previous_version"), replacesEndpoint: try r.optionalString("replaces_endpoint"),
            recordedLive: try r.value("recorded_live").map { v throws(JSONShapeError) in try LiveFacts(json: v, path: "recorded_live") })
    }
}
