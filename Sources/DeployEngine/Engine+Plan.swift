#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeploymentStore
import DeployRuntime
import JSON

extension Engine {
    // MARK: - Plan

    /// Analyses the model, chooses the strategy and persists the plan (or returns the one made with the same key).
    public func plan(_ req: PlanRequest) async throws(EngineError) -> DeploymentRecord {
        let req = try await verifyRequestSignature(req)  // signed requests: Engine+Signatures.swift
        await reconcileOnce()
        if let key = req.idempotencyKey,
            let existing = try ledger({ () throws(StoreError) in try store.deployment(idempotencyKey: key) })
        {
            return try replay(existing, of: req, key: key)
        }
        guard let envPolicy = policy.environment(req.environment) else {
            throw EngineError.refused("unknown_environment",
                                      "no approval policy for environment \(req.environment); known: \(policy.environments.keys.sorted().joined(separator: ", "))")
        }
        let (model, bento) = try catalogFacts(req)
        // An expired gate no longer holds the rollout lock.
        if let blocking = try ledger({ () throws(StoreError) in try store.inFlight(modelName: req.modelName, environment: req.environment) }) {
            do {
                try await expireIfDue(blocking)
            } catch let e where e.kind == .conflict {
                // Another call moved it first (expired, approved or rejected it): the insert below decides.
            }
        }
        let live = liveFacts(try registryEntry(req.modelName, req.environment))
        let input = PlanInput(
            modelName: req.modelName, modelVersion: model.version, environment: req.environment, bentoTag: bento.tag,
            strategyRequest: req.strategy, smokeTests: req.smokeTests, requirements: req.requirements,
            requestedBy: req.requestedBy, model: model, bento: bento, live: live, host: ports(for: req.environment).catalog.hostFacts(),
            policy: envPolicy, extraGates: req.extraGates, canary: req.canary, routerSplitsTraffic: ports(for: req.environment).router.splitsTraffic)
        let plan: DeploymentPlan
        switch Planner.plan(input) {
        case .success(let p): plan = p
        case .failure(let refusal): throw EngineError.planRefusal(refusal)
        }
        return try insertPlan(plan, req, model: model, bento: bento, live: live)
    }

    /// The model and the bento the request names (the newest bento serving the model when it names none).
    func catalogFacts(_ req: PlanRequest) throws(EngineError) -> (ModelFacts, BentoFacts) {
        let catalog = runtime.catalog
        let model: ModelFacts
        do { model = try catalog.model(name: req.modelName, version: req.modelVersion) } catch {
            throw EngineError.notFound("model_not_found", error.message)
        }
        let modelTag = "\(model.name):\(model.version)"
        let found: BentoFacts?
        do throws(RuntimeError) {
            if let tag = req.bento { found = try catalog.bento(tag: tag) } else { found = try catalog.newestBento(serving: modelTag) }
        } catch {
            throw EngineError.notFound("bento_not_found", error.message)
        }
        guard let bento = found else {
            throw EngineError.notFound("bento_not_found", "no bento in the store serves \(modelTag); build one or pass bento")
        }
        if let tag = req.bento, !(bento.models.contains(modelTag) || bento.models.contains(model.name)) {
            throw EngineError.notFound("bento_not_found", "bento \(tag) does not serve \(modelTag) (it serves \(bento.models.joined(separator: ", ")))")
        }
        return (model, bento)
    }

    /// Persists a new plan with its `plan` event (the request's fingerprint kept for idempotent retries).
    func insertPlan(_ plan: DeploymentPlan, _ req: PlanRequest, model: ModelFacts, bento: BentoFacts, live: LiveFacts?) throws(EngineError) -> DeploymentRecord {
        let t = now()
        let status = plan.initialStatus
        let record = DeploymentRecord(
            deploymentId: makeDeploymentID(now: t), modelName: req.modelName, modelVersion: model.version,
            environment: req.environment, bentoTag: bento.tag, endpointURL: live?.endpointURL ?? "http://127.0.0.1:\(plan.config.routerPort)",
            strategy: plan.strategy, status: status, previousVersion: live?.version, slot: plan.config.slot.rawValue,
            plan: plan.toJSON(), planHash: plan.planHash, requestedBy: req.requestedBy, idempotencyKey: req.idempotencyKey,
            createdAt: t, updatedAt: t)
        let gateText = status == .awaitingApproval ? "; waiting for approval (gate deploy)" : ""
        var ev = DeploymentEvent(
            deploymentId: record.deploymentId, at: t, fromStatus: nil, toStatus: status, step: Step.plan.wireName, actor: req.requestedBy,
            message: "planned \(plan.strategy.rawValue) of \(model.name):\(model.version) to \(req.environment)\(gateText)",
            data: ["reasons": .array(plan.reasons.map { .string($0) }), "plan_hash": .string(plan.planHash),
                   "request_fingerprint": .string(req.fingerprint)])
        ev.attach(req.signature?.verified)  // signed requests: Engine+Signatures.swift
        do {
            try store.insert(record, event: ev)
        } catch {
            if error.code == .duplicateIdempotencyKey, let key = req.idempotencyKey,
                let existing = try ledger({ () throws(StoreError) in try store.deployment(idempotencyKey: key) })
            {
                return try replay(existing, of: req, key: key)  // a concurrent call with the same key won the race
            }
            if error.code == .rolloutInProgress {
                var blocking = error.deploymentId
                if blocking == nil {
                    blocking = try ledger { () throws(StoreError) in try store.inFlight(modelName: req.modelName, environment: req.environment) }?.deploymentId
                }
                throw EngineError.rolloutInProgress(
                    blocking, "\(req.modelName) in \(req.environment) already has a rollout in flight\(blocking.map { " (deployment \($0))" } ?? ""); finish, reject or wait for it first")
            }
            throw EngineError.ledger(error)
        }
        return record
    }

    /// Expires a deployment whose open gate ran past its timeout. Returns the updated record when it expired.
    @discardableResult
    func expireIfDue(_ r: DeploymentRecord) async throws(EngineError) -> DeploymentRecord? {
        guard let kind = Lifecycle.pendingGate(r.status), let plan = try? DeploymentPlan(json: r.plan), let gate = plan.gate(kind) else {
            return nil
        }
        let openedAt = kind == .deploy ? r.createdAt : r.updatedAt
        guard policy.isExpired(gateOpenedAt: openedAt, now: now(), gate: gate) else { return nil }
        var runner = RolloutRunner(engine: self, record: r, plan: plan, actor: "model-deployer", progress: { _ in })
        runner.gateExpired = true
        runner.expiryMessage = "gate \(kind.rawValue) expired after \(gate.timeoutSeconds ?? 0) s without an answer"
        return try await runner.run(.timerFired)
    }
}
