#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import DeployRuntime
import DeployEngine
import JSON
import Synchronization

/// Slots in memory: starting one makes it alive on the next port; readiness answers as told.
final class FakeSlots: SlotRuntime {
    struct State {
        var slots: [SlotRef: RunningSlot] = [:]
        var started: [SlotRef] = []
        var stopped: [SlotRef] = []
        var failStart = false
        var ready = true
        /// Readiness waits until the task is cancelled (to cancel a rollout mid-step).
        var hangReadiness = false
        var nextPort = 20_000
    }
    let state = Mutex(State())

    func start(_ launch: SlotLaunch) async throws(RuntimeError) -> RunningSlot {
        try state.withLock { (s: inout State) throws(RuntimeError) -> RunningSlot in
            if s.failStart { throw RuntimeError(code: "spawn_failed", message: "bentoml would not start") }
            if s.slots[launch.ref]?.alive == true { throw RuntimeError(code: "slot_busy", message: "slot \(launch.ref.id) runs") }
            s.nextPort += 1
            let slot = RunningSlot(ref: launch.ref, bentoTag: launch.bentoTag, address: SlotAddress(port: s.nextPort), alive: true,
                                   processID: Int32(s.nextPort), logPath: nil)
            s.slots[launch.ref] = slot
            s.started.append(launch.ref)
            return slot
        }
    }

    func waitReady(_ slot: RunningSlot, deadlineSeconds: Double, probeTimeoutMs: Int, intervalMs: Int) async -> ReadinessResult {
        if state.withLock({ $0.hangReadiness }) {
            while !Task.isCancelled { await Task.yield() }
            return ReadinessResult(ready: false, elapsedMs: 1, attempts: 1, lastError: "cancelled")
        }
        let ready = state.withLock { $0.ready }
        return ReadinessResult(ready: ready, elapsedMs: 12, attempts: 2, lastError: ready ? nil : "GET /readyz answered 503")
    }

    func stop(_ ref: SlotRef, graceSeconds: Double) async -> Bool {
        state.withLock { s in
            if s.slots.removeValue(forKey: ref) != nil { s.stopped.append(ref) }
        }
        return true
    }

    func state(_ ref: SlotRef) async -> RunningSlot? { state.withLock { $0.slots[ref] } }
    func listSlots() async -> [RunningSlot] { state.withLock { Array($0.slots.values) } }
    func logTail(_ slot: RunningSlot, bytes: Int) async -> String { "last log line" }

    /// The process of `ref` dies.
    func kill(_ ref: SlotRef) { state.withLock { $0.slots[ref]?.alive = false } }
    /// Slots running now, by id.
    func running(_ model: String, _ env: String) -> Set<String> {
        state.withLock { s in Set(s.slots.values.filter { $0.alive && $0.ref.modelName == model && $0.ref.environment == env }.map(\.ref.id.rawValue)) }
    }
}

/// A router in memory: one route per endpoint; applying and verifying can be made to fail.
final class FakeRouter: TrafficRouter {
    struct State {
        var routes: [String: RouteSpec] = [:]
        var applied: [RouteSpec] = []
        var failApply = false
        var failVerify = false
        var failRemove = false
        /// Slots whose backend `detach` took out, in order ("slot" per call that removed one).
        var detached: [String] = []
        /// `detach` throws this many times before it works.
        var failDetach = 0
        var running = true
        /// Whether `readBack` answers from the router's own state (HAProxy); nil plays a router that cannot.
        var readsBack = false
        /// How many times each read-back was used: requests through the router (`verify`), state reads (`readBack`).
        var verifyCalls = 0
        var readBackCalls = 0
        /// Whether it splits traffic by weight (HAProxy); false plays nginx.
        var splits = true
        /// What each analysis window measures per slot id, one entry per call (the last one repeats); no
        /// traffic unless a test scripts it (the bake then judges by its probes).
        var windows: [[String: WindowFigures]] = [[:]]
        var statsCalls = 0
        /// The `windowMs` of every stats call, in order.
        var windowsAsked: [Int] = []
        /// Whether the analysis probes the backends (Kubernetes) instead of reading the router's counters.
        var probes = false
        /// Every probe window asked: its length, the requests per backend, the backends' versions.
        var probesAsked: [(durationMs: Int, requests: Int, versions: [String])] = []
    }
    let state = Mutex(State())

    static func key(_ m: String, _ e: String) -> String { "\(m)/\(e)" }

    func ensureRunning() async throws(RuntimeError) { state.withLock { $0.running = true } }
    func apply(_ route: RouteSpec) async throws(RuntimeError) {
        try state.withLock { (s: inout State) throws(RuntimeError) in
            if s.failApply { throw RuntimeError(code: "router_config_invalid", message: "nginx -t failed") }
            s.routes[Self.key(route.modelName, route.environment)] = route
            s.applied.append(route)
        }
    }
    func verify(listenPort: Int, serving slot: SlotID, timeoutMs: Int) async -> Bool {
        state.withLock { s in
            s.verifyCalls += 1
            return !s.failVerify && s.routes.values.contains { $0.listenPort == listenPort && $0.primary?.slot == slot }
        }
    }
    func readBack(listenPort: Int, serving slot: SlotID, address: SlotAddress) async -> Bool? {
        state.withLock { s in
            guard s.readsBack else { return nil }
            s.readBackCalls += 1
            return !s.failVerify && s.routes.values.contains { r in
                r.listenPort == listenPort && r.backends.filter { $0.weight > 0 }.map(\.slot) == [slot]
                    && r.backends.contains { $0.slot == slot && $0.address == address }
            }
        }
    }
    func route(modelName: String, environment: String) async -> RouteSpec? { state.withLock { $0.routes[Self.key(modelName, environment)] } }
    func routes() async -> [RouteSpec] { state.withLock { Array($0.routes.values) } }
    func removeRoute(modelName: String, environment: String) async throws(RuntimeError) {
        try state.withLock { (s: inout State) throws(RuntimeError) in
            if s.failRemove { throw RuntimeError(code: "nginx_failed", message: "nginx -s reload failed") }
            s.routes.removeValue(forKey: Self.key(modelName, environment))
        }
    }
    func detach(modelName: String, environment: String, slot: SlotID) async throws(RuntimeError) -> Bool {
        try state.withLock { (s: inout State) throws(RuntimeError) -> Bool in
            if s.failDetach > 0 {
                s.failDetach -= 1
                throw RuntimeError(code: "haproxy_failed", message: "del server refused")
            }
            let key = Self.key(modelName, environment)
            guard var route = s.routes[key], route.backends.contains(where: { $0.slot == slot && $0.weight == 0 }) else { return false }
            route.backends.removeAll { $0.slot == slot }
            s.routes[key] = route
            s.detached.append(slot.rawValue)
            return true
        }
    }
    func needsRestart() async -> Bool { state.withLock { !$0.running && !$0.routes.isEmpty } }
    func listenPort(preferred: Int, modelName: String, environment: String) async -> Int { preferred }
    var splitsTraffic: Bool { state.withLock { $0.splits } }
    /// Called (once per window) before the figures are returned, e.g. to abort from "another request".
    let onStats = Mutex<(@Sendable () async -> Void)?>(nil)
    func stats(modelName: String, environment: String, windowMs: Int) async -> [BackendStats]? {
        if let hook = onStats.withLock({ $0 }) { await hook() }
        return state.withLock { s in
            guard let route = s.routes[Self.key(modelName, environment)] else { return nil }
            let w = s.windows[min(s.statsCalls, s.windows.count - 1)]
            s.statsCalls += 1
            s.windowsAsked.append(windowMs)
            return route.backends.map { b in
                BackendStats(slot: b.slot, requests: 0, errors: 0, window: w[b.slot.rawValue])
            }
        }
    }
    var measuresByProbes: Bool { state.withLock { $0.probes } }
    /// Called with the probe window's length (a test's clock advances by it: probing takes the interval).
    let onProbe = Mutex<(@Sendable (Int) -> Void)?>(nil)
    func probeWindow(modelName: String, environment: String, backends: [WeightedBackend], load: ProbeLoad,
                     durationMs: Int) async -> [BackendStats]? {
        onProbe.withLock { $0 }?(durationMs)
        return state.withLock { s in
            let w = s.windows[min(s.probesAsked.count, s.windows.count - 1)]
            s.probesAsked.append((durationMs, load.requests, backends.map(\.version)))
            return backends.map { BackendStats(slot: $0.slot, requests: 0, errors: 0, window: w[$0.slot.rawValue]) }
        }
    }

    /// The weights of every route applied to the endpoint, by slot id.
    func weights(_ m: String, _ e: String) -> [[String: Int]] {
        state.withLock { s in
            s.applied.filter { $0.modelName == m && $0.environment == e }.map { Dictionary($0.backends.map { ($0.slot.rawValue, $0.weight) }, uniquingKeysWith: { a, _ in a }) }
        }
    }

    /// The slot the endpoint sends traffic to.
    func serving(_ m: String, _ e: String) -> String? { state.withLock { $0.routes[Self.key(m, e)]?.primary?.slot.rawValue } }
}

/// Every model version exists, served by one bento with a `predict` API.
struct FakeCatalog: ModelCatalog {
    func model(name: String, version: String) throws(RuntimeError) -> ModelFacts {
        if version == "missing" { throw RuntimeError(code: "model_not_found", message: "no \(name):\(version)") }
        return ModelFacts(name: name, version: version, module: "bentoml.sklearn", sizeBytes: 1_000, creationTime: "2026-01-01T00:00:00Z")
    }
    func bento(tag: String) throws(RuntimeError) -> BentoFacts { BentoFacts(tag: tag, apis: ["predict"], models: []) }
    func newestBento(serving modelTag: String) throws(RuntimeError) -> BentoFacts? {
        BentoFacts(tag: "svc:" + (modelTag.split(separator: ":").last.map(String.init) ?? "x"), apis: ["predict"], models: [modelTag])
    }
    func hostFacts() -> HostFacts { HostFacts(freeMemoryMB: 64_000, cpuCount: 8) }
}

/// Probes that answer as told: smoke tests pass or fail, the baseline and every bake window measure as set.
final class FakeProber: Prober {
    struct State {
        var smokePasses = true
        var baseline = Metrics(p50Ms: 5, p95Ms: 8, p99Ms: 9, errorRate: 0, rps: 100)
        /// What the bake windows measure (through the router's port).
        var bake = Metrics(p50Ms: 5, p95Ms: 8, p99Ms: 9, errorRate: 0, rps: 100)
        /// Bake windows wait until the task is cancelled (to cancel a rollout during its bake).
        var hangBake = false
    }
    let state = Mutex(State())

    func smoke(_ address: SlotAddress, checks: [SmokeTest], timeoutMs: Int) async -> [SmokeResult] {
        let ok = state.withLock { $0.smokePasses }
        return checks.map { SmokeResult(api: $0.api, passed: ok, status: ok ? 200 : 500, latencyMs: 3, answer: nil, message: ok ? "HTTP 200" : "HTTP 500: boom") }
    }
    func measure(_ address: SlotAddress, load: ProbeLoad) async -> Metrics {
        let (atSlot, hang) = state.withLock { s in (address.port >= 20_000, s.hangBake) }
        if !atSlot && hang {
            while !Task.isCancelled { await Task.yield() }
        }
        return state.withLock { s in atSlot ? s.baseline : s.bake }
    }
    func isReady(_ address: SlotAddress, path: String, timeoutMs: Int) async -> Bool { true }
}

/// Time that moves only when the engine sleeps (short sleeps pass at once) or the test says so. Long
/// sleeps (keep-warm timers) wait until ``releaseTimers()``.
final class ManualClock: EngineClock {
    private let time = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
    /// Parked timers; `nil` once released (later long sleeps return at once).
    private let parked = Mutex<[CheckedContinuation<Void, Never>]?>([])

    func now() -> Date { time.withLock { $0 } }
    func advance(seconds: Double) { time.withLock { $0 = $0.addingTimeInterval(seconds) } }

    func sleep(milliseconds: Int) async throws {
        if milliseconds >= 10_000 {
            await withCheckedContinuation { c in
                let parkedNow = parked.withLock { p -> Bool in
                    guard p != nil else { return false }
                    p!.append(c)
                    return true
                }
                if !parkedNow { c.resume() }
            }
            try Task.checkCancellation()
            return
        }
        advance(seconds: Double(milliseconds) / 1000)
        try Task.checkCancellation()
    }

    /// Lets every timer fire, those parked and those still to come.
    func releaseTimers() {
        let all = parked.withLock { p in defer { p = nil }; return p ?? [] }
        for c in all { c.resume() }
    }
}
