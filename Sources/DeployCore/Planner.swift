import JSON

/// Why the planner refused to make a plan.
public struct PlanRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable: `strategy_unsupported`, `strategy_unsafe`, `already_live`, `insufficient_resources`,
    /// `invalid_smoke_test`, `invalid_params`.
    public var reason: String
    /// A sentence for people.
    public var message: String
    /// For a refusal of the caller's input: the parameter at fault (`smoke_tests`, `requirements`,
    /// `model_name`, ...); `nil` for a refusal of the deployment itself.
    public var field: String?

    /// A refusal.
    public init(reason: String, message: String, field: String? = nil) {
        self.reason = reason
        self.message = message
        self.field = field
    }

    public var description: String { "\(reason): \(message)" }
}

/// Pure strategy selection and config generation.
///
/// Strategy rules:
/// - `auto`: `direct` when nothing is live (first deployment) or in `development`; `blue_green` otherwise.
/// - explicit `direct` while a version is live outside `development` is refused (`strategy_unsafe`), not
///   downgraded: the caller asked for a replacement with no validated standby, and silently doing something
///   else would surprise them more than a clear refusal naming `blue_green`.
/// - explicit `blue_green` with nothing live falls back to `direct`, and the plan says why.
/// - `canary` needs a live version (`canary_needs_live_version`) and a router that splits traffic
///   (`weights_unsupported`); `auto` picks it only where the policy sets `default_strategy: canary`
///   (and falls back to blue-green, saying why, where the router cannot split). Redeploying the live version with the live bento is
///   refused (`already_live`); the same version with a different bento is a legitimate redeploy.
/// - `direct` with a version live (development) still starts the new version in a slot of its own and switches,
///   so the endpoint never goes dark, then retires the old slot at once (no bake, nothing kept warm).
///
/// Slot rule: the candidate takes the first slot (`blue`, `green`, `teal`) that holds neither the live version
/// nor the warm previous one, so a candidate never stops the rollback target and a failed attempt leaves
/// rollback one switch. The memory check covers every slot the rollout keeps running at once.
public enum Planner {
    /// Memory one BentoML slot takes before the model (measured about 265 MiB; rounded up).
    public static let slotBaseMemoryMB = 300
    /// Model size on disk times this approximates its size in memory.
    public static let modelMemoryFactor = 2.0
    /// Slot ports are hashed into this range.
    public static let slotPortRange = 20000...29999
    /// Router ports are hashed into this range.
    public static let routerPortRange = 18000...19999

    /// Makes a plan, or refuses with a stable reason.
    public static func plan(_ input: PlanInput) -> Result<DeploymentPlan, PlanRefusal> {
        if let refusal = validate(input) { return .failure(refusal) }
        let modelTag = "\(input.modelName):\(input.modelVersion)"
        let env = input.environment

        // Strategy.
        let strategy: DeploymentStrategy
        var reasons: [String] = []
        let isDevelopment = env == "development"
        if let live = input.live, live.version == input.modelVersion, live.bentoTag == input.bentoTag {
            return .failure(PlanRefusal(
                reason: "already_live",
                message: "\(modelTag) is already live in \(env) (deployment \(live.deploymentId), bento \(live.bentoTag)); nothing to deploy"))
        }
        var request = input.strategyRequest
        if request == .auto, input.policy.defaultStrategy == .canary, input.live != nil, !isDevelopment {
            if input.routerSplitsTraffic {
                request = .canary
                reasons.append("\(env)'s policy makes canary the default strategy")
            } else {
                reasons.append("\(env)'s policy makes canary the default strategy, but this router cannot split traffic by weight: blue-green instead")
            }
        }
        switch (request, input.live) {
        case (.canary, nil):
            return .failure(PlanRefusal(
                reason: "canary_needs_live_version",
                message: "a canary runs beside a live version and nothing is live for \(input.modelName) in \(env); deploy it first (auto or direct)"))
        case (.canary, _) where !input.routerSplitsTraffic:
            return .failure(PlanRefusal(
                reason: "weights_unsupported",
                message: "this environment's router cannot split traffic by weight (nginx); run serve with --router haproxy for canary, or use blue_green"))
        case (.canary, let live?):
            strategy = .canary
            reasons.append("canary was requested; \(input.modelVersion) takes a growing share of \(env)'s traffic beside \(live.version), judged against it on the same traffic at every step")
        case (.auto, nil):
            strategy = .direct
            reasons.append("first deployment of \(input.modelName) in \(env): nothing is live to switch from, so it deploys directly")
        case (.auto, let live?) where isDevelopment:
            strategy = .direct
            reasons.append("development deploys directly: \(live.version) is replaced as soon as \(input.modelVersion) is ready, without a warm standby")
        case (.auto, let live?):
            strategy = .blueGreen
            reasons.append("\(env) has \(live.version) live; blue-green keeps it serving until \(input.modelVersion) passes validation, then switches traffic and keeps \(live.version) warm for rollback")
        case (.direct, nil):
            strategy = .direct
            reasons.append("direct was requested; nothing is live in \(env), so there is nothing to switch from")
        case (.direct, let live?) where isDevelopment:
            strategy = .direct
            reasons.append("direct was requested explicitly: \(live.version) is replaced in development without a warm standby")
        case (.direct, let live?):
            return .failure(PlanRefusal(
                reason: "strategy_unsafe",
                message: "direct would replace \(live.version), live in \(env), with no validated standby and no instant rollback; use blue_green or auto"))
        case (.blueGreen, nil):
            strategy = .direct
            reasons.append("blue_green was requested but nothing is live in \(env): deploying directly (there is nothing to switch from)")
        case (.blueGreen, let live?):
            strategy = .blueGreen
            reasons.append("blue_green was requested explicitly; \(env) has \(live.version) live and it keeps serving until \(input.modelVersion) passes validation")
        }

        // Canary settings: the request's over the policy's over the defaults.
        var canary: CanaryConfig?
        if strategy == .canary {
            var c = input.policy.canary
            if let given = input.canary {
                do { c = try c.applying(given, path: "canary") } catch {
                    return .failure(PlanRefusal(reason: "invalid_params", message: error.description, field: "canary"))
                }
            }
            canary = c
            if let k = input.policy.runtime.kubernetes, let live = input.live {
                reasons.append(kubernetesCanarySentence(input, k, c, live: live))
            }
        } else if input.canary != nil {
            return .failure(PlanRefusal(reason: "invalid_params",
                                        message: "canary settings were given but the plan's strategy is \(strategy.rawValue), not canary",
                                        field: "canary"))
        }

        // Analysis of the model and bento.
        var analysis = "model \(modelTag)"
        var facts: [String] = []
        if let m = input.model.module { facts.append(m) }
        if let s = input.model.sizeBytes { facts.append(formatBytes(s)) }
        if let c = input.model.creationTime { facts.append("created \(c)") }
        if !facts.isEmpty { analysis += " (\(facts.joined(separator: ", ")))" }
        analysis += " is served by bento \(input.bentoTag)"
        if !input.bento.apis.isEmpty { analysis += " (APIs: \(input.bento.apis.joined(separator: ", ")))" }
        if !input.model.labels.isEmpty {
            analysis += "; labels: " + input.model.labels.keys.sorted().map { "\($0)=\(input.model.labels[$0]!)" }.joined(separator: ", ")
        }
        reasons.append(analysis)

        // Slot, resources and ports.
        let slot = Slot.candidate(live: input.live?.slot, warmPrevious: input.live?.warmPrevious?.slot)
        let resources = estimateResources(input)
        if case .failure(let refusal) = resources.check { return .failure(refusal) }
        reasons.append(resources.basis)
        if input.policy.runtime.kubernetes == nil {
            // This host's slots and memory; a cluster's Pods are the scheduler's to place (the runtime sentence says so).
            reasons.append(keptSlotsSentence(input, candidate: slot, memoryMB: resources.memoryMB))
        }
        let slotPort = slotPort(model: input.modelName, environment: env, slot: slot, unavailable: input.host.unavailablePorts)
        let routerPort = input.live.flatMap { port(of: $0.endpointURL) } ?? input.policy.runtime.kubernetes?.servicePort
            ?? routerPort(model: input.modelName, environment: env)
        if let k = input.policy.runtime.kubernetes {
            reasons.append(kubernetesSentence(input, k, memoryMB: resources.memoryMB, cpu: resources.cpu, gpu: resources.gpu, canary: strategy == .canary))
        } else if let live = input.live {
            var placement = "\(input.modelVersion) starts in slot \(slot.rawValue) on port \(slotPort) beside \(live.version) in slot \(live.slot.rawValue)"
            if let warm = live.warmPrevious {
                placement += " and the warm previous \(warm.version) in slot \(warm.slot.rawValue), which it does not touch"
                placement += strategy == .direct
                    ? "; once it is live, \(live.version) and \(warm.version) are stopped"
                    : "; once it is live, \(live.version) becomes the warm previous version and \(warm.version) is stopped"
            }
            reasons.append(placement + "; the endpoint \(live.endpointURL) stays the same")
        } else {
            reasons.append("\(input.modelVersion) starts in slot \(slot.rawValue) on port \(slotPort); the router serves it on port \(routerPort)")
        }

        // Gates.
        var gates = input.policy.gates(extra: input.extraGates.filter { $0 != .step })
        reasons.append(input.policy.gateSentence(extra: input.extraGates.filter { $0 != .step }))
        if let canary, canary.stepGates, canary.steps.count > 1 {
            let p = input.policy
            gates.append(Gate(kind: .step, approvers: p.approvers, fourEyes: p.fourEyes, timeoutSeconds: p.approvalTimeoutSeconds))
            reasons.append("canary step gates: each weight step after the first waits for deploy.approve with gate step")
        }

        // Rollback policy and steps.
        var rollback = input.policy.rollbackPolicy
        let hasPrevious = input.live != nil
        if strategy == .direct {
            rollback.bakeSeconds = 0
            rollback.keepWarmSeconds = 0
        }
        if strategy == .canary {
            // The analysis at every step is the bake: at 100 the new version is live with nothing left to watch.
            rollback.bakeSeconds = 0
        }
        var steps = ["start_slot", "readiness"]
        if !input.smokeTests.isEmpty { steps.append("smoke_tests") }
        steps.append("baseline")
        if gates.contains(where: { $0.kind == .promote }) { steps.append("gate:promote") }
        if let canary {
            for (i, w) in canary.steps.enumerated() {
                if i > 0, canary.stepGates { steps.append("gate:step") }
                steps.append("canary_step:\(w)")
            }
            steps.append("register")
        } else {
            steps += ["switch", "register"]
        }
        if strategy == .blueGreen { steps.append("bake") }
        if hasPrevious { steps.append("retire_previous") }

        let deadline = input.policy.startupDeadlineSeconds
        let smoke = input.smokeTests.isEmpty
            ? "WARNING: no smoke tests were given, so validation only checks /readyz and the baseline load: a version that answers 500 to every prediction would still take traffic; pass smoke_tests"
            : "\(input.smokeTests.count) smoke test\(input.smokeTests.count == 1 ? "" : "s") must pass (\(input.smokeTests.map(\.api).joined(separator: ", ")))"
        if let canary, let live = input.live {
            let a = canary.analysis
            reasons.append(
                "canary steps \(canary.steps.map { "\($0)%" }.joined(separator: " -> ")): at least \(canary.pauseSeconds) s and \(canary.minRequests) candidate requests per step; "
                    + "every \(a.intervalSeconds) s the candidate is compared with \(live.version) on the same traffic (at least \(a.minRequests) requests each, else inconclusive: the canary waits, and is aborted after \(canary.maxInconclusiveSeconds) s); "
                    + "an interval fails when the error rate is more than \(fmt(a.maxErrorRateDelta * 100)) points above \(live.version)'s or p95 is over \(fmt(a.maxP95Ratio))x its p95 (differences under \(fmt(a.minP95DeltaMs)) ms never fail); "
                    + "\(a.failureLimit) failed interval\(a.failureLimit == 1 ? "" : "s") in a row abort: weight 0, the candidate stopped, \(live.version) untouched; "
                    + "at 100% \(live.version) stays warm for \(rollback.keepWarmSeconds) s; \(smoke)")
        } else if strategy == .blueGreen, let live = input.live {
            reasons.append(
                "automatic rollback: the new slot is torn down if it is not ready within \(deadline) s or a smoke test fails (\(live.version) untouched); "
                    + "during the \(rollback.bakeSeconds) s bake, traffic goes back to \(live.version) if the error rate exceeds max(\(fmt(rollback.errorRateFactor))x baseline, \(fmt(rollback.minErrorRate * 100))%) "
                    + "or p95 latency exceeds max(\(fmt(rollback.latencyFactor))x baseline, baseline + \(fmt(rollback.latencyFloorMs)) ms); \(live.version) stays warm for \(rollback.keepWarmSeconds) s; \(smoke)")
        } else {
            reasons.append("the new slot is torn down if it is not ready within \(deadline) s or a smoke test fails; direct keeps no warm standby, so there is no bake; \(smoke)")
        }

        let first = input.smokeTests.first
        let config = DeploymentConfig(
            slot: slot, slotPort: slotPort, routerPort: routerPort, healthPath: "/readyz", startupDeadlineSeconds: deadline,
            probeTimeoutMs: 500, probeIntervalMs: 250, smokeTests: input.smokeTests,
            baseline: BaselineSpec(requests: 50, concurrency: 4, api: first?.api, input: first?.input), rollback: rollback,
            canary: canary)

        let requirements = PlanRequirements(
            estimatedMemoryMB: resources.memoryMB, memoryBasis: resources.basis, cpu: resources.cpu, gpu: resources.gpu,
            expectedRPS: input.requirements.expectedRPS, latencySLOms: input.requirements.latencySLOms, framework: input.model.module,
            modelSizeBytes: input.model.sizeBytes, modelCreationTime: input.model.creationTime, labels: input.model.labels,
            metadata: input.model.metadata, declaredResources: input.bento.resources, apis: input.bento.apis,
            host: HostCheck(
                freeMemoryMB: input.host.freeMemoryMB, cpuCount: input.host.cpuCount, gpuCount: input.host.gpuCount, fits: true,
                message: input.policy.runtime.kubernetes != nil
                    ? "not checked against this host: the cluster's scheduler places the Pods (\(resources.memoryMB) MiB requested per Pod)"
                    : "this host has \(input.host.freeMemoryMB) MiB free and \(input.host.cpuCount) CPUs for an estimated \(resources.memoryMB) MiB: one more slot fits beside the \(keptRunning(input).count) already running (\(keptSlots(input, candidate: slot).count) slots at once)"))

        return .success(DeploymentPlan(
            modelName: input.modelName, modelVersion: input.modelVersion, environment: env, bentoTag: input.bentoTag,
            strategy: strategy, reasons: reasons, steps: steps, config: config, requirements: requirements, gates: gates,
            previousVersion: input.live?.version, replacesEndpoint: input.live?.endpointURL, recordedLive: input.live))
    }

    /// `true` (`plan_stale`) when the live deployment changed since the plan: something went live, went away,
    /// or a different version, deployment or slot is live now.
    public static func isStale(plan: DeploymentPlan, recordedLive: LiveFacts?, currentLive: LiveFacts?) -> Bool {
        switch (recordedLive, currentLive) {
        case (nil, nil): return false
        case (let a?, let b?): return a.version != b.version || a.deploymentId != b.deploymentId || a.slot != b.slot
        default: return true
        }
    }

    // MARK: - Ports

    /// The slot port for (model, environment, slot): FNV-1a into 20000...29999, the three slots' ports never
    /// equal (a slot whose hash meets an earlier slot's port, in `blue`, `green`, `teal` order, takes the next
    /// one up), skipping `unavailable` ports deterministically.
    public static func slotPort(model: String, environment: String, slot: Slot, unavailable: [Int] = []) -> Int {
        let width = slotPortRange.count
        func raw(_ s: Slot) -> Int { Int(FNV1a.hash([model, environment, s.rawValue]) % UInt64(width)) }
        var earlier: Set<Int> = []
        var offset = 0
        for s in Slot.allCases {
            offset = raw(s)
            while earlier.contains(offset) { offset = (offset + 1) % width }
            if s == slot { break }
            earlier.insert(offset)
        }
        let taken = Set(unavailable)
        for _ in 0..<width {
            let p = slotPortRange.lowerBound + offset
            if !taken.contains(p) { return p }
            offset = (offset + 1) % width
        }
        return slotPortRange.lowerBound + offset
    }

    /// The router port for (model, environment): FNV-1a into 18000...19999.
    public static func routerPort(model: String, environment: String) -> Int {
        routerPortRange.lowerBound + Int(FNV1a.hash([model, environment]) % UInt64(routerPortRange.count))
    }

    /// The explicit port of an `http://host:port/...` URL, or `nil`.
    public static func port(of url: String) -> Int? {
        var rest = Substring(url)
        let chars = Array(url)
        if let k = (0..<max(chars.count - 2, 0)).first(where: { chars[$0] == ":" && chars[$0 + 1] == "/" && chars[$0 + 2] == "/" }) {
            rest = rest.dropFirst(k + 3)
        }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") else { return nil }
        guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else { return nil }
        return p
    }

    // MARK: - Resources

    /// The slots already running that the rollout keeps while the candidate starts: live, then warm previous.
    static func keptRunning(_ input: PlanInput) -> [(role: String, version: String, slot: Slot)] {
        guard let live = input.live else { return [] }
        var out = [(role: "live", version: live.version, slot: live.slot)]
        if let w = live.warmPrevious, w.slot != live.slot { out.append((role: "warm previous", version: w.version, slot: w.slot)) }
        return out
    }

    /// Every slot running at once during the rollout: those kept, then the candidate.
    static func keptSlots(_ input: PlanInput, candidate: Slot) -> [(role: String, version: String, slot: Slot)] {
        keptRunning(input) + [(role: "candidate", version: input.modelVersion, slot: candidate)]
    }

    /// The memory check's account of the slots it keeps. The running ones already hold their memory, which
    /// the host's free figure (MemAvailable) no longer includes, so the check asks for the candidate's share.
    static func keptSlotsSentence(_ input: PlanInput, candidate: Slot, memoryMB: Int) -> String {
        let all = keptSlots(input, candidate: candidate)
        let listed = all.map { "\($0.role) \($0.version) in slot \($0.slot.rawValue)" }.joined(separator: ", ")
        let running = keptRunning(input).count
        let held = running == 0 ? "" : "; the \(running == 1 ? "running slot holds its" : "\(running) running slots hold their") memory already (the host's free memory does not include it)"
        return "slots: the rollout keeps \(all.count) slot\(all.count == 1 ? "" : "s") running at once (\(listed))\(held), so the check asks for the candidate's \(memoryMB) MiB"
    }

    struct Resources {
        var memoryMB: Int
        var basis: String
        var cpu: Double?
        var gpu: Int
        var check: Result<Void, PlanRefusal>
    }

    static func estimateResources(_ input: PlanInput) -> Resources {
        let declared = input.bento.resources
        var declaredMB: Int?
        switch declared?["memory"].map(declaredMemory(of:)) {
        case .mebibytes(let mb)?: declaredMB = mb
        case .outOfRange(let text)?:
            // A bento is store input: a figure no host can have refuses this plan, it does not stop the agent.
            return Resources(memoryMB: 0, basis: "", cpu: nil, gpu: 0, check: .failure(PlanRefusal(
                reason: "insufficient_resources",
                message: "bento \(input.bentoTag) declares memory \(text), more than the \(maxMemoryMB) MiB any plan may ask for")))
        case .unreadable?, nil: declaredMB = nil
        }
        let memory: Int
        var basis: String
        if let override = input.requirements.memoryMB {
            memory = override
            basis = "memory: \(override) MiB as requested (requirements.memory_mb)"
        } else {
            let modelMB = input.model.sizeBytes.map { Int((Double($0) * modelMemoryFactor / 1_048_576).rounded(.up)) }
            let computed = slotBaseMemoryMB + (modelMB ?? 0)
            if let modelMB, let size = input.model.sizeBytes {
                basis = "memory: an estimated \(computed) MiB (\(slotBaseMemoryMB) MiB per BentoML slot + \(fmt(modelMemoryFactor)) x the model's \(formatBytes(size)) = \(modelMB) MiB)"
            } else {
                basis = "memory: an estimated \(computed) MiB (\(slotBaseMemoryMB) MiB per BentoML slot; the model's size is unknown)"
            }
            if let declaredMB, declaredMB > computed {
                memory = declaredMB
                basis += "; the bento declares \(declaredMB) MiB, which is used"
            } else {
                memory = computed
                if let declaredMB { basis += "; the bento declares \(declaredMB) MiB" }
            }
        }
        let cpu = input.requirements.cpu ?? declared?["cpu"].flatMap(cpus(of:))
        let declaredGPU = declared?["gpu"]?.intValue.flatMap { Int(exactly: $0) }.flatMap { $0 >= 0 ? $0 : nil }
        let gpu = input.requirements.gpu ?? declaredGPU ?? 0
        let host = input.host
        var check: Result<Void, PlanRefusal> = .success(())
        if input.policy.runtime.kubernetes != nil {
            // The Pods run in the cluster: its scheduler decides where they fit, not this host's free memory.
        } else if host.freeMemoryMB < memory {
            check = .failure(PlanRefusal(
                reason: "insufficient_resources",
                message: "\(input.modelName):\(input.modelVersion) needs an estimated \(memory) MiB for one more slot\(keptRunning(input).map { "\($0.role) \($0.version)" }.joined(separator: " and ").nonEmpty.map { " (beside \($0), kept running)" } ?? "") but this host has \(host.freeMemoryMB) MiB free"))
        } else if let cpu, cpu > Double(host.cpuCount) {
            check = .failure(PlanRefusal(
                reason: "insufficient_resources",
                message: "\(input.modelName):\(input.modelVersion) needs \(fmt(cpu)) CPUs but this host has \(host.cpuCount)"))
        } else if gpu > host.gpuCount {
            check = .failure(PlanRefusal(
                reason: "insufficient_resources",
                message: "\(input.modelName):\(input.modelVersion) needs \(gpu) GPU\(gpu == 1 ? "" : "s") but this host has \(host.gpuCount)"))
        }
        return Resources(memoryMB: memory, basis: basis, cpu: cpu, gpu: gpu, check: check)
    }

    /// The most memory a plan may ask for: 16 TiB (the contract's `requirements.memory_mb` maximum).
    public static let maxMemoryMB = 16_777_216

    /// A bento's declared memory, read.
    public enum DeclaredMemory: Sendable, Hashable {
        /// A usable figure.
        case mebibytes(Int)
        /// A number past ``maxMemoryMB`` (or infinite), with the text as declared.
        case outOfRange(String)
        /// Not a quantity (ignored, as before).
        case unreadable
    }

    /// Reads a Kubernetes-style quantity (`512Mi`, `1Gi`, `500M`, `2G`, `1024Ki`) or a number of bytes, with
    /// every conversion to `Int` checked: `1e300` is ``DeclaredMemory/outOfRange(_:)``, never a trap.
    public static func declaredMemory(of value: JSONValue) -> DeclaredMemory {
        func mebibytes(_ bytes: Double, _ text: String) -> DeclaredMemory {
            guard bytes > 0 else { return .unreadable }
            let mb = (bytes / 1_048_576).rounded(.up)
            guard mb.isFinite, mb <= Double(maxMemoryMB), let n = Int(exactly: mb) else { return .outOfRange(text) }
            return .mebibytes(n)
        }
        if let n = value.doubleValue {
            return n.isNaN ? .unreadable : mebibytes(n, n.isFinite ? value.jsonString : "infinite")
        }
        guard let s = value.stringValue?.trimmingSpaces, !s.isEmpty else { return .unreadable }
        let units: [(String, Double)] = [
            ("Ki", 1024), ("Mi", 1_048_576), ("Gi", 1_073_741_824), ("Ti", 1_099_511_627_776),
            ("K", 1e3), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12),
        ]
        let shown = s.count > 40 ? String(s.prefix(40)) + "..." : s
        for (suffix, mult) in units where s.hasSuffix(suffix) {
            guard let n = Double(s.dropLast(suffix.count)), !n.isNaN else { return .unreadable }
            return mebibytes(n * mult, shown)
        }
        guard let n = Double(s), !n.isNaN else { return .unreadable }
        return mebibytes(n, shown)
    }

    /// MiB from a quantity (see ``declaredMemory(of:)``), or `nil` when unreadable or out of range.
    public static func memoryMB(of value: JSONValue) -> Int? {
        if case .mebibytes(let n) = declaredMemory(of: value) { return n }
        return nil
    }

    /// CPUs from `"2"`, `"500m"` or a number.
    /// Only a finite, non-negative figure counts; anything else is treated as undeclared.
    public static func cpus(of value: JSONValue) -> Double? {
        let n: Double?
        if let d = value.doubleValue {
            n = d
        } else if let s = value.stringValue?.trimmingSpaces, !s.isEmpty {
            n = s.hasSuffix("m") ? Double(s.dropLast()).map { $0 / 1000 } : Double(s)
        } else {
            n = nil
        }
        guard let n, n.isFinite, n >= 0 else { return nil }
        return n
    }

    // MARK: - Validation

    static func validate(_ input: PlanInput) -> PlanRefusal? {
        let checks: [(String, String?)] = [
            ("model_name", Names.validate(input.modelName, field: "model_name")),
            ("model_version", Names.validate(input.modelVersion, field: "model_version")),
            ("environment", Names.validateEnvironment(input.environment)), ("bento", Names.validateTag(input.bentoTag, field: "bento")),
            ("requested_by", Names.validateActor(input.requestedBy, field: "requested_by")),
        ]
        if let (field, m) = checks.first(where: { $0.1 != nil }), let m {
            return PlanRefusal(reason: "invalid_params", message: m, field: field)
        }
        if input.smokeTests.isEmpty, input.policy.requireSmokeTests {
            return PlanRefusal(
                reason: "invalid_smoke_test",
                message: "\(input.environment) requires smoke tests: without them validation only checks /readyz, and a version that fails every prediction could take traffic; pass smoke_tests (an API call with an input and, ideally, the expected answer)",
                field: "smoke_tests")
        }
        for (i, t) in input.smokeTests.enumerated() {
            if let m = Names.validateAPI(t.api, field: "smoke_tests[\(i)].api") { return PlanRefusal(reason: "invalid_smoke_test", message: m, field: "smoke_tests") }
            if !input.bento.apis.isEmpty && !input.bento.apis.contains(t.api) {
                return PlanRefusal(
                    reason: "invalid_smoke_test",
                    message: "smoke_tests[\(i)].api \(Names.quoted(t.api)) is not an API of bento \(input.bentoTag) (APIs: \(input.bento.apis.joined(separator: ", ")))",
                    field: "smoke_tests")
            }
        }
        if let m = input.requirements.memoryMB, m <= 0 { return PlanRefusal(reason: "invalid_params", message: "requirements.memory_mb must be positive", field: "requirements") }
        if let m = input.requirements.memoryMB, m > maxMemoryMB {
            return PlanRefusal(reason: "invalid_params", message: "requirements.memory_mb must be at most \(maxMemoryMB)", field: "requirements")
        }
        if let c = input.requirements.cpu, !(c > 0) { return PlanRefusal(reason: "invalid_params", message: "requirements.cpu must be positive", field: "requirements") }
        if let g = input.requirements.gpu, g < 0 { return PlanRefusal(reason: "invalid_params", message: "requirements.gpu must not be negative", field: "requirements") }
        return nil
    }
}

/// A number without a trailing ".0" when integral.
func fmt(_ d: Double) -> String {
    if d.rounded() == d, abs(d) < 1e15 { return String(Int64(d)) }
    return String(d)
}

/// `12.3 KiB`, `1.5 MiB`, `812 B`.
func formatBytes(_ n: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var i = 0
    while v >= 1024 && i < units.count - 1 {
        v /= 1024
        i += 1
    }
    return i == 0 ? "\(n) B" : "\(fmt((v * 10).rounded() / 10)) \(units[i])"
}

extension String {
    /// `nil` for the empty string.
    var nonEmpty: String? { isEmpty ? nil : self }

    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
