import DeployCore
import JSON
import Testing

@Suite struct PlannerTests {
    @Test func firstDeploymentIsDirectInBlue() throws {
        let plan = try Fixtures.plan(Fixtures.input(version: "v1", environment: "production"))
        #expect(plan.strategy == .direct)
        #expect(plan.config.slot == .blue)
        #expect(plan.previousVersion == nil)
        #expect(plan.replacesEndpoint == nil)
        #expect(plan.reasons[0].contains("first deployment"))
        #expect(plan.steps == ["start_slot", "readiness", "smoke_tests", "baseline", "gate:promote", "switch", "register"])
        #expect(plan.gates.map(\.kind) == [.deploy, .promote])
        #expect(plan.initialStatus == .awaitingApproval)
        #expect(plan.config.rollback.keepWarmSeconds == 0)
    }

    @Test(arguments: [Slot.blue, .green])
    func liveVersionMeansBlueGreenInTheOtherSlot(liveSlot: Slot) throws {
        let live = Fixtures.live(slot: liveSlot)
        let plan = try Fixtures.plan(Fixtures.input(environment: "production", live: live))
        #expect(plan.strategy == .blueGreen)
        #expect(plan.config.slot == liveSlot.other)
        #expect(plan.previousVersion == "v1")
        #expect(plan.replacesEndpoint == live.endpointURL)
        #expect(plan.config.routerPort == 18500)  // reused from the live endpoint
        #expect(plan.reasons[0] == "production has v1 live; blue-green keeps it serving until v2 passes validation, then switches traffic and keeps v1 warm for rollback")
        #expect(plan.steps == ["start_slot", "readiness", "smoke_tests", "baseline", "gate:promote", "switch", "register", "bake", "retire_previous"])
        #expect(plan.config.rollback.bakeSeconds == 120)
        #expect(plan.config.rollback.keepWarmSeconds == 1_800)
    }

    @Test func stagingHasOneGateAndNoPromotionStep() throws {
        let plan = try Fixtures.plan(Fixtures.input(environment: "staging", live: Fixtures.live()))
        #expect(plan.strategy == .blueGreen)
        #expect(plan.gates.map(\.kind) == [.deploy])
        #expect(!plan.steps.contains("gate:promote"))
        #expect(!plan.hasPromotionGate)
    }

    @Test func developmentIsDirectEvenWithSomethingLive() throws {
        let plan = try Fixtures.plan(Fixtures.input(environment: "development", live: Fixtures.live(slot: .green)))
        #expect(plan.strategy == .direct)
        #expect(plan.config.slot == .blue)  // still the other slot: the endpoint never goes dark
        #expect(plan.gates.isEmpty)
        #expect(plan.initialStatus == .planned)
        #expect(plan.steps == ["start_slot", "readiness", "smoke_tests", "baseline", "switch", "register", "retire_previous"])
        #expect(plan.reasons[0].contains("development deploys directly"))
    }

    @Test func canaryNeedsALiveVersionAndWeights() {
        #expect(Fixtures.refusal(Fixtures.input(strategy: .canary))?.reason == "canary_needs_live_version")
        // The fixture's router is nginx-like: it cannot split traffic.
        #expect(Fixtures.refusal(Fixtures.input(strategy: .canary, live: Fixtures.live()))?.reason == "weights_unsupported")
    }

    @Test func explicitChoices() throws {
        // direct while live outside development: refused, not downgraded.
        let unsafe = Fixtures.refusal(Fixtures.input(environment: "production", strategy: .direct, live: Fixtures.live()))
        #expect(unsafe?.reason == "strategy_unsafe")
        #expect(unsafe?.message.contains("blue_green") == true)
        // blue_green with nothing live: falls back to direct and says why.
        let fallback = try Fixtures.plan(Fixtures.input(strategy: .blueGreen))
        #expect(fallback.strategy == .direct)
        #expect(fallback.reasons[0].contains("blue_green was requested but nothing is live"))
        // blue_green in development with something live: the explicit choice wins.
        let devBG = try Fixtures.plan(Fixtures.input(environment: "development", strategy: .blueGreen, live: Fixtures.live()))
        #expect(devBG.strategy == .blueGreen)
        #expect(devBG.reasons[0].contains("requested explicitly"))
        // direct with nothing live is fine anywhere.
        #expect(try Fixtures.plan(Fixtures.input(strategy: .direct)).strategy == .direct)
    }

    @Test func redeployingTheLiveVersionIsRefused() throws {
        var live = Fixtures.live(version: "v2")
        #expect(Fixtures.refusal(Fixtures.input(version: "v2", live: live))?.reason == "already_live")
        live.bentoTag = "iris_svc:older"  // same model, new serving code: allowed
        #expect(try Fixtures.plan(Fixtures.input(version: "v2", live: live)).strategy == .blueGreen)
    }

    @Test func insufficientMemoryIsRefused() {
        let small = HostFacts(freeMemoryMB: 250, cpuCount: 2)
        let r = Fixtures.refusal(Fixtures.input(host: small))
        #expect(r?.reason == "insufficient_resources")
        #expect(r?.message.contains("250 MiB free") == true)
        // A big model: 2 x 400 MiB + 300 MiB > 1000 MiB.
        let big = Fixtures.refusal(Fixtures.input(host: HostFacts(freeMemoryMB: 1000, cpuCount: 2), sizeBytes: 400 * 1_048_576))
        #expect(big?.reason == "insufficient_resources")
        #expect(Fixtures.refusal(Fixtures.input(requirements: RequirementOverrides(cpu: 8)))?.reason == "insufficient_resources")
        #expect(Fixtures.refusal(Fixtures.input(requirements: RequirementOverrides(gpu: 1)))?.reason == "insufficient_resources")
    }

    @Test func memoryEstimate() throws {
        let plan = try Fixtures.plan(Fixtures.input(sizeBytes: 10 * 1_048_576))
        #expect(plan.requirements.estimatedMemoryMB == 320)
        #expect(plan.requirements.memoryBasis.contains("300 MiB per BentoML slot"))
        #expect(plan.requirements.host.fits)
        let unknown = try Fixtures.plan(Fixtures.input(sizeBytes: nil))
        #expect(unknown.requirements.estimatedMemoryMB == 300)
        let declared = try Fixtures.plan(Fixtures.input(resources: ["memory": "1Gi", "cpu": "500m"]))
        #expect(declared.requirements.estimatedMemoryMB == 1024)
        #expect(declared.requirements.cpu == 0.5)
        let overridden = try Fixtures.plan(Fixtures.input(requirements: RequirementOverrides(memoryMB: 512, expectedRPS: 40)))
        #expect(overridden.requirements.estimatedMemoryMB == 512)
        #expect(overridden.requirements.expectedRPS == 40)
        #expect(Planner.memoryMB(of: "512Mi") == 512)
        #expect(Planner.memoryMB(of: "2G") == 1908)
        #expect(Planner.memoryMB(of: "lots") == nil)
    }

    @Test func smokeTestsMustNameAnAPIOfTheBento() {
        let bad = Fixtures.refusal(Fixtures.input(smokeTests: [SmokeTest(api: "classify", input: [:])]))
        #expect(bad?.reason == "invalid_smoke_test" && bad?.field == "smoke_tests")
        let evil = Fixtures.refusal(Fixtures.input(smokeTests: [SmokeTest(api: "../admin", input: [:])]))
        #expect(evil?.reason == "invalid_smoke_test")
    }

    @Test func badNamesNeverReachAPlan() {
        var input = Fixtures.input()
        input.modelName = "Iris CLF"
        #expect(Fixtures.refusal(input)?.reason == "invalid_params")
        // The refusal names the field that failed, not a generic one.
        #expect(Fixtures.refusal(input)?.field == "model_name")
    }

    @Test func baselineUsesTheFirstSmokeTest() throws {
        let plan = try Fixtures.plan(Fixtures.input())
        #expect(plan.config.baseline.api == "predict")
        #expect(plan.config.baseline.requests == 50)
        #expect(plan.config.baseline.concurrency == 4)
        #expect(plan.config.healthPath == "/readyz")
        #expect(plan.config.startupDeadlineSeconds == 60)
        #expect(plan.config.probeTimeoutMs == 500)
        #expect(plan.config.probeIntervalMs == 250)
        let none = try Fixtures.plan(Fixtures.input(environment: "staging", smokeTests: []))
        #expect(none.config.baseline.api == nil)
        #expect(!none.steps.contains("smoke_tests"))
    }

    @Test func portsAreDeterministicAndInRange() {
        let blue = Planner.slotPort(model: "iris_clf", environment: "production", slot: .blue)
        let green = Planner.slotPort(model: "iris_clf", environment: "production", slot: .green)
        #expect(blue != green)
        #expect(Planner.slotPortRange.contains(blue) && Planner.slotPortRange.contains(green))
        #expect(blue == Planner.slotPort(model: "iris_clf", environment: "production", slot: .blue))
        #expect(Planner.slotPort(model: "iris_clf", environment: "production", slot: .blue, unavailable: [blue]) != blue)
        let router = Planner.routerPort(model: "iris_clf", environment: "production")
        #expect(Planner.routerPortRange.contains(router))
        #expect(router != Planner.routerPort(model: "iris_clf", environment: "staging"))
        // Many names never collide blue with green, and always land in range.
        for i in 0..<500 {
            let b = Planner.slotPort(model: "m\(i)", environment: "e", slot: .blue)
            let g = Planner.slotPort(model: "m\(i)", environment: "e", slot: .green)
            #expect(b != g)
            #expect(Planner.slotPortRange.contains(g))
        }
        #expect(Planner.port(of: "http://127.0.0.1:18123") == 18123)
        #expect(Planner.port(of: "http://127.0.0.1:18123/predict") == 18123)
        #expect(Planner.port(of: "http://localhost/") == nil)
    }

    @Test func routerPortWithoutLiveIsHashed() throws {
        let plan = try Fixtures.plan(Fixtures.input())
        #expect(plan.config.routerPort == Planner.routerPort(model: "iris_clf", environment: "production"))
        #expect(plan.config.slotPort == Planner.slotPort(model: "iris_clf", environment: "production", slot: .blue))
    }

    @Test func staleness() throws {
        let live = Fixtures.live()
        let plan = try Fixtures.plan(Fixtures.input(live: live))
        #expect(!plan.isStale(currentLive: live))
        #expect(plan.isStale(currentLive: nil))
        #expect(plan.isStale(currentLive: Fixtures.live(version: "v3", id: "dep-3")))
        #expect(plan.isStale(currentLive: Fixtures.live(id: "dep-9")))
        let first = try Fixtures.plan(Fixtures.input())
        #expect(!Planner.isStale(plan: first, recordedLive: nil, currentLive: nil))
        #expect(Planner.isStale(plan: first, recordedLive: nil, currentLive: live))
    }

    @Test func extraGatesFromTheRequest() throws {
        let plan = try Fixtures.plan(Fixtures.input(environment: "development", extraGates: [.promote]))
        #expect(plan.gates.map(\.kind) == [.promote])
        #expect(plan.steps.contains("gate:promote"))
        #expect(plan.initialStatus == .planned)
        #expect(plan.reasons.contains { $0.contains("the request added promote") })
    }
}

@Suite struct PlanJSONTests {
    @Test func roundTrip() throws {
        for input in [
            Fixtures.input(), Fixtures.input(live: Fixtures.live()), Fixtures.input(environment: "development", smokeTests: []),
            Fixtures.input(smokeTests: [SmokeTest(api: "predict", input: [1, 2], expect: .null), SmokeTest(api: "predict", input: "x")],
                           requirements: RequirementOverrides(cpu: 1.5, memoryMB: 700, gpu: 0, expectedRPS: 12.5, latencySLOms: 80),
                           resources: ["memory": "512Mi"]),
        ] {
            let plan = try Fixtures.plan(input)
            let text = plan.toJSON().jsonString
            let back = try DeploymentPlan(json: try JSONValue.parse(text))
            #expect(back == plan)
            #expect(back.planHash == plan.planHash)
            #expect(back.toJSON().jsonString == text)
        }
    }

    @Test func expectNullDiffersFromNoExpectation() throws {
        let withNull = SmokeTest(api: "predict", input: [:], expect: .null)
        let without = SmokeTest(api: "predict", input: [:])
        #expect(try SmokeTest(json: withNull.toJSON()) == withNull)
        #expect(try SmokeTest(json: without.toJSON()) == without)
        #expect(withNull.toJSON() != without.toJSON())
    }

    @Test func wireKeysAreSnakeCase() throws {
        let plan = try Fixtures.plan(Fixtures.input(live: Fixtures.live()))
        let json = plan.toJSON()
        #expect(json["strategy"] == "blue_green")
        #expect(json["previous_version"] == "v1")
        #expect(json["replaces_endpoint"] == "http://127.0.0.1:18500")
        #expect(json["config"]?["slot"] == "green")
        #expect(json["config"]?["health_path"] == "/readyz")
        #expect(json["config"]?["rollback"]?["keep_warm_seconds"] == 1800)
        #expect(json["gates"]?.arrayValue?.first?["kind"] == "deploy")
        #expect(json["recorded_live"]?["deployment_id"] == "dep-1")
    }

    @Test func malformedPlansNameThePath() throws {
        var o = try #require(try Fixtures.plan(Fixtures.input()).toJSON().objectValue)
        var config = try #require(o["config"]?.objectValue)
        config["slot"] = "purple"
        o["config"] = .object(config)
        do {
            _ = try DeploymentPlan(json: .object(o))
            Issue.record("accepted slot purple")
        } catch {
            #expect(error.path == "config.slot")
        }
    }

    @Test func hashIsDeterministicAndCoversTheFacts() throws {
        let live = Fixtures.live()
        let a = try Fixtures.plan(Fixtures.input(live: live))
        let b = try Fixtures.plan(Fixtures.input(live: live))
        #expect(a.planHash == b.planHash)
        #expect(a.planHash.count == 64)
        // Free memory drifts between calls: it must not change the hash.
        let drift = try Fixtures.plan(Fixtures.input(live: live, host: HostFacts(freeMemoryMB: 17_123, cpuCount: 2)))
        #expect(drift.planHash == a.planHash)
        // A different live version or deployment changes it.
        let otherLive = try Fixtures.plan(Fixtures.input(live: Fixtures.live(version: "v0", id: "dep-0")))
        #expect(otherLive.planHash != a.planHash)
        let otherID = try Fixtures.plan(Fixtures.input(live: Fixtures.live(id: "dep-7")))
        #expect(otherID.planHash != a.planHash)
        let otherVersion = try Fixtures.plan(Fixtures.input(version: "v3", live: live))
        #expect(otherVersion.planHash != a.planHash)
    }
}
