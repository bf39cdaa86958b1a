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
    // MARK: - Approve

    /// Answers the pending gate. Approving the promotion gate resumes the rollout to live.
    public func approve(
        deploymentId: String, approver: String, decision: String, gate requested: GateKind?, comment: String?,
        progress: @escaping ProgressHandler
    ) async throws(EngineError) -> ApprovalOutcome {
        await reconcileOnce()
        var r = try record(deploymentId)
        guard let pending = Lifecycle.pendingGate(r.status) else {
            throw EngineError.approval("not_awaiting_approval", "deployment \(deploymentId) is \(r.status.rawValue), not waiting at a gate")
        }
        if let requested, requested != pending {
            throw EngineError.approval("not_awaiting_approval", "deployment \(deploymentId) waits at gate \(pending.rawValue), not \(requested.rawValue)")
        }
        let plan = try decodePlan(r)
        let gate = plan.gate(pending) ?? Gate(kind: pending)
        if let expired = try expireIfDue(r) {
            if pending == .promote { await stopSlot(expired) }
            throw EngineError.approval("approval_expired", "gate \(pending.rawValue) of \(deploymentId) expired after \(gate.timeoutSeconds ?? 0) s")
        }
        var fields: [String: JSONValue] = ["gate": .string(pending.rawValue), "decision": .string(decision)]
        if let comment { fields["comment"] = .string(comment) }
        let data = JSONValue.object(fields)
        if decision == "reject" {
            if pending == .promote { await stopSlot(r) }
            r = try move(r, .reject(gate: pending), step: "gate:\(pending.rawValue)", actor: approver,
                         message: "\(approver) rejected at gate \(pending.rawValue)\(comment.map { ": \($0)" } ?? "")",
                         changes: DeploymentChanges(finishedAt: now()), data: data)
            return ApprovalOutcome(record: r, gate: pending, decision: decision, execution: nil)
        }
        if case .forbidden(let reason, let message) = ApprovalPolicy.checkApproval(gate: gate, approver: approver, requestedBy: r.requestedBy) {
            note(r, step: "gate:\(pending.rawValue)", actor: approver, message: "approval refused: \(message)", data: ["reason": .string(reason)])
            throw EngineError.approval(reason, message)
        }
        let live = liveFacts(try registryEntry(r.modelName, r.environment))
        if pending == .deploy, plan.isStale(currentLive: live) {
            throw EngineError.planStale(staleMessage(plan, live))
        }
        if pending == .promote, !sameLive(plan.recordedLive, live) {
            throw EngineError.planStale(staleMessage(plan, live))
        }
        let t = now()
        r = try move(r, .approve(gate: pending), step: "gate:\(pending.rawValue)", actor: approver,
                     message: "\(approver) approved gate \(pending.rawValue)\(comment.map { ": \($0)" } ?? "")",
                     changes: DeploymentChanges(approvedBy: approver, approvedAt: t,
                                                // Approving the promotion resumes the rollout here: this agent owns it now.
                                                owner: pending == .promote ? .some(config.agentID) : nil),
                     data: data)
        guard pending == .promote else {
            return ApprovalOutcome(record: r, gate: pending, decision: decision, execution: nil)
        }
        let ctx = RunContext(engine: self, plan: plan, progress: progress, actor: approver)
        r = try await withOwnership(r) { () async throws(EngineError) -> DeploymentRecord in
            try await self.switchAndBake(r, ctx)
        }
        return ApprovalOutcome(record: r, gate: pending, decision: decision, execution: r)
    }

    func sameLive(_ a: LiveFacts?, _ b: LiveFacts?) -> Bool { a?.deploymentId == b?.deploymentId }

    func staleMessage(_ plan: DeploymentPlan, _ live: LiveFacts?) -> String {
        "the live version changed since the plan was made (planned against \(plan.recordedLive.map { "\($0.version) (\($0.deploymentId))" } ?? "nothing live"), now \(live.map { "\($0.version) (\($0.deploymentId))" } ?? "nothing live")); plan again"
    }

    func decodePlan(_ r: DeploymentRecord) throws(EngineError) -> DeploymentPlan {
        do { return try DeploymentPlan(json: r.plan) } catch {
            throw EngineError(code: -32603, reason: "internal_error", message: "the stored plan of \(r.deploymentId) cannot be read: \(error)")
        }
    }

    // MARK: - Execute

    /// Drives an approved plan to live (or to its promotion gate, or to failure with the live version untouched).
    public func execute(deploymentId: String, idempotencyKey: String?, actor: String = "model-deployer",
                        progress: @escaping ProgressHandler) async throws(EngineError) -> DeploymentRecord {
        await reconcileOnce()
        var r = try record(deploymentId)
        if r.status != .planned && r.status != .approved {
            // A retry with the key of the first execute returns that outcome; it never starts a second rollout.
            if let key = idempotencyKey, let events = try? store.events(deploymentId: deploymentId),
                events.contains(where: { $0.step == "execute" && $0.data["idempotency_key"]?.stringValue == key })
            {
                if r.status.isInFlight && r.status != .awaitingPromotion {
                    throw EngineError.rolloutInProgress(r.deploymentId, "deployment \(deploymentId) is still \(r.status.rawValue)")
                }
                return r
            }
            if r.status == .awaitingApproval {
                throw EngineError.approval("approval_required", "deployment \(deploymentId) waits for approval at gate deploy; call deploy.approve first")
            }
            throw EngineError.approval("not_executable", "deployment \(deploymentId) is \(r.status.rawValue); only a planned or approved deployment can be executed")
        }
        let plan = try decodePlan(r)
        let live = liveFacts(try registryEntry(r.modelName, r.environment))
        if plan.isStale(currentLive: live) {
            throw EngineError.planStale(staleMessage(plan, live))
        }
        var data: [String: JSONValue] = [:]
        if let idempotencyKey { data["idempotency_key"] = .string(idempotencyKey) }
        r = try move(r, .execute, step: "execute", actor: actor, message: "execution started by \(actor)",
                     changes: DeploymentChanges(startedAt: now(), owner: .some(config.agentID)), data: .object(data))
        let ctx = RunContext(engine: self, plan: plan, progress: progress, actor: actor)
        ctx.report(r, step: "execute", "executing \(plan.strategy.rawValue) of \(r.modelName):\(r.modelVersion)", 5)
        let started = r
        return try await withOwnership(started) { () async throws(EngineError) -> DeploymentRecord in
            try await self.runPipeline(started, ctx)
        }
    }

    /// Runs `body`; if the task is cancelled midway, the deployment is interrupted cleanly (staging slot
    /// stopped, live untouched) before the cancellation propagates.
    func withOwnership(_ r: DeploymentRecord, _ body: () async throws(EngineError) -> DeploymentRecord) async throws(EngineError) -> DeploymentRecord {
        do {
            return try await body()
        } catch let e where e.reason == "cancelled" {
            await cleanUpAfterInterruption(r.deploymentId, why: "the execute request was cancelled")
            throw e
        }
    }

    /// The deploy steps after `deploying`: slot, readiness, smoke tests, baseline, gate, switch, bake.
    func runPipeline(_ start: DeploymentRecord, _ ctx: RunContext) async throws(EngineError) -> DeploymentRecord {
        var r = start
        let plan = ctx.plan
        let slot = plan.config.slot
        let spec0 = SlotSpec(modelName: r.modelName, environment: r.environment, slot: slot, bentoTag: r.bentoTag ?? plan.bentoTag, port: plan.config.slotPort)

        // 1. Start the new version in the inactive slot.
        ctx.report(r, step: "start_slot", "starting \(spec0.bentoTag) in slot \(slot.rawValue)", 10)
        if let old = slots.state(modelName: r.modelName, environment: r.environment, slot: slot) {
            // Whatever ran there (an older version kept warm) is no longer a rollback target once this one starts.
            note(r, step: "start_slot", message: "stopping what still ran in slot \(slot.rawValue) (pid \(old.pid))")
            let (m, e) = (r.modelName, r.environment)
            // It takes no traffic (the router points at the live slot), so it gets no graceful drain.
            _ = await detached { await self.slots.stop(modelName: m, environment: e, slot: slot, graceSeconds: 0) }
            try await retireFromRegistry(r, slot: slot)
        }
        var spec = spec0
        let port = freePort(preferred: plan.config.slotPort)
        if port != plan.config.slotPort {
            note(r, step: "start_slot", message: "port \(plan.config.slotPort) is taken; using \(port)")
            spec.port = port
        }
        let state: SlotState
        do {
            state = try slots.start(spec)
        } catch {
            return try await fail(r, ctx, step: "start_slot", reason: "slot_start_failed", message: error.message)
        }
        note(r, step: "start_slot", message: "slot \(slot.rawValue) started: pid \(state.pid), port \(spec.port)",
             data: ["pid": .int(Int64(state.pid)), "port": .int(Int64(spec.port)), "log": .string(state.logPath)])
        try checkCancelled()

        // 2. Readiness within the startup deadline.
        ctx.report(r, step: "readiness", "waiting for /readyz on port \(spec.port)", 20)
        let ready = await slots.waitReady(state, deadlineSeconds: Double(plan.config.startupDeadlineSeconds),
                                          probeTimeoutMs: plan.config.probeTimeoutMs, intervalMs: plan.config.probeIntervalMs)
        try checkCancelled()
        guard ready.ready else {
            let tail = slots.logTail(state, bytes: 600)
            return try await fail(r, ctx, step: "readiness", reason: "readiness_failed",
                                  message: "slot \(slot.rawValue) was not ready within \(plan.config.startupDeadlineSeconds) s (\(ready.attempts) probes; \(ready.lastError ?? "no answer")); log tail: \(tail)")
        }
        r = try move(r, .slotReady, step: "readiness", actor: "model-deployer",
                     message: "ready after \(fixed(ready.elapsedMs, 0)) ms (\(ready.attempts) probes)",
                     changes: DeploymentChanges(slot: slot.rawValue), data: ["elapsed_ms": .double(ready.elapsedMs), "port": .int(Int64(spec.port))])

        // 3. Smoke tests.
        let checks = plan.config.smokeTests
        if !checks.isEmpty {
            ctx.report(r, step: "smoke_tests", "running \(checks.count) smoke test(s)", 40)
            let results = await Probes.smoke(port: spec.port, checks: checks, timeoutMs: 5000)
            try checkCancelled()
            let resultJSON: JSONValue = .array(results.map {
                ["api": .string($0.api), "passed": .bool($0.passed), "status": $0.status.map { .int(Int64($0)) } ?? .null,
                 "latency_ms": .double($0.latencyMs), "answer": $0.answer ?? .null, "message": .string($0.message)]
            })
            if let bad = results.first(where: { !$0.passed }) {
                note(r, step: "smoke_tests", message: "smoke test \(bad.api) failed", data: ["results": resultJSON])
                return try await fail(r, ctx, step: "smoke_tests", reason: "smoke_test_failed", message: "smoke test \(bad.api) failed: \(bad.message)")
            }
            note(r, step: "smoke_tests", message: "\(results.count) smoke test(s) passed", data: ["results": resultJSON])
        }

        // 4. Metrics baseline from a short probe load straight at the new slot.
        ctx.report(r, step: "baseline", "taking the metrics baseline", 55)
        let baseline = await measure(port: spec.port, plan: plan, requests: plan.config.baseline.requests, concurrency: plan.config.baseline.concurrency)
        try checkCancelled()
        let baselineDict = baseline.dictionary
        if baseline.errorRate > 0.5 {
            return try await fail(r, ctx, step: "baseline", reason: "baseline_unhealthy",
                                  message: "the new version failed \(Int(baseline.errorRate * 100))% of baseline requests")
        }
        note(r, step: "baseline",
             message: "baseline p50 \(fixed(baseline.p50Ms, 1)) ms, p95 \(fixed(baseline.p95Ms, 1)) ms, error rate \(fixed(baseline.errorRate, 3))",
             data: .object(baselineDict.mapValues { .double($0) }))
        // The figures are stored with the next status change, so the audit trail shows only real transitions.
        let validated = DeploymentChanges(healthCheckPassed: true, metricsBaseline: baselineDict)

        // 5. The promotion gate: persist and return; deploy.approve resumes from here.
        if plan.hasPromotionGate {
            r = try move(r, .validated(promotionGate: true), step: "gate:promote", actor: "model-deployer",
                         message: "validated; waiting for approval at gate promote before the traffic switch", changes: validated)
            ctx.report(r, step: "gate:promote", "waiting for approval at gate promote", 65)
            return r
        }
        r = try move(r, .validated(promotionGate: false), step: "validate", actor: "model-deployer", message: "validated; switching traffic",
                     changes: validated)
        return try await switchAndBake(r, ctx)
    }

    /// Switch, register, bake, and schedule the retirement of the previous slot.
    func switchAndBake(_ start: DeploymentRecord, _ ctx: RunContext) async throws(EngineError) -> DeploymentRecord {
        var r = start
        let plan = ctx.plan
        guard let slot = r.slot.flatMap(Slot.init(rawValue:)) ?? Optional(plan.config.slot),
            let state = slots.state(modelName: r.modelName, environment: r.environment, slot: slot), state.alive
        else {
            return try await fail(r, ctx, step: "switch", reason: "slot_died", message: "the new slot is no longer running")
        }
        let previous = try registryEntry(r.modelName, r.environment)
        var routerPort = previous.flatMap { Planner.port(of: $0.endpointURL) } ?? plan.config.routerPort
        if previous == nil, router.currentRoute(modelName: r.modelName, environment: r.environment)?.routerPort != routerPort,
            !portIsFree(routerPort)
        {
            // The planned endpoint port is taken by something else on this host: the first deployment takes another.
            let other = freePort(preferred: nil)
            note(r, step: "switch", message: "router port \(routerPort) is in use; the endpoint takes port \(other)")
            routerPort = other
        }
        let endpoint = "http://127.0.0.1:\(routerPort)"

        // 6. Switch traffic: atomic config rewrite, nginx -t, reload, then read back through the router.
        ctx.report(r, step: "switch", "switching \(endpoint) to slot \(slot.rawValue)", 75)
        let switchStart = ContinuousClock.now
        do {
            try await router.ensureRunning()
            try await router.route(modelName: r.modelName, environment: r.environment, routerPort: routerPort,
                                   upstreamPort: state.spec.port, slot: slot, version: r.modelVersion)
        } catch {
            await restoreRoute(previous)
            return try await fail(r, ctx, step: "switch", reason: "switch_failed", message: error.message)
        }
        guard await router.verify(routerPort: routerPort, expectSlot: slot, timeoutMs: 5000) else {
            await restoreRoute(previous)
            return try await fail(r, ctx, step: "switch", reason: "switch_unverified",
                                  message: "the router did not answer from slot \(slot.rawValue) within 5 s")
        }
        let switchMs = ms(since: switchStart)

        // 7. Register: the registry names the new version live, with the previous one for rollback.
        let t = now()
        let entry = RegistryEntry(
            modelName: r.modelName, environment: r.environment, modelVersion: r.modelVersion, deploymentId: r.deploymentId,
            endpointURL: endpoint, slot: slot.rawValue, bentoTag: r.bentoTag,
            previousVersion: previous?.modelVersion, previousDeploymentId: previous?.deploymentId,
            previousSlot: previous?.slot, previousBentoTag: previous?.bentoTag, updatedAt: t)
        try ledger { () throws(StoreError) in try store.setRegistry(entry) }
        r = try move(r, .switched, step: "switch", actor: ctx.actor,
                     message: "traffic switched to slot \(slot.rawValue) in \(fixed(switchMs, 0)) ms",
                     changes: DeploymentChanges(endpointURL: endpoint, finishedAt: t), data: ["switch_ms": .double(switchMs)])
        if let previous, let old = try? store.deployment(id: previous.deploymentId), old.status == .live {
            let undone = r.strategy == .rollback && r.rollbackOf == old.deploymentId
            _ = try? move(old, undone ? .rollBack : .supersede, step: undone ? "rollback" : "supersede", actor: ctx.actor,
                          message: undone ? "rolled back: \(r.modelVersion) is live again (deployment \(r.deploymentId))"
                                          : "superseded by \(r.modelVersion) (deployment \(r.deploymentId))",
                          changes: DeploymentChanges(finishedAt: t))
        }
        ctx.report(r, step: "register", "\(r.modelVersion) is live at \(endpoint)", 85)

        // Direct strategy keeps no second slot warm.
        if plan.strategy == .direct, let previous, let prevSlot = Slot(rawValue: previous.slot), prevSlot != slot {
            let (m, e) = (r.modelName, r.environment)
            _ = await detached { await self.slots.stop(modelName: m, environment: e, slot: prevSlot) }
            try await retireFromRegistry(r, slot: prevSlot)
        }

        // 8. Bake: watch error rate and latency through the router; roll back by itself on a regression.
        let bake = plan.config.rollback.bakeSeconds
        if bake > 0 {
            ctx.report(r, step: "bake", "baking for \(bake) s", 90)
            if let verdictMessage = await bakeWatch(r, plan: plan, routerPort: routerPort, slot: slot, seconds: bake) {
                note(r, step: "bake", message: "bake failed: \(verdictMessage.message)", data: ["reason": .string(verdictMessage.reason)])
                if let current = try? registryEntry(r.modelName, r.environment), current.deploymentId == r.deploymentId,
                    current.previousSlot != nil
                {
                    do {
                        let outcome = try await rollbackToWarm(
                            undone: r, entry: current, reason: "automatic rollback: \(verdictMessage.message)",
                            requestedBy: "model-deployer", error: Self.errorJSON(code: Engine.deploymentFailedCode, reason: verdictMessage.reason, message: verdictMessage.message, step: "bake"),
                            progress: ctx.progress)
                        ctx.report(outcome.record, step: "rollback", "rolled back to \(outcome.toVersion) after a failed bake", 100)
                        return try record(r.deploymentId)
                    } catch {
                        note(r, step: "bake", message: "automatic rollback failed: \(error.message)")
                    }
                } else {
                    note(r, step: "bake", message: "no warm previous version to roll back to; \(r.modelVersion) stays live")
                }
            } else if (try? store.registry(modelName: r.modelName, environment: r.environment))??.deploymentId == r.deploymentId {
                note(r, step: "bake", message: "bake passed (\(bake) s)")
            } else {
                note(r, step: "bake", message: "bake ended early: another deployment took over the endpoint")
                return try record(r.deploymentId)
            }
        }

        // 9. Keep the previous slot warm for a while, then stop it (a later start does it if the agent is gone).
        if plan.strategy != .direct, let previous, let prevSlot = Slot(rawValue: previous.slot), prevSlot != slot {
            scheduleRetirement(r, slot: prevSlot, after: plan.config.rollback.keepWarmSeconds)
        }
        ctx.report(r, step: "done", "\(r.modelVersion) is live", 100)
        return try record(r.deploymentId)
    }

    /// Probes through the router during the bake; returns the failure verdict, or nil when healthy.
    func bakeWatch(_ r: DeploymentRecord, plan: DeploymentPlan, routerPort: Int, slot: Slot, seconds: Int) async -> (reason: String, message: String)? {
        guard let baselineDict = (try? store.deployment(id: r.deploymentId))??.metricsBaseline else { return nil }
        let baseline = Metrics(dictionary: baselineDict)
        let clock = ContinuousClock()
        let end = clock.now + .seconds(seconds)
        // One slow window is noise on a shared machine (a reload, a GC pause, a busy core): only a regression
        // seen in two windows in a row counts. A dead process counts at once.
        var strikes = 0
        while clock.now < end {
            if Task.isCancelled { return nil }
            // A manual rollback (or a newer rollout) during the bake ends it: this version is no longer live.
            guard (try? store.registry(modelName: r.modelName, environment: r.environment))??.deploymentId == r.deploymentId else {
                return nil
            }
            let observed = await measure(port: routerPort, plan: plan, requests: 20, concurrency: 2)
            if let s = slots.state(modelName: r.modelName, environment: r.environment, slot: slot), !s.alive {
                return ("slot_died", "the new version's process (pid \(s.pid)) died during the bake")
            }
            if case .rollback(let reason, let message) = BakeVerdict.evaluate(baseline: baseline, observed: observed, policy: plan.config.rollback) {
                strikes += 1
                note(r, step: "bake", message: "bake window \(strikes) of 2 over the limit: \(message)", data: .object(observed.dictionary.mapValues { .double($0) }))
                if strikes >= 2 { return (reason.wireName, message) }
            } else {
                strikes = 0
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
        return nil
    }

    /// Latency and error figures from a short load on `port` (the smoke test's API, or `/readyz`).
    func measure(port: Int, plan: DeploymentPlan, requests: Int, concurrency: Int) async -> Metrics {
        if let api = plan.config.baseline.api, let input = plan.config.baseline.input {
            let l = await Probes.load(port: port, api: api, input: input, requests: requests, concurrency: concurrency, timeoutMs: 5000)
            return Metrics(dictionary: l.metrics)
        }
        // Without an API to call, the readiness endpoint is the signal.
        var latencies: [Double] = []
        var failures = 0
        let start = ContinuousClock.now
        for _ in 0..<max(1, requests / 2) {
            do {
                let resp = try await HTTPClient.request(method: "GET", port: port, path: plan.config.healthPath, timeoutMs: 2000)
                latencies.append(resp.latencyMs)
                if resp.status >= 500 { failures += 1 }
            } catch {
                failures += 1
            }
        }
        let elapsed = max(ms(since: start) / 1000, 0.001)
        latencies.sort()
        func pct(_ p: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        let n = max(1, requests / 2)
        return Metrics(p50Ms: pct(0.5), p95Ms: pct(0.95), p99Ms: pct(0.99), errorRate: Double(failures) / Double(n), rps: Double(n) / elapsed)
    }

    /// Points the router back at what the registry says is live (or removes the route when nothing is).
    func restoreRoute(_ entry: RegistryEntry?) async {
        guard let entry, let slot = Slot(rawValue: entry.slot), let port = Planner.port(of: entry.endpointURL),
            let state = slots.state(modelName: entry.modelName, environment: entry.environment, slot: slot)
        else {
            if let entry { try? await router.removeRoute(modelName: entry.modelName, environment: entry.environment) }
            return
        }
        try? await router.route(modelName: entry.modelName, environment: entry.environment, routerPort: port,
                                upstreamPort: state.spec.port, slot: slot, version: entry.modelVersion)
    }

    /// Records a failure: the new slot is torn down, the live version stays untouched.
    func fail(_ r: DeploymentRecord, _ ctx: RunContext, step: String, reason: String, message: String) async throws(EngineError) -> DeploymentRecord {
        await stopSlot(r, slot: ctx.plan.config.slot)
        let current = (try? store.deployment(id: r.deploymentId)) ?? r
        let failed = try move(current, .fail, step: step, actor: "model-deployer", message: "failed at \(step): \(message)",
                              changes: DeploymentChanges(healthCheckPassed: step == "readiness" ? false : nil, finishedAt: now(),
                                                         error: Self.errorJSON(code: Engine.deploymentFailedCode, reason: reason, message: message, step: step)),
                              data: ["reason": .string(reason)])
        ctx.report(failed, step: step, "failed at \(step): \(message)", 100)
        return failed
    }

    func checkCancelled() throws(EngineError) {
        if Task.isCancelled { throw EngineError(code: -32800, reason: "cancelled", message: "Request cancelled") }
    }

    /// Stops the slot of a deployment unless it is what the registry serves.
    func stopSlot(_ r: DeploymentRecord, slot: Slot? = nil) async {
        guard let s = slot ?? r.slot.flatMap(Slot.init(rawValue:)) else { return }
        if let live = try? store.registry(modelName: r.modelName, environment: r.environment), live.slot == s.rawValue {
            return  // never stop what serves traffic
        }
        _ = await detached { await self.slots.stop(modelName: r.modelName, environment: r.environment, slot: s) }
        try? await retireFromRegistry(r, slot: s)
    }

    /// Forgets a stopped slot as the warm rollback target (the version stays in history for a redeploy).
    func retireFromRegistry(_ r: DeploymentRecord, slot: Slot) async throws(EngineError) {
        guard var entry = try registryEntry(r.modelName, r.environment), entry.previousSlot == slot.rawValue, entry.slot != slot.rawValue else { return }
        entry.previousSlot = nil
        try ledger { () throws(StoreError) in try store.setRegistry(entry) }
    }

    /// Stops the previous slot after its keep-warm time, if it is still the warm one then.
    func scheduleRetirement(_ r: DeploymentRecord, slot: Slot, after seconds: Int) {
        Task.detached(executorPreference: BlockingExecutor.shared) { [self] in
            try? await Task.sleep(for: .seconds(seconds))
            guard let entry = try? store.registry(modelName: r.modelName, environment: r.environment),
                entry.deploymentId == r.deploymentId, entry.previousSlot == slot.rawValue
            else { return }
            _ = await slots.stop(modelName: r.modelName, environment: r.environment, slot: slot)
            try? await retireFromRegistry(r, slot: slot)
            note(r, step: "retire_previous", message: "stopped the previous slot \(slot.rawValue) after \(seconds) s warm")
        }
    }

    /// Runs `body` in a task of its own, so a cancelled caller still waits for the clean-up to finish.
    func detached<T: Sendable>(_ body: @escaping @Sendable () async -> T) async -> T {
        await Task(executorPreference: BlockingExecutor.shared) { await body() }.value
    }

    func ms(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
    }
}

/// The per-run context: the plan, who acts, where progress goes.
struct RunContext: Sendable {
    let engine: Engine
    let plan: DeploymentPlan
    let progress: ProgressHandler
    let actor: String

    func report(_ r: DeploymentRecord, step: String, _ message: String, _ percent: Double) {
        progress(ProgressUpdate(deploymentId: r.deploymentId, status: r.status, step: step, message: message, percent: percent, at: engine.now()))
        engine.log("progress", ["deployment_id": .string(r.deploymentId), "step": .string(step), "message": .string(message)])
    }
}

/// `v` with `digits` decimals, without Foundation's String(format:).
func fixed(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return "\(v)" }
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (abs(v) * p).rounded()
    let whole = Int64(r / p)
    let frac = Int64(r - Double(whole) * p)
    var s = (v < 0 && r != 0 ? "-" : "") + String(whole)
    if digits > 0 {
        var f = String(frac)
        while f.count < digits { f = "0" + f }
        s += "." + f
    }
    return s
}
