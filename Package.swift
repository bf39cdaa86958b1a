// swift-tools-version:6.0
import PackageDescription

// No third-party packages: Foundation (FoundationEssentials only, for a fast cold start), the toolchain,
// and the system C libraries libpq and sqlite3.
let package = Package(
    name: "model-deployer",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "model-deployer", targets: ["model-deployer"]),
        .library(name: "JSONRPC", targets: ["JSONRPC"]),
    ],
    targets: [
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // Headers only: libpq is loaded with dlopen when a Postgres ledger connects (cold start).
        .systemLibrary(name: "CPostgres", providers: [.apt(["libpq-dev"])]),

        // A JSON value type with a byte-level parser and writer. Knows nothing else.
        .target(name: "JSON"),
        // JSON-RPC 2.0 over stdio: framing, dispatch, cancellation, progress. Knows no deployments.
        .target(name: "JSONRPC", dependencies: ["JSON"]),
        // Pure decisions: state machine, planner, approval policy, rollback verdicts. No I/O, no clock.
        .target(name: "DeployCore", dependencies: ["JSON"]),
        // The ledger: one protocol, SQLite and Postgres implementations, migrations.
        .target(name: "DeploymentStore", dependencies: ["DeployCore", "JSON", "CSQLite", "CPostgres"]),
        // Effects: BentoML slots (processes), the nginx router, HTTP probes and smoke tests.
        .target(name: "DeployRuntime", dependencies: ["DeployCore", "JSON"]),
        // Runs a deployment step by step, persisting each step; reconciles after a crash.
        .target(name: "DeployEngine", dependencies: ["DeployCore", "DeploymentStore", "DeployRuntime", "JSON"]),
        // JSON-RPC method handlers, the MCP adapter, wire <-> domain mapping.
        .target(name: "DeployerAgent", dependencies: ["JSONRPC", "DeployEngine", "DeployCore", "DeploymentStore", "DeployRuntime", "JSON"]),
        .executableTarget(name: "model-deployer", dependencies: ["DeployerAgent", "JSONRPC", "JSON"]),

        // Benchmarks: programs that print figures, run on demand (see BENCHMARKS.md).
        .executableTarget(name: "ledger-bench", dependencies: ["DeploymentStore", "DeployCore", "JSON"], path: "Benchmarks/ledger-bench"),
        .executableTarget(name: "kube-bench", dependencies: ["DeployRuntime", "JSON"], path: "Benchmarks/kube-bench",
                          exclude: ["agent_bench.py"]),
        .executableTarget(name: "haproxy-bench", dependencies: ["DeployRuntime"], path: "Benchmarks/haproxy-bench"),

        .target(name: "TestSupport", dependencies: ["DeployCore", "DeploymentStore", "JSON"], path: "Tests/TestSupport"),
        .testTarget(name: "JSONTests", dependencies: ["JSON"]),
        .testTarget(name: "JSONRPCTests", dependencies: ["JSONRPC", "JSON"]),
        .testTarget(name: "DeployCoreTests", dependencies: ["DeployCore", "JSON", "TestSupport"]),
        .testTarget(name: "DeploymentStoreTests", dependencies: ["DeploymentStore", "DeployCore", "JSON", "TestSupport"]),
        .testTarget(name: "DeployRuntimeTests", dependencies: ["DeployRuntime", "DeployCore", "JSON"]),
        .testTarget(name: "DeployEngineTests", dependencies: ["DeployEngine", "DeployCore", "DeploymentStore", "JSON", "TestSupport"]),
        .testTarget(name: "DeployerAgentTests", dependencies: ["DeployerAgent", "DeployRuntime", "DeployCore", "JSONRPC", "JSON"]),
    ],
    swiftLanguageModes: [.v6]
)
