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
        await reconcileOnce()
        guard let entry = try registryEntry(modelName, environment) else {
            throw EngineError.nothingToRollBack("nothing_to_roll_back", "nothing is live for \(modelName) in \(environment)")
        }
        if let blocking = try ledger({ () throws(StoreError) in try store.inFlight(modelName: modelName, environment: environment) }),
            [.deploying, .validating, .switching].contains(blocking.status)
        {
            throw EngineError.rolloutInProgress(blocking.deploymentId, "deployment \(blocking.deploymentId) is \(blocking.status.rawValue); wait for it or cancel it first")
        }
        let undone = try record(entry.deploymentId)
        let warm = await isWarm(entry)
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
            // Rolling back to the version that is live already is nothing to roll back, too.
            throw EngineError.nothingToRollBack(reason == "already_live" ? "nothing_to_roll_back" : reason, message)
        case .switchToWarm:
            return try await rollbackToWarm(undone: undone, entry: entry, reason: why, requestedBy: requestedBy, error: nil, progress: progress)
        case .redeploy(let version):
            return try await rollbackByRedeploy(undone: undone, entry: entry, version: version, reason: why, requestedBy: requestedBy, progress: progress)
        }
    }

    /// Whether the registry's previous slot runs and answers its readiness probe now.
    func isWarm(_ entry: RegistryEntry) async -> Bool {
        guard let s = entry.previousSlot.flatMap(Slot.init(rawValue:)),
            let state = slots.state(modelName: entry.modelName, environment: entry.environment, slot: s), state.alive
        else { return false }
        guard let resp = try? await HTTPClient.request(method: "GET", port: state.spec.port, path: "/readyz", timeoutMs: 500) else { return false }
        return resp.status == 200
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

    /// One router switch back to the warm previous slot, recorded as a `rollback` deployment.
    func rollbackToWarm(
        undone: DeploymentRecord, entry: RegistryEntry, reason: String, requestedBy: String, error: JSONValue?,
        progress: @escaping ProgressHandler
    ) async throws(EngineError) -> RollbackOutcome {
        let start = ContinuousClock.now
        guard let prevSlotName = entry.previousSlot, let prevSlot = Slot(rawValue: prevSlotName),
            let prevVersion = entry.previousVersion, let prevDeployment = entry.previousDeploymentId,
            let state = slots.state(modelName: entry.modelName, environment: entry.environment, slot: prevSlot), state.alive,
            let routerPort = Planner.port(of: entry.endpointURL)
        else {
            throw EngineError.nothingToRollBack("nothing_to_roll_back", "the previous version is not running warm any more")
        }
        do {
            try await router.ensureRunning()
            try await router.route(modelName: entry.modelName, environment: entry.environment, routerPort: routerPort,
                                   upstreamPort: state.spec.port, slot: prevSlot, version: prevVersion)
        } catch {
            await restoreRoute(entry)
            throw recordFailedRollback(undone: undone, entry: entry, requestedBy: requestedBy, reason: reason, failure: EngineError.runtime(error))
        }
        guard await router.verify(routerPort: routerPort, expectSlot: prevSlot, timeoutMs: 5000) else {
            await restoreRoute(entry)
            throw recordFailedRollback(
                undone: undone, entry: entry, requestedBy: requestedBy, reason: reason,
                failure: EngineError(code: -32008, reason: "switch_unverified", message: "the router did not answer from slot \(prevSlotName) within 5 s"))
        }
        let switchMs = ms(since: start)
        let t = now()
        let previousRecord = try? store.deployment(id: prevDeployment)
        // The rollback is recorded once the switch took effect: a pending plan must not block an emergency
        // rollback, and a crash before this point leaves the registry (and so reconcile) on the undone version.
        let rec = DeploymentRecord(
            deploymentId: makeDeploymentID(now: t), modelName: entry.modelName, modelVersion: prevVersion, environment: entry.environment,
            bentoTag: entry.previousBentoTag ?? previousRecord?.bentoTag, endpointURL: entry.endpointURL, strategy: .rollback, status: .live,
            previousVersion: entry.modelVersion, slot: prevSlotName,
            plan: ["strategy": "rollback", "kind": "switch_to_warm", "reasons": .array([.string(reason)]),
                   "from_version": .string(entry.modelVersion), "to_version": .string(prevVersion)],
            planHash: "", healthCheckPassed: true, metricsBaseline: previousRecord?.metricsBaseline, requestedBy: requestedBy,
            startedAt: t, finishedAt: t, rollbackOf: undone.deploymentId, createdAt: t, updatedAt: t)
        _ = try ledger { () throws(StoreError) in
            try store.insert(rec, event: DeploymentEvent(
                deploymentId: rec.deploymentId, at: t, toStatus: .live, step: "switch", actor: requestedBy,
                message: "rolled back \(entry.modelVersion) to \(prevVersion): traffic switched to warm slot \(prevSlotName) in \(fixed(switchMs, 0)) ms (\(reason))",
                data: ["switch_ms": .double(switchMs), "rollback_of": .string(undone.deploymentId)]))
        }
        let newEntry = RegistryEntry(
            modelName: entry.modelName, environment: entry.environment, modelVersion: prevVersion, deploymentId: rec.deploymentId,
            endpointURL: entry.endpointURL, slot: prevSlotName, bentoTag: rec.bentoTag,
            previousVersion: entry.modelVersion, previousDeploymentId: undone.deploymentId, previousSlot: entry.slot,
            previousBentoTag: entry.bentoTag, updatedAt: t)
        try ledger { () throws(StoreError) in try store.setRegistry(newEntry) }
        if let current = try? store.deployment(id: undone.deploymentId), current.status == .live {
            _ = try? move(current, .rollBack, step: "rollback", actor: requestedBy,
                          message: "rolled back to \(prevVersion) (deployment \(rec.deploymentId)): \(reason)",
                          changes: DeploymentChanges(error: error))
        }
        let total = ms(since: start)
        progress(ProgressUpdate(deploymentId: rec.deploymentId, status: .live, step: "rollback",
                                message: "\(prevVersion) is live again", percent: 100, at: now()))
        // The undone version stays warm in its slot for the keep-warm time (roll forward stays one switch).
        let keepWarm = (try? DeploymentPlan(json: undone.plan))?.config.rollback.keepWarmSeconds ?? 600
        scheduleRetirement(rec, slot: Slot(rawValue: entry.slot) ?? prevSlot.other, after: keepWarm)
        return RollbackOutcome(record: rec, fromVersion: entry.modelVersion, toVersion: prevVersion, durationMs: total)
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
            error: Self.errorJSON(code: failure.code, reason: failure.reason, message: failure.message, step: "switch"),
            rollbackOf: undone.deploymentId, createdAt: t, updatedAt: t)
        var out = failure
        do {
            _ = try store.insert(rec, event: DeploymentEvent(
                deploymentId: rec.deploymentId, at: t, toStatus: .failed, step: "switch", actor: requestedBy,
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
        guard let (old, oldPlan) = try redeploySource(entry.modelName, entry.environment, version: version) else {
            throw EngineError.nothingToRollBack("version_not_in_history", "\(version) has no earlier deployment here to redeploy")
        }
        guard var envPolicy = policy.environment(entry.environment) else {
            throw EngineError.refused("unknown_environment", "no policy for \(entry.environment)")
        }
        // The version was live here before: an emergency rollback takes its old smoke tests as they were.
        envPolicy.requireSmokeTests = false
        let live = liveFacts(entry)
        let host = readHostFacts()
        let input = PlanInput(
            modelName: entry.modelName, modelVersion: version, environment: entry.environment, bentoTag: old.bentoTag ?? oldPlan.bentoTag,
            strategyRequest: .blueGreen, smokeTests: oldPlan.config.smokeTests, requirements: RequirementOverrides(),
            requestedBy: requestedBy,
            model: ModelFacts(name: entry.modelName, version: version),
            bento: BentoFacts(tag: old.bentoTag ?? oldPlan.bentoTag, apis: oldPlan.requirements.apis),
            live: live, host: HostFacts(freeMemoryMB: host.freeMemoryMB, cpuCount: host.cpuCount),
            policy: envPolicy, extraGates: [])
        var plan: DeploymentPlan
        switch Planner.plan(input) {
        case .success(let p): plan = p
        case .failure(let refusal): throw EngineError.planRefusal(refusal)
        }
        // A rollback is an emergency: no approval gates, and it goes straight on.
        plan.gates = []
        plan.steps.removeAll { $0.hasPrefix("gate:") }
        plan.reasons.insert("rollback of \(entry.modelVersion) to \(version): \(reason)", at: 0)
        let t = now()
        var rec = DeploymentRecord(
            deploymentId: makeDeploymentID(now: t), modelName: entry.modelName, modelVersion: version, environment: entry.environment,
            bentoTag: plan.bentoTag, endpointURL: entry.endpointURL, strategy: .rollback, status: .approved,
            previousVersion: entry.modelVersion, slot: plan.config.slot.rawValue, plan: plan.toJSON(), planHash: plan.planHash,
            requestedBy: requestedBy, rollbackOf: undone.deploymentId, createdAt: t, updatedAt: t)
        do {
            try store.insert(rec, event: DeploymentEvent(
                deploymentId: rec.deploymentId, at: t, toStatus: .approved, step: "plan", actor: requestedBy,
                message: "rollback of \(entry.modelVersion) to \(version) by redeploying it blue-green (no warm slot): \(reason)"))
        } catch {
            if error.code == .rolloutInProgress {
                throw EngineError.rolloutInProgress(error.deploymentId, "another rollout for \(entry.modelName) in \(entry.environment) is in flight (\(error.deploymentId ?? "?")); reject or finish it first")
            }
            throw EngineError.ledger(error)
        }
        rec = try move(rec, .execute, step: "execute", actor: requestedBy, message: "rollback redeploy started",
                       changes: DeploymentChanges(startedAt: t, owner: .some(config.agentID)))
        let ctx = RunContext(engine: self, plan: plan, progress: progress, actor: requestedBy)
        let started = rec
        let final = try await withOwnership(started) { () async throws(EngineError) -> DeploymentRecord in
            try await self.runPipeline(started, ctx)
        }
        return RollbackOutcome(record: final, fromVersion: entry.modelVersion, toVersion: version, durationMs: ms(since: start))
    }
}
