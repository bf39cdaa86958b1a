// ledger-bench: loads a synthetic ledger and prints insert throughput and query latency (p50/p99).
//
//   ledger-bench [--postgres URL [--schema S] | --sqlite PATH] [--deployments N] [--events M] [--runs R] [--keep]
//                [--query-only]   (measure data loaded by an earlier run with --keep; same --deployments)
//
// With neither store flag, uses $MODEL_DEPLOYER_DATABASE_URL when set, else a fresh SQLite file in /tmp.
// Postgres data goes into a fresh schema (dropped afterwards unless --keep).
// Defaults: 1,000,000 deployments; 10,000,000 events for Postgres, 1,000,000 for SQLite; 1000 runs per query.
//
// Hidden subcommand used by the conformance tests (two processes racing for one rollout lock):
//   ledger-bench race (--postgres URL [--schema S] | --sqlite PATH) --go FILE --models N --prefix P
// prints "ready", waits until FILE exists, then tries to create one planned deployment per model
// P-0..P-(N-1) in environment "production", printing "won I ID" / "lost I BLOCKING_ID" / "error I MESSAGE".
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import DeployCore
import DeploymentStore
import JSON

func writeAll(_ fd: Int32, _ s: String) {
    var bytes = Array(s.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes[off...].withUnsafeMutableBufferPointer { write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return }
        off += n
    }
    _ = bytes.count
}

func fail(_ message: String) -> Never {
    writeAll(2, "ledger-bench: \(message)\n")
    exit(2)
}

/// One line to stdout, unbuffered (the race test reads it while the process waits).
func say(_ line: String) { writeAll(1, line + "\n") }

/// `x` with `decimals` digits after the point, right-aligned in `width`.
func fmt(_ x: Double, _ decimals: Int, width: Int = 0) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let r = (x * scale).rounded()
    let whole = Int64(r / scale)
    var s = String(whole)
    if decimals > 0 {
        let frac = String(Int64(abs(r) - abs(Double(whole)) * scale))
        s += "." + String(repeating: "0", count: max(0, decimals - frac.count)) + frac
    }
    return String(repeating: " ", count: max(0, width - s.count)) + s
}

var args = Array(CommandLine.arguments.dropFirst())
let isRace = args.first == "race"
if isRace { args.removeFirst() }
var opts: [String: String] = [:]
var flags: Set<String> = []
var i = 0
while i < args.count {
    let a = args[i]
    guard a.hasPrefix("--") else { fail("unexpected argument \(a)") }
    if a == "--keep" || a == "--query-only" { flags.insert(a); i += 1; continue }
    guard i + 1 < args.count else { fail("\(a) needs a value") }
    opts[String(a.dropFirst(2))] = args[i + 1]
    i += 2
}
@MainActor func intOpt(_ name: String, _ def: Int) -> Int {
    guard let s = opts[name] else { return def }
    guard let v = Int(s.replacingUnderscores()), v >= 0 else { fail("--\(name) must be a non-negative integer") }
    return v
}
extension String {
    func replacingUnderscores() -> String { String(filter { $0 != "_" && $0 != "," }) }
}

let env = ProcessInfo.processInfo.environment
let pgURL = opts["postgres"] ?? (opts["sqlite"] == nil ? env["MODEL_DEPLOYER_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 } : nil)

// MARK: - race

if isRace {
    guard let go = opts["go"], let prefix = opts["prefix"] else { fail("race needs --go FILE and --prefix P") }
    let models = intOpt("models", 1)
    let store: any DeploymentStore
    do {
        if let pgURL {
            store = try PostgresStore(connectionString: pgURL, schema: opts["schema"])
        } else if let path = opts["sqlite"] {
            store = SQLiteStore(path: path)
        } else {
            fail("race needs --postgres or --sqlite")
        }
        try store.migrate()
    } catch { fail("cannot open the store: \(error)") }
    say("ready")
    while access(go, F_OK) != 0 { usleep(200) }
    let me = "pid-\(getpid())"
    for m in 0..<models {
        let now = Date()
        let id = makeDeploymentID(now: now)
        let rec = DeploymentRecord(
            deploymentId: id, modelName: "\(prefix)-\(m)", modelVersion: "v-\(me)", environment: "production",
            strategy: .blueGreen, status: .planned, requestedBy: me, createdAt: now, updatedAt: now)
        do {
            try store.insert(rec, event: DeploymentEvent(deploymentId: id, at: now, step: "plan", actor: me, message: "race"))
            say("won \(m) \(id)")
        } catch where error.code == .rolloutInProgress {
            say("lost \(m) \(error.deploymentId ?? "?")")
        } catch {
            say("error \(m) \(error)")
        }
    }
    exit(0)
}

// MARK: - benchmark

let nDeployments = intOpt("deployments", 1_000_000)
let nEvents = intOpt("events", pgURL != nil ? 10_000_000 : 1_000_000)
let runs = max(1, intOpt("runs", 1000))
let nModels = max(1, intOpt("models", 1000))
let environments = ["production", "staging", "dev"]
let clock = ContinuousClock()

struct Rng {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

let store: any DeploymentStore
var schemaToDrop: String?
let label: String
if let pgURL {
    let schema = opts["schema"] ?? "ledger_bench_\(getpid())"
    schemaToDrop = flags.contains("--keep") ? nil : schema
    do { store = try PostgresStore(connectionString: pgURL, schema: schema) } catch { fail("\(error)") }
    label = "postgres (schema \(schema))"
} else {
    let path = opts["sqlite"] ?? "/tmp/ledger-bench-\(getpid()).db"
    if !flags.contains("--query-only") { for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) } }
    store = SQLiteStore(path: path)
    label = "sqlite (\(path))"
}
do { try store.migrate() } catch { fail("migrate: \(error)") }

say("ledger-bench: \(label): \(nDeployments) deployments, \(nEvents) events, \(nModels) models x \(environments.count) environments")

// Deterministic synthetic history: one deployment every 30 s starting 2023-01-01, spread over the pairs.
let base: Int64 = 1_672_531_200_000_000
let stepMicros: Int64 = 30_000_000
let steps = ["plan", "approve", "start_slot", "readiness", "smoke_test", "metrics_baseline", "switch", "post_switch_check"]
var rng = Rng(state: 42)
var lastLive: [Int: (id: String, from: Int64)] = [:]
var liveDeployment: [Int: String] = [:]
var intervalsBuffer: [LiveInterval] = []
let chunk = pgURL != nil ? 5000 : 10000
var loaded = 0
var eventsLoaded = 0
let loadStart = clock.now
var pendingLiveFix: [String] = []

func micros(_ d: Date) -> Int64 { Int64((d.timeIntervalSince1970 * 1_000_000).rounded()) }
func date(_ m: Int64) -> Date { Date(timeIntervalSince1970: Double(m) / 1_000_000) }

let queryOnly = flags.contains("--query-only")
if queryOnly { say("--query-only: measuring the data already in place (same --deployments as the load)") }
while !queryOnly && loaded < nDeployments {
    let n = min(chunk, nDeployments - loaded)
    var batch: [DeploymentHistory] = []
    batch.reserveCapacity(n)
    var intervals: [LiveInterval] = []
    for k in 0..<n {
        let idx = loaded + k
        let created = base + Int64(idx) * stepMicros
        let pair = rng.below(nModels * environments.count)
        let model = "model-\(pair / environments.count)"
        let envName = environments[pair % environments.count]
        let roll = rng.below(100)
        let id = makeDeploymentID(unixMicros: created, random: rng.next())
        // 75% reach live (superseded later), 12% fail, 5% rolled back, 5% rejected, 3% expired.
        let status: DeploymentStatus = roll < 75 ? .superseded : roll < 87 ? .failed : roll < 92 ? .rolledBack : roll < 97 ? .rejected : .expired
        let nev = nEvents / nDeployments + (idx < nEvents % max(1, nDeployments) ? 1 : 0)
        var evs: [DeploymentEvent] = []
        evs.reserveCapacity(nev)
        for s in 0..<nev {
            evs.append(DeploymentEvent(
                deploymentId: id, at: date(created + Int64(s) * 1_000_000), step: steps[s % steps.count], actor: "bench",
                message: "step \(s)", data: ["n": .int(Int64(s))]))
        }
        let rec = DeploymentRecord(
            deploymentId: id, modelName: model, modelVersion: "v\(idx)", environment: envName, bentoTag: "svc:\(idx)",
            endpointURL: "http://127.0.0.1:8080/\(model)/\(envName)", strategy: roll % 2 == 0 ? .blueGreen : .direct,
            status: status, slot: idx % 2 == 0 ? "blue" : "green", plan: ["replicas": 1, "model": .string(model)],
            planHash: "h\(idx)", healthCheckPassed: status == .superseded, metricsBaseline: ["p99_ms": 12.5],
            requestedBy: "bench", createdAt: date(created), updatedAt: date(created + 20_000_000))
        batch.append(DeploymentHistory(record: rec, events: evs))
        if status == .superseded {
            let from = created + 15_000_000
            if let prev = lastLive[pair] {
                intervals.append(LiveInterval(modelName: model, environment: envName, deploymentId: prev.id,
                    liveFrom: date(prev.from), liveUntil: date(from)))
            }
            lastLive[pair] = (id, from)
        }
    }
    do {
        if let pg = store as? PostgresStore { try pg.bulkLoad(batch, liveIntervals: intervals) } else if let sq = store as? SQLiteStore {
            try sq.bulkLoad(batch, liveIntervals: intervals)
        }
    } catch { fail("bulk load: \(error)") }
    loaded += n
    eventsLoaded += batch.reduce(0) { $0 + $1.events.count }
    if loaded % (chunk * 20) == 0 || loaded == nDeployments {
        let secs = Double((clock.now - loadStart).components.attoseconds) / 1e18 + Double((clock.now - loadStart).components.seconds)
        writeAll(2, "  loaded \(loaded) deployments, \(eventsLoaded) events (\(Int(Double(loaded + eventsLoaded) / secs)) rows/s)\n")
    }
}
// The newest live deployment per pair stays open (and its row says live).
var openIntervals: [LiveInterval] = []
for (pair, live) in lastLive {
    openIntervals.append(LiveInterval(modelName: "model-\(pair / environments.count)", environment: environments[pair % environments.count],
        deploymentId: live.id, liveFrom: date(live.from)))
}
if !queryOnly { do {
    if let pg = store as? PostgresStore { try pg.bulkLoad([], liveIntervals: openIntervals) } else if let sq = store as? SQLiteStore {
        try sq.bulkLoad([], liveIntervals: openIntervals)
    }
} catch { fail("bulk load: \(error)") } }
let loadDuration = clock.now - loadStart
func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
let loadSecs = seconds(loadDuration)
let rowsPerSec = Double(loaded + eventsLoaded) / loadSecs
let deploymentsPerSec = Double(loaded) / loadSecs
if !queryOnly { say("insert: \(loaded) deployments + \(eventsLoaded) events in \(fmt(loadSecs, 1)) s = \(fmt(rowsPerSec, 0)) rows/s (\(fmt(deploymentsPerSec, 0)) deployments/s)") }

let analyzeStart = clock.now
do {
    if let pg = store as? PostgresStore { try pg.analyze() } else if let sq = store as? SQLiteStore { try sq.analyze() }
} catch { fail("analyze: \(error)") }
say("analyze: \(fmt(seconds(clock.now - analyzeStart), 1)) s")

@MainActor func measure(_ name: String, _ make: (inout Rng) -> HistoryQuery) {
    var r = Rng(state: 7)
    var samples: [Double] = []
    samples.reserveCapacity(runs)
    var rows = 0
    // Warm-up.
    for _ in 0..<min(50, runs) { _ = try? store.query(make(&r)) }
    for _ in 0..<runs {
        let q = make(&r)
        let t0 = clock.now
        do { rows += try store.query(q).deployments.count } catch { fail("\(name): \(error)") }
        samples.append(seconds(clock.now - t0) * 1000)
    }
    samples.sort()
    let p50 = samples[samples.count / 2]
    let p99 = samples[min(samples.count - 1, Int(Double(samples.count) * 0.99))]
    let padded = name + String(repeating: " ", count: max(0, 28 - name.count))
    let perRun = Double(rows) / Double(runs)
    say("\(padded) p50 \(fmt(p50, 3, width: 7)) ms  p99 \(fmt(p99, 3, width: 7)) ms  max \(fmt(samples.last!, 3, width: 8)) ms  (\(runs) runs, \(fmt(perRun, 1)) rows/run)")
}

let span = Int64(max(1, nDeployments)) * stepMicros
@MainActor func randomPair(_ r: inout Rng) -> (String, String) {
    let pair = r.below(nModels * environments.count)
    return ("model-\(pair / environments.count)", environments[pair % environments.count])
}

measure("newest page") { _ in HistoryQuery(limit: 50) }
measure("model+environment") { r in
    let (m, e) = randomPair(&r)
    return HistoryQuery(modelName: m, environment: e, limit: 50)
}
let statusChoices: [DeploymentStatus] = [.failed, .rolledBack, .superseded, .rejected]
measure("status") { r in HistoryQuery(statuses: [statusChoices[r.below(statusChoices.count)]], limit: 50) }
measure("live_at") { r in
    let (m, e) = randomPair(&r)
    let at = date(base + Int64(r.below(Int(span / 1_000_000))) * 1_000_000)
    return HistoryQuery(modelName: m, environment: e, liveAt: at, limit: 50)
}
var cursor: String?
do {
    for _ in 0..<99 { cursor = try store.query(HistoryQuery(limit: 50, cursor: cursor)).nextCursor }
} catch { fail("walking to page 100: \(error)") }
let page100 = cursor
measure("page 100 by cursor") { _ in HistoryQuery(limit: 50, cursor: page100) }
measure("model+env page 3 by cursor") { r in
    let (m, e) = randomPair(&r)
    var c: String?
    for _ in 0..<2 { c = (try? store.query(HistoryQuery(modelName: m, environment: e, limit: 50, cursor: c)))?.nextCursor }
    return HistoryQuery(modelName: m, environment: e, limit: 50, cursor: c)
}

if schemaToDrop != nil, let pg = store as? PostgresStore {
    do { try pg.dropSchema() } catch { fail("drop schema: \(error)") }
}
