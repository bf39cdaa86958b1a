import DeployCore
@testable import DeploymentStore
import Foundation
import JSON
import Synchronization
import Testing

/// The Postgres server the test command started (`scripts/pg-cluster.sh start`), if any.
let testPostgresURL: String? = {
    let v = ProcessInfo.processInfo.environment["MODEL_DEPLOYER_TEST_DATABASE_URL"] ?? ""
    return v.isEmpty ? nil : v
}()

/// Which implementation a conformance case runs against.
enum StoreKind: String, Sendable {
    case sqlite, postgres, memory
}

/// A fresh, empty ledger database for one test: a temporary SQLite file, or a new Postgres schema.
/// `makeStore()` opens another independent connection to the same database.
final class TestDatabase: Sendable {
    let kind: StoreKind
    let dir: String
    let schema: String
    private let memory = InMemoryStoreBox()

    init(_ kind: StoreKind) throws {
        self.kind = kind
        let token = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        schema = "t_\(token)"
        dir = NSTemporaryDirectory() + "ledger-test-\(token)"
        if kind == .sqlite { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
    }

    var sqlitePath: String { dir + "/deployer.db" }

    func makeStore() throws -> any DeploymentStore {
        switch kind {
        case .sqlite: return SQLiteStore(path: sqlitePath)
        case .postgres: return try PostgresStore(connectionString: testPostgresURL!, schema: schema)
        case .memory: return memory.store
        }
    }

    /// Arguments that point `ledger-bench race` at this database.
    var raceArguments: [String] {
        switch kind {
        case .sqlite: return ["--sqlite", sqlitePath]
        case .postgres: return ["--postgres", testPostgresURL!, "--schema", schema]
        case .memory: return []
        }
    }

    func cleanUp() {
        switch kind {
        case .sqlite: try? FileManager.default.removeItem(atPath: dir)
        case .postgres: try? (try? PostgresStore(connectionString: testPostgresURL!, schema: schema, migrate: false))?.dropSchema()
        case .memory: break
        }
    }
}

private final class InMemoryStoreBox: Sendable {
    let store = InMemoryStoreFactory.make()
}

import TestSupport
private enum InMemoryStoreFactory {
    static func make() -> any DeploymentStore { InMemoryStore() }
}

/// An instant with exactly microsecond precision (what the stores keep), `seconds` after 2025-01-01.
func instant(_ seconds: Double) -> Date {
    Micros.date(1_735_689_600_000_000 + Int64((seconds * 1_000_000).rounded()))
}

/// A planned deployment with every column filled, so round trips check them all.
func sampleRecord(
    id: String? = nil, model: String = "iris", version: String = "v1", env: String = "production",
    status: DeploymentStatus = .planned, at: Date = instant(0), key: String? = nil, strategy: DeploymentStrategy = .blueGreen
) -> DeploymentRecord {
    DeploymentRecord(
        deploymentId: id ?? makeDeploymentID(now: at), modelName: model, modelVersion: version, environment: env,
        bentoTag: "iris_svc:\(version)", endpointURL: "http://127.0.0.1:8080/\(model)", strategy: strategy, status: status,
        previousVersion: "v0", slot: "green", plan: ["replicas": 1, "slot": "green", "checks": ["readyz", "smoke"]],
        planHash: "sha256:abc", healthCheckPassed: nil, metricsBaseline: ["p99_ms": 12.5, "error_rate": 0.001],
        requestedBy: "alice", idempotencyKey: key, createdAt: at, updatedAt: at)
}

func planEvent(_ id: String = "", at: Date = instant(0)) -> DeploymentEvent {
    DeploymentEvent(deploymentId: id, at: at, step: "plan", actor: "alice", message: "planned", data: ["why": "test"])
}

/// The `ledger-bench` executable next to the test bundle (`swift build` builds it with the tests).
func ledgerBenchPath() throws -> String {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("ledger-bench").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    struct Missing: Error, CustomStringConvertible {
        var description: String { "ledger-bench is not built next to the tests; run `swift build --product ledger-bench` first" }
    }
    throw Missing()
}

/// Runs `body` on `n` threads at once and returns their results in index order.
func concurrently<T: Sendable>(_ n: Int, _ body: @Sendable @escaping (Int) -> T) -> [T] {
    let results = Mutex<[Int: T]>([:])
    DispatchQueue.concurrentPerform(iterations: n) { i in
        let r = body(i)
        results.withLock { $0[i] = r }
    }
    return results.withLock { r in (0..<n).map { r[$0]! } }
}
