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
    /// Undoes the live deployment: one router switch to the warm previous slot, or a blue-green redeploy of an
    /// older version from history. Emergency rollbacks pass no approval gate.
    public func rollback(
        modelName: String, environment: String, toVersion: String?, reason: String?, requestedBy: String,
        progress: @escaping ProgressHandler
    ) async throws(EngineError) -> RollbackOutcome {
        var call = SwitchSplit(self)
        await reconcileOnce()
        guard let entry = try registryEntry(modelName, environment) else {
            throw EngineError.nothingToRollBack("nothing_to_roll_back", "nothing is live for \(modelName) in \(environment)")
        }
        if let blocking = try ledger({ () throws(StoreError) in try store.inFlight(modelName: modelName, environment: environment) }),
            [.deploying, .validating, .switching].contains(blocking.status)
        {
            throw EngineError.rolloutInProgress(blocking.deploymentId, "deployment \(blocking.deploymentId) is \(blocking.status.rawValue); wait for it or cancel it first")
        }
        if let blocking = try ledger({ () throws(StoreError) in try store.inFlight(modelName: modelName, environment: environment) }),
            [.canary, .awaitingStep].contains(blocking.status)
        {
            // The live version is the canary's stable one: what undoes a canary is deploy.abort.
            throw EngineError.rolloutInProgress(blocking.deploymentId, "deployment \(blocking.deploymentId) is a canary (\(blocking.status.rawValue)) beside the live version; deploy.abort puts all traffic back on it")
        }
        let undone = try record(entry.deploymentId)
        call.lap("call_checks_ms")
        let warm = await isWarm(entry)
        call.lap("call_warm_probe_ms")
        let past = try pastVersions(modelName, environment, excluding: entry.modelVersion)
        var previousHealthy = true
        if let pid = entry.previousDeploymentId, let previous = try ledger({ () throws(StoreError) in try store.deployment(id: pid) }),
            previous.status == .rolledBack || previous.status == .failed
        {
            previousHealthy = false
        }
        let facts = RollbackFacts(live: liveFacts(entry), previousVersion: entry.previousVersion,
                                  previousSlot: entry.previousSlot.flatMap(Slot.init(rawValue:)), previousWarm: warm,
                                  previousHealthy: previousHealthy, history: past.healthy, unhealthy: past.unhealthy)
        let why = reason ?? "manual rollback requested by \(requestedBy)"
        switch RollbackDecision.decide(facts, toVersion: toVersion) {
        case .refuse(let reason, let message):
            throw EngineError.nothingToRollBack(reason.wireReason, message)
        case .switchToWarm:
            call.lap("call_history_ms")
            // `warm`: the decision to switch is taken only when the warm slot just answered its readiness probe.
            return try await switchToWarm(undone: undone, entry: entry, reason: why, requestedBy: requestedBy, warmProbed: warm,
                                          callSplit: call.laps, progress: progress)
        case .redeploy(let version):
            return try await rollbackByRedeploy(undone: undone, entry: entry, version: version, reason: why, requestedBy: requestedBy, progress: progress)
        }
    }

    /// Whether the registry's previous slot runs and answers its readiness probe now.
    func isWarm(_ entry: RegistryEntry) async -> Bool {
        let p = ports(for: entry.environment)
        guard let s = entry.previousSlot, let state = await p.slots.state(slotRef(entry, s)), state.alive else { return false }
        return await p.prober.isReady(state.address, path: "/readyz", timeoutMs: 500)
    }

    /// The versions that were live here before, split by how their newest deployment ended: superseded
    /// (left live healthy: a rollback target) or rolled back / failed (not one). Newest first.
    func pastVersions(_ model: String, _ env: String, excluding: String) throws(EngineError) -> (healthy: [String], unhealthy: [String: String]) {
        let page = try ledger { () throws(StoreError) in
            try store.query(HistoryQuery(modelName: model, environment: env, statuses: [.superseded, .rolledBack, .live, .failed], limit: 1000))
        }
        var newest: [String: DeploymentRecord] = [:]
        var wasLive = Set<String>()
        var order: [String] = []
        for d in page.deployments where d.modelVersion != excluding {
            if newest[d.modelVersion] == nil { newest[d.modelVersion] = d; order.append(d.modelVersion) }
            if d.status != .failed { wasLive.insert(d.modelVersion) }
        }
        var healthy: [String] = []
        var unhealthy: [String: String] = [:]
        for v in order where wasLive.contains(v) {
            let d = newest[v]!
            switch d.status {
            case .superseded, .live: healthy.append(v)
            default: unhealthy[v] = "its newest deployment here (\(d.deploymentId)) ended \(d.status.rawValue)"
            }
        }
        return (healthy, unhealthy)
    }

    /// The newest deployment of `version` here that carries a full plan to redeploy from (a warm-switch
    /// rollback record holds only a short plan, so it is skipped).
    func redeploySource(_ model: String, _ env: String, version: String) throws(EngineError) -> (DeploymentRecord, DeploymentPlan)? {
        let page = try ledger { () throws(StoreError) in
            try store.query(HistoryQuery(modelName: model, modelVersion: version, environment: env,
                                         statuses: [.superseded, .rolledBack, .live], limit: 1000))
        }
        for d in page.deployments {
            if let plan = try? DeploymentPlan(json: d.plan) { return (d, plan) }
        }
        return nil
    }

    /// One router switch back to the warm previous slot, recorded as a `rollback` deployment: the machine's
    /// `rollBack` path, the same one the bake takes after a regression.
    func switchToWarm(
        undone: DeploymentRecord, entry: RegistryEntry, reason: String, requestedBy: String, cause: Failure? = nil,
        warmProbed: Bool = false, callSplit: [String: JSONValue] = [:], progress: @escaping ProgressHandler
    ) async throws(EngineError) -> RollbackOutcome {
        let start = ContinuousClock.now
        var runner = RolloutRunner(engine: self, record: undone, plan: try? DeploymentPlan(json: undone.plan), actor: requestedBy, progress: progress)
        runner.callSplit = callSplit
        runner.warmProbed = warmProbed
        runner.rollbackStart = start
        runner.step = .done
        runner.rollbackReason = reason
        runner.rollbackCause = cause
        _ = try await runner.run(.rollBack)
        if let error = runner.rollbackError { throw error }
        guard let rec = runner.rollbackRecord else {
            throw EngineError.nothingToRollBack("nothing_to_roll_back", "the previous version is not running warm any more")
        }
        let duration = ms(since: start)
        // Where the call's time went (debug level): the checks before it, then the switch's laps, then the ledger.
        log("rollback timing", runner.switchSplit.merging(["duration_ms": .double(duration), "switch_ms": .double(runner.switchMs),
                                                            "ledger_ms": .double(runner.ledgerMs), "deployment_id": .string(rec.deploymentId)]) { _, b in b })
        return RollbackOutcome(record: rec, fromVersion: entry.modelVersion, toVersion: rec.modelVersion, durationMs: duration)
    }

    /// The rollback deployment of a warm switch, recorded once the switch took effect: a pending plan must not
    /// block an emergency rollback, and a crash before this point leaves the registry (and so reconcile) on
    /// the undone version. The registry then names it live, the undone version as the way forward.
    func recordWarmRollback(undone: DeploymentRecord, entry: RegistryEntry, reason: String, requestedBy: String,
                            switchMs: Double, switchSplit: [String: JSONValue] = [:]) throws(EngineError) -> DeploymentRecord {
        let t = now()
        let prevVersion = entry.previousVersion ?? ""
        let prevSlot = entry.previousSlot ?? ""
        let previousRecord = try entry.previousDeploymentId.flatMap { id throws(EngineError) in
            try ledger { () throws(StoreError) in try store.deployment(id: id) }
        }
        let rec = DeploymentRecord(
            deploymentId: makeDeploymentID(now: t), modelName: entry.modelName, modelVersion: prevVersion, environment: entry.environment,
            bentoTag: entry.previousBentoTag ?? previousRecord?.bentoTag, endpointURL: entry.endpointURL, strategy: .rollback, status: .live,
            previousVersion: entry.modelVersion, slot: prevSlot,
            plan: ["strategy": "rollback", "kind": "switch_to_warm", "reasons": .array([.string(reason)]),
                   "from_version": .string(entry.modelVersion), "to_version": .string(prevVersion)],
            planHash: "", healthCheckPassed: true, metricsBaseline: previousRecord?.metricsBaseline, requestedBy: requestedBy,
            startedAt: t, finishedAt: t, rollbackOf: undone.deploymentId, createdAt: t, updatedAt: t)
        _ = try ledger { () throws(StoreError) in
            try store.insert(rec, event: DeploymentEvent(
                deploymentId: rec.deploymentId, at: t, toStatus: .live, step: Step.switchTraffic.wireName, actor: requestedBy,
                message: "rolled back \(entry.modelVersion) to \(prevVersion): traffic switched to warm slot \(prevSlot) in \(fixed(switchMs, 0)) ms (\(reason))",
                data: .object(switchSplit.merging(["switch_ms": .double(switchMs), "rollback_of": .string(undone.deploymentId)]) { _, b in b })))
        }
        let newEntry = RegistryEntry(
            modelName: entry.modelName, environment: entry.environment, modelVersion: prevVersion, deploymentId: rec.deploymentId,
            endpointURL: entry.endpointURL, slot: prevSlot, bentoTag: rec.bentoTag,
            previousVersion: entry.modelVersion, previousDeploymentId: undone.deploymentId, previousSlot: entry.slot,
            previousBentoTag: entry.bentoTag, updatedAt: t)
        try ledger { () throws(StoreError) in try store.setRegistry(newEntry) }
        return rec
    }

    /// Records a rollback whose switch failed as a `failed` rollback deployment (with the step and the
    /// error), so the attempt is in the history; returns `failure` naming that record for the caller.
    func recordFailedRollback(undone: DeploymentRecord, entry: RegistryEntry, requestedBy: String, reason: String,
                              failure: EngineError) -> EngineError {
        let t = now()
        let target = entry.previousVersion ?? "?"
        let rec = DeploymentRecord(
            deploymentId: makeDeploymentID(now: t), modelName: entry.modelName, modelVersion: target, environment: entry.environment,
            bentoTag: entry.previousBentoTag, endpointURL: entry.endpointURL, strategy: .rollback, status: .failed,
            previousVersion: entry.modelVersion, slot: entry.previousSlot,
            plan: ["strategy": "rollback", "kind": "switch_to_warm", "reasons": .array([.string(reason)]),
                   "from_version": .string(entry.modelVersion), "to_version": .string(target)],
            planHash: "", healthCheckPassed: false, requestedBy: requestedBy, startedAt: t, finishedAt: t,
            error: failureJSON(reason: failure.reason, message: failure.message, step: Step.switchTraffic.wireName, refusal: failure.kind),
            rollbackOf: undone.deploymentId, createdAt: t, updatedAt: t)
        var out = failure
        do {
            _ = try store.insert(rec, event: DeploymentEvent(
                deploymentId: rec.deploymentId, at: t, toStatus: .failed, step: Step.switchTraffic.wireName, actor: requestedBy,
                message: "rollback of \(entry.modelVersion) to \(target) failed at the switch; \(entry.modelVersion) stays live: \(failure.message)"))
            out.extra["deployment_id"] = .string(rec.deploymentId)
        } catch {
            log("the failed rollback could not be recorded", ["error": .string(error.message), "rollback_of": .string(undone.deploymentId)])
            out.message += " (and the ledger did not record the attempt: \(error.message))"
        }
        return out
    }

    /// Redeploys an older version through the blue-green steps, recorded as a `rollback` deployment.
    func rollbackByRedeploy(
        undone: DeploymentRecord, entry: RegistryEntry, version: String, reason: String, requestedBy: String,
        progress: @escaping ProgressHandler
    ) async throws(EngineError) -> RollbackOutcome {
        let start = ContinuousClock.now
        let plan = try redeployPlan(entry, version: version, reason: reason, requestedBy: requestedBy)
        let t = now()
        let rec = DeploymentRecord(
            deploymentId: makeDeploymentID(now: t), modelName: entry.modelName, modelVersion: version, environment: entry.environment,
            bentoTag: plan.bentoTag, endpointURL: entry.endpointURL, strategy: .rollback, status: .approved,
            previousVersion: entry.modelVersion, slot: plan.config.slot.rawValue, plan: plan.toJSON(), planHash: plan.planHash,
            requestedBy: requestedBy, rollbackOf: undone.deploymentId, createdAt: t, updatedAt: t)
        do {
            try store.insert(rec, event: DeploymentEvent(
                deploymentId: rec.deploymentId, at: t, toStatus: .approved, step: Step.plan.wireName, actor: requestedBy,
                message: "rollback of \(entry.modelVersion) to \(version) by redeploying it blue-green (no warm slot): \(reason)"))
        } catch {
            if error.code == .rolloutInProgress {
                throw EngineError.rolloutInProgress(error.deploymentId, "another rollout for \(entry.modelName) in \(entry.environment) is in flight (\(error.deploymentId ?? "?")); reject or finish it first")
            }
            throw EngineError.ledger(error)
        }
        var runner = RolloutRunner(engine: self, record: rec, plan: plan, actor: requestedBy, progress: progress)
        runner.executeNote = ("rollback redeploy started", .object([:]))
        let final = try await runner.run(.execute)
        return RollbackOutcome(record: final, fromVersion: entry.modelVersion, toVersion: version, durationMs: ms(since: start))
    }

    /// A blue-green plan for `version` from its newest full plan here, without gates (a rollback is an emergency).
    func redeployPlan(_ entry: RegistryEntry, version: String, reason: String, requestedBy: String) throws(EngineError) -> DeploymentPlan {
        guard let (old, oldPlan) = try redeploySource(entry.modelName, entry.environment, version: version) else {
            throw EngineError.nothingToRollBack("version_not_in_history", "\(version) has no earlier deployment here to redeploy")
        }
        guard var envPolicy = policy.environment(entry.environment) else {
            throw EngineError.refused("unknown_environment", "no policy for \(entry.environment)")
        }
        // The version was live here before: an emergency rollback takes its old smoke tests as they were.
        envPolicy.requireSmokeTests = false
        let input = PlanInput(
            modelName: entry.modelName, modelVersion: version, environment: entry.environment, bentoTag: old.bentoTag ?? oldPlan.bentoTag,
            strategyRequest: .blueGreen, smokeTests: oldPlan.config.smokeTests, requirements: RequirementOverrides(),
            requestedBy: requestedBy,
            model: ModelFacts(name: entry.modelName, version: version),
            bento: BentoFacts(tag: old.bentoTag ?? oldPlan.bentoTag, apis: oldPlan.requirements.apis),
            live: liveFacts(entry), host: ports(for: entry.environment).catalog.hostFacts(), policy: envPolicy, extraGates: [])
        var plan: DeploymentPlan
        switch Planner.plan(input) {
        case .success(let p): plan = p
        case .failure(let refusal): throw EngineError.planRefusal(refusal)
        }
        plan.gates = []
        plan.steps.removeAll { $0 == Step.deployGate.wireName || $0 == Step.promotionGate.wireName }
        plan.reasons.insert("rollback of \(entry.modelVersion) to \(version): \(reason)", at: 0)
        return plan
    }
}
