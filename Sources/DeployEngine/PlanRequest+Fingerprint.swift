import DeployCore
import DeploymentStore
import JSON

extension PlanRequest {
    /// A digest of everything the caller asked for (not of what the planner derived from the store), so a
    /// retry with the same idempotency key can be told from another request that reuses the key.
    public var fingerprint: String {
        var req: [String: JSONValue] = [:]
        if let cpu = requirements.cpu { req["cpu"] = .double(cpu) }
        if let m = requirements.memoryMB { req["memory_mb"] = .integer(m) }
        if let g = requirements.gpu { req["gpu"] = .integer(g) }
        if let r = requirements.expectedRPS { req["expected_rps"] = .double(r) }
        if let l = requirements.latencySLOms { req["latency_slo_ms"] = .double(l) }
        let smoke: [JSONValue] = smokeTests.map { t in
            var o: [String: JSONValue] = ["api": .string(t.api), "input": t.input]
            if let e = t.expect { o["expect"] = ["value": e] }
            return .object(o)
        }
        var doc: JSONValue = [
            "model_name": .string(modelName), "model_version": .string(modelVersion), "environment": .string(environment),
            "requested_by": .string(requestedBy), "bento": .string(bento), "strategy": .string(strategy.rawValue),
            "smoke_tests": .array(smoke), "requirements": .object(req), "gates": .array(extraGates.map { .string($0.rawValue) }),
        ]
        // Only a request with canary settings has the member, so earlier fingerprints stay valid.
        if let canary, case .object(var o) = doc {
            o["canary"] = canary
            doc = .object(o)
        }
        return SHA256.hex(SHA256.hash(doc.jsonBytes))
    }
}

extension Engine {
    /// The deployment an idempotency key already names, when `req` is a retry of the request that made it.
    /// The same key with other content is refused naming the original deployment: returning that plan as
    /// success would hand one caller another caller's deployment.
    func replay(_ existing: DeploymentRecord, of req: PlanRequest, key: String) throws(EngineError) -> DeploymentRecord {
        let events = try ledger { () throws(StoreError) in try store.events(deploymentId: existing.deploymentId) }
        // The event that created the record carries the fingerprint.
        let recorded = events.first { $0.fromStatus == nil && $0.toStatus != nil }?.data["request_fingerprint"]?.stringValue
        let same: Bool
        if let recorded {
            same = recorded == req.fingerprint
        } else {
            // Planned by an agent that kept no fingerprint: compare what the record holds.
            same = existing.modelName == req.modelName && existing.environment == req.environment
                && existing.requestedBy == req.requestedBy
                && (req.modelVersion == "latest" || existing.modelVersion == req.modelVersion)
        }
        guard same else {
            throw EngineError(
                .conflict, reason: "idempotency_key_conflict",
                message: "idempotency_key \(key) already names deployment \(existing.deploymentId) (\(existing.modelName):\(existing.modelVersion) to \(existing.environment), requested by \(existing.requestedBy)) made from a different request; use a new key",
                extra: ["deployment_id": .string(existing.deploymentId), "field": "idempotency_key"])
        }
        return existing
    }
}
