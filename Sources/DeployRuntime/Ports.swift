#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import JSON

// The ports the engine drives. The local runtime (BentoML processes behind HAProxy or nginx) implements them in
// `LocalRuntime.swift`; an HAProxy router or a Kubernetes runtime implements the same protocols, and the
// engine's tests use fakes. Every call may block its thread (files, processes, sockets): the engine calls
// them from its blocking executor, never from the cooperative pool.

/// Names one running copy of a version of a model in an environment: `blue`, `green` or `teal` for the local
/// runtime, a Deployment name for Kubernetes. Stored in the ledger as its raw value.
public struct SlotID: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The ledger and wire spelling.
    public var rawValue: String
    /// A slot id.
    public init(rawValue: String) { self.rawValue = rawValue }
    /// A slot id.
    public init(stringLiteral value: String) { self.rawValue = value }
    /// The id of a local slot.
    public init(_ slot: Slot) { self.rawValue = slot.rawValue }
    /// The local slot this id names, when it names one.
    public var slot: Slot? { Slot(rawValue: rawValue) }
    public var description: String { rawValue }
    public static func < (a: SlotID, b: SlotID) -> Bool { a.rawValue < b.rawValue }
}

/// A slot of (model, environment).
public struct SlotRef: Hashable, Sendable {
    /// Model name.
    public var modelName: String
    /// Environment.
    public var environment: String
    /// Which slot.
    public var id: SlotID

    /// A slot reference.
    public init(modelName: String, environment: String, id: SlotID) {
        self.modelName = modelName
        self.environment = environment
        self.id = id
    }
}

/// Where a slot (or the router) answers HTTP.
public struct SlotAddress: Hashable, Sendable {
    /// Host name or address.
    public var host: String
    /// TCP port.
    public var port: Int

    /// An address; the local runtime serves on the loopback interface.
    public init(host: String = "127.0.0.1", port: Int) {
        self.host = host
        self.port = port
    }
}

/// What to start in a slot.
public struct SlotLaunch: Hashable, Sendable {
    /// The slot.
    public var ref: SlotRef
    /// The bento to serve.
    public var bentoTag: String
    /// The model version (for labels and logs).
    public var version: String
    /// The port the plan chose; a runtime that finds it taken takes another and says so in ``RunningSlot``.
    public var preferredPort: Int
    /// The ledger's deployment id (a Kubernetes runtime labels its objects with it; empty: not known).
    public var deploymentID = ""
    /// What the plan asks for per copy (a Kubernetes runtime puts it in the Pods' resources).
    public var requirements: PlanRequirements?

    /// A launch request.
    public init(ref: SlotRef, bentoTag: String, version: String, preferredPort: Int) {
        self.ref = ref
        self.bentoTag = bentoTag
        self.version = version
        self.preferredPort = preferredPort
    }
}

/// A slot as the runtime sees it now.
public struct RunningSlot: Hashable, Sendable {
    /// The slot.
    public var ref: SlotRef
    /// The bento it serves.
    public var bentoTag: String
    /// Where it answers.
    public var address: SlotAddress
    /// Whether its process (or pod) runs now.
    public var alive: Bool
    /// The process id, for a runtime that has one (events and logs only).
    public var processID: Int32?
    /// Its log file, for a runtime that keeps one.
    public var logPath: String?

    /// A slot's state.
    public init(ref: SlotRef, bentoTag: String, address: SlotAddress, alive: Bool, processID: Int32? = nil, logPath: String? = nil) {
        self.ref = ref
        self.bentoTag = bentoTag
        self.address = address
        self.alive = alive
        self.processID = processID
        self.logPath = logPath
    }
}

/// Starts, watches and stops the copies of a model that serve traffic.
public protocol SlotRuntime: Sendable {
    /// Starts `launch` in its slot (which must not run anything).
    /// - Throws: `slot_busy`, `port_in_use`, `invalid_name`, `spawn_failed`, `io_failed`.
    func start(_ launch: SlotLaunch) async throws(RuntimeError) -> RunningSlot
    /// Waits until `slot` is ready, its process dies, the deadline passes or the task is cancelled.
    func waitReady(_ slot: RunningSlot, deadlineSeconds: Double, probeTimeoutMs: Int, intervalMs: Int) async -> ReadinessResult
    /// Stops the slot's processes; `true` when nothing of it is left. `graceSeconds` 0: no drain.
    func stop(_ ref: SlotRef, graceSeconds: Double) async -> Bool
    /// The slot now, `nil` when nothing was started there.
    func state(_ ref: SlotRef) async -> RunningSlot?
    /// Every slot the runtime knows (reconciliation stops those the ledger does not account for).
    func listSlots() async -> [RunningSlot]
    /// The end of the slot's log (for a failure message); empty when there is none.
    func logTail(_ slot: RunningSlot, bytes: Int) async -> String
}

/// One backend of a route with its share of the traffic.
public struct WeightedBackend: Hashable, Sendable {
    /// The slot behind it.
    public var slot: SlotID
    /// Where the slot answers.
    public var address: SlotAddress
    /// The version it serves (the router tags answers with it).
    public var version: String
    /// Share of new requests, 0...100; a backend at 0 is kept but drained.
    public var weight: Int

    /// A backend.
    public init(slot: SlotID, address: SlotAddress, version: String, weight: Int = 100) {
        self.slot = slot
        self.address = address
        self.version = version
        self.weight = weight
    }
}

/// The desired routing of one (model, environment) endpoint. One backend at 100 is a blue-green switch;
/// several with weights is a canary step.
public struct RouteSpec: Hashable, Sendable {
    /// Model name.
    public var modelName: String
    /// Environment.
    public var environment: String
    /// The stable port the endpoint listens on.
    public var listenPort: Int
    /// The backends, each with its weight.
    public var backends: [WeightedBackend]

    /// A route.
    public init(modelName: String, environment: String, listenPort: Int, backends: [WeightedBackend]) {
        self.modelName = modelName
        self.environment = environment
        self.listenPort = listenPort
        self.backends = backends
    }

    /// The backend that takes the largest share (the whole of it after a blue-green switch).
    public var primary: WeightedBackend? { backends.max { $0.weight < $1.weight } }
}

/// Traffic one backend took, for a router that counts it (HAProxy's `show stat`).
public struct BackendStats: Hashable, Sendable {
    /// The backend's slot.
    public var slot: SlotID
    /// Requests answered since the counters were reset.
    public var requests: Int
    /// Of those, answered 5xx or failed at the connection.
    public var errors: Int
    /// Requests in progress now, when known.
    public var active: Int?
    /// What the backend served in the window asked for (``TrafficRouter/stats(modelName:environment:windowMs:)``),
    /// from the router's request log: requests, 5xx answers and p95. Nil without a window.
    public var window: WindowFigures?

    /// Counters.
    public init(slot: SlotID, requests: Int, errors: Int, active: Int? = nil, window: WindowFigures? = nil) {
        self.slot = slot
        self.requests = requests
        self.errors = errors
        self.active = active
        self.window = window
    }
}

/// Sends each (model, environment) endpoint's traffic to the backends the engine asks for.
public protocol TrafficRouter: Sendable {
    /// Starts the router when it is not running (and writes what it needs first).
    func ensureRunning() async throws(RuntimeError)
    /// Makes `route` the routing of its endpoint (all or nothing: on failure the previous one stays).
    /// - Throws: `port_in_use`, `weights_unsupported`, `invalid_weights`, `router_config_invalid`, `nginx_failed`,
    ///   `haproxy_failed`, ...
    func apply(_ route: RouteSpec) async throws(RuntimeError)
    /// Waits until the endpoint on `listenPort` answers from `slot`; `false` after `timeoutMs`.
    func verify(listenPort: Int, serving slot: SlotID, timeoutMs: Int) async -> Bool
    /// The router's own state, read back now: whether the endpoint on `listenPort` sends all of its traffic to
    /// `slot` at `address` (HAProxy: its servers as the admin socket reports them, which the runtime commands
    /// changed before they answered). `nil` for a router whose state cannot say it without a request through
    /// it (nginx: a reload takes effect as its workers turn over); the caller then uses ``verify``.
    func readBack(listenPort: Int, serving slot: SlotID, address: SlotAddress) async -> Bool?
    /// The endpoint's routing as the router has it now.
    func route(modelName: String, environment: String) async -> RouteSpec?
    /// Every configured endpoint.
    func routes() async -> [RouteSpec]
    /// Where the last ``apply`` to the endpoint spent its time inside the router, ms by name (for the switch's
    /// event); empty for a router that does not say.
    func applyLaps(modelName: String, environment: String) -> [String: Double]
    /// Removes the endpoint. No endpoint: nothing happens.
    func removeRoute(modelName: String, environment: String) async throws(RuntimeError)
    /// Takes `slot`'s backend out of the endpoint when it carries no share (weight 0): a retired warm slot,
    /// stopped, must not stay attached. A backend with a share, or none for `slot`: nothing happens.
    /// - Returns: `true` when a backend was removed.
    func detach(modelName: String, environment: String, slot: SlotID) async throws(RuntimeError) -> Bool
    /// `true` when routes are configured but the router is not running (it was killed or crashed).
    func needsRestart() async -> Bool
    /// The port a new endpoint listens on: `preferred` unless something else holds it.
    func listenPort(preferred: Int, modelName: String, environment: String) async -> Int
    /// Per-backend traffic counters, `nil` for a router that keeps none.
    func stats(modelName: String, environment: String) async -> [BackendStats]?
    /// Where a prober reaches the endpoint listening on `listenPort` (the loopback port for a local router).
    func endpointAddress(listenPort: Int, modelName: String, environment: String) -> SlotAddress
    /// The endpoint's URL as the registry records it.
    func endpointURL(listenPort: Int, modelName: String, environment: String) -> String
    /// Where the endpoint's router serves Prometheus metrics (per backend, labelled with the slot id), `nil`
    /// for a router without an exporter.
    func metricsURL(modelName: String, environment: String) async -> String?
    /// Per-backend counters with each backend's ``BackendStats/window`` over the last `windowMs` (the
    /// analysis interval), `nil` for a router that keeps no request log.
    func stats(modelName: String, environment: String, windowMs: Int) async -> [BackendStats]?
    /// Whether the router splits an endpoint's traffic by weight (a canary needs it; nginx does not).
    var splitsTraffic: Bool { get }
    /// `true` for a router that counts no traffic per backend but reaches each backend itself (Kubernetes:
    /// the API server's pod proxy); a canary's analysis then judges ``probeWindow(modelName:environment:backends:load:durationMs:)``.
    var measuresByProbes: Bool { get }
    /// Sends `load.requests` calls to each of `backends`, the same call to each, side by side and evenly paced
    /// over `durationMs`, and answers each backend's ``BackendStats/window`` of that interval. `nil` for a
    /// router that cannot reach its backends itself.
    func probeWindow(modelName: String, environment: String, backends: [WeightedBackend], load: ProbeLoad,
                     durationMs: Int) async -> [BackendStats]?
}

extension TrafficRouter {
    /// Routers that do not split their time.
    public func applyLaps(modelName: String, environment: String) -> [String: Double] { [:] }
    /// Routers whose state proves nothing until a request went through them.
    public func readBack(listenPort: Int, serving slot: SlotID, address: SlotAddress) async -> Bool? { nil }
    /// Routers that keep no backend without a share (nginx routes to one slot): nothing to take out.
    public func detach(modelName: String, environment: String, slot: SlotID) async throws(RuntimeError) -> Bool { false }
    /// Routers without counters.
    public func stats(modelName: String, environment: String) async -> [BackendStats]? { nil }
    /// A local router listens on the loopback interface.
    public func endpointAddress(listenPort: Int, modelName: String, environment: String) -> SlotAddress { SlotAddress(port: listenPort) }
    /// `http://127.0.0.1:PORT`.
    public func endpointURL(listenPort: Int, modelName: String, environment: String) -> String { "http://127.0.0.1:\(listenPort)" }
    /// Routers without an exporter.
    public func metricsURL(modelName: String, environment: String) async -> String? { nil }
    /// Routers without a request log.
    public func stats(modelName: String, environment: String, windowMs: Int) async -> [BackendStats]? { nil }
    /// Routers that serve one backend per endpoint.
    public var splitsTraffic: Bool { false }
    /// Routers whose own counters feed the analysis (or that keep none).
    public var measuresByProbes: Bool { false }
    /// Routers that do not probe their backends.
    public func probeWindow(modelName: String, environment: String, backends: [WeightedBackend], load: ProbeLoad,
                            durationMs: Int) async -> [BackendStats]? { nil }
}

/// The models and bentos that can be deployed, as the core's facts.
public protocol ModelCatalog: Sendable {
    /// The model `name:version` (`latest`: the newest).
    /// - Throws: `model_not_found`, `invalid_name`.
    func model(name: String, version: String) throws(RuntimeError) -> ModelFacts
    /// The bento `tag`.
    /// - Throws: `bento_not_found`, `invalid_name`.
    func bento(tag: String) throws(RuntimeError) -> BentoFacts
    /// The newest bento serving `modelTag`, `nil` when none does.
    func newestBento(serving modelTag: String) throws(RuntimeError) -> BentoFacts?
    /// What the target host (or cluster) has free now.
    func hostFacts() -> HostFacts
}

/// A short probe load: the smoke test's API when there is one, else the health path.
public struct ProbeLoad: Hashable, Sendable {
    /// The API to call (POST), or `nil` to GET ``healthPath``.
    public var api: String?
    /// The JSON body for ``api``.
    public var input: JSONValue?
    /// The readiness path.
    public var healthPath: String
    /// Requests to send.
    public var requests: Int
    /// Parallel clients.
    public var concurrency: Int

    /// A probe load.
    public init(api: String?, input: JSONValue?, healthPath: String, requests: Int, concurrency: Int) {
        self.api = api
        self.input = input
        self.healthPath = healthPath
        self.requests = requests
        self.concurrency = concurrency
    }
}

/// Asks a slot or an endpoint whether it works.
public protocol Prober: Sendable {
    /// Runs each smoke test in order.
    func smoke(_ address: SlotAddress, checks: [SmokeTest], timeoutMs: Int) async -> [SmokeResult]
    /// Latency and error figures from a short load.
    func measure(_ address: SlotAddress, load: ProbeLoad) async -> Metrics
    /// Whether `path` answers 200 within `timeoutMs`.
    func isReady(_ address: SlotAddress, path: String, timeoutMs: Int) async -> Bool
}

/// The four ports of one runtime.
public struct RuntimePorts: Sendable {
    /// Slots.
    public var slots: any SlotRuntime
    /// The router.
    public var router: any TrafficRouter
    /// Models and bentos.
    public var catalog: any ModelCatalog
    /// Probes.
    public var prober: any Prober
    /// Ports of environments that run elsewhere (a Kubernetes cluster), by environment name; every other
    /// environment uses these ports.
    public var environments: [String: RuntimePorts] = [:]

    /// A runtime.
    public init(slots: any SlotRuntime, router: any TrafficRouter, catalog: any ModelCatalog, prober: any Prober) {
        self.slots = slots
        self.router = router
        self.catalog = catalog
        self.prober = prober
    }

    /// The ports of `environment`: its own when it has some, else these.
    public func ports(for environment: String) -> RuntimePorts {
        environments[environment] ?? self
    }
}

/// Which router the local runtime puts in front of its slots.
public enum RouterKind: String, Sendable, Hashable, CaseIterable {
    /// nginx: one upstream per endpoint, switched by reload (no weighted split).
    case nginx
    /// HAProxy: weighted servers changed by runtime commands, per-server counters.
    case haproxy
}

extension RuntimePorts {
    /// The local runtime: `bentoml serve` processes in blue/green/teal slots under `home/slots`, the router
    /// (HAProxy by default, or nginx) under `home/router`, the BentoML store at `bentomlHome`, HTTP probes
    /// on the loopback interface.
    public static func local(home: String, bentoml: String, bentomlHome: String, nginx: String,
                             router: RouterKind = .haproxy, haproxy: String = HAProxyRouter.defaultExecutable) -> RuntimePorts {
        let traffic: any TrafficRouter = switch router {
        case .nginx: NginxRouter(home: home, nginx: nginx)
        case .haproxy: HAProxyTrafficRouter(home: home, haproxy: haproxy)
        }
        return RuntimePorts(slots: SlotManager(home: home, bentoml: bentoml, sharedBentoMLHome: bentomlHome),
                            router: traffic, catalog: LocalCatalog(home: bentomlHome), prober: HTTPProber())
    }
}
