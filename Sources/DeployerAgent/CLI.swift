import JSONRPC
import DeployRuntime

/// Facts about this build.
public enum AgentInfo {
    public static let version = "0.1.0"
    public static let name = "model-deployer"
}

/// Settings of `model-deployer serve`, from flags and environment.
public struct ServeOptions: Sendable, Equatable {
    /// `$MODEL_DEPLOYER_HOME`: ledger file, slots, router.
    public var home: String?
    /// Postgres URL; nil means the embedded SQLite ledger.
    public var databaseURL: String?
    /// Approval policy file (default `<home>/policy.json` when it exists).
    public var policyPath: String?
    public var logLevel: LogLevel = .info
    public var maxFrameBytes: Int = 64 << 20
    /// List `deploy_approve` to MCP clients (off: an LLM must not approve its own deployment).
    public var mcpAllowApprove = false
    /// The `bentoml` executable (`MODEL_DEPLOYER_BENTOML`, else found on PATH).
    public var bentoml: String?
    /// The `nginx` executable (`MODEL_DEPLOYER_NGINX`, else found on PATH or /usr/sbin).
    public var nginx: String?
    /// The router in front of the slots (`--router`, `MODEL_DEPLOYER_ROUTER`; default haproxy).
    public var router: RouterKind = .haproxy
    /// The `haproxy` executable (`MODEL_DEPLOYER_HAPROXY`, else found on PATH or /usr/sbin); used with the HAProxy router.
    public var haproxy: String?

    public init() {}
}

/// What the command line asks for.
public enum CLICommand: Equatable {
    case serve(ServeOptions)
    case version
    case help(String?)
    case usageError(String)
}

/// The command-line interface: `serve`, `--version`, `--help`, `help <command>`.
public enum CLI {
    /// Parses arguments (without the program name). Environment variables fill options that flags leave unset.
    public static func parse(_ args: [String], environment: [String: String] = currentEnvironment()) -> CLICommand {
        guard let first = args.first else { return .help(nil) }
        switch first {
        case "--version", "-V", "version": return .version
        case "--help", "-h": return .help(nil)
        case "help":
            guard args.count <= 2 else { return .usageError("'help' takes at most one command name") }
            if args.count == 2 {
                guard args[1] == "serve" else { return .usageError("unknown command '\(args[1])'") }
                return .help(args[1])
            }
            return .help(nil)
        case "serve": return parseServe(Array(args.dropFirst()), environment: environment)
        default:
            if first.hasPrefix("-") { return .usageError("unknown option '\(first)'") }
            return .usageError("unknown command '\(first)'")
        }
    }

    static func parseServe(_ args: [String], environment: [String: String]) -> CLICommand {
        var o = ServeOptions()
        o.home = environment["MODEL_DEPLOYER_HOME"].flatMap { $0.isEmpty ? nil : $0 }
        o.databaseURL = environment["MODEL_DEPLOYER_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
        o.bentoml = environment["MODEL_DEPLOYER_BENTOML"].flatMap { $0.isEmpty ? nil : $0 }
        o.nginx = environment["MODEL_DEPLOYER_NGINX"].flatMap { $0.isEmpty ? nil : $0 }
        o.haproxy = environment["MODEL_DEPLOYER_HAPROXY"].flatMap { $0.isEmpty ? nil : $0 }
        // Checked after the flags: a valid --router overrides a bad variable.
        var routerChoice: (source: String, value: String)? = environment["MODEL_DEPLOYER_ROUTER"]
            .flatMap { $0.isEmpty ? nil : ("MODEL_DEPLOYER_ROUTER", $0) }
        if let l = environment["MODEL_DEPLOYER_LOG_LEVEL"], let level = LogLevel(name: l) { o.logLevel = level }
        var i = 0
        func value(_ flag: String) -> Result<String, CLIError> {
            if let eq = args[i].firstIndex(of: "=") { return .success(String(args[i][args[i].index(after: eq)...])) }
            guard i + 1 < args.count else { return .failure(CLIError("option '\(flag)' needs a value")) }
            i += 1
            return .success(args[i])
        }
        while i < args.count {
            let a = args[i]
            let name = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
            do {
                switch name {
                case "--help", "-h": return .help("serve")
                case "--home": o.home = try value(name).get()
                case "--database-url": o.databaseURL = try value(name).get()
                case "--policy": o.policyPath = try value(name).get()
                case "--bentoml": o.bentoml = try value(name).get()
                case "--nginx": o.nginx = try value(name).get()
                case "--haproxy": o.haproxy = try value(name).get()
                case "--router": routerChoice = try (name, value(name).get())
                case "--log-level":
                    let v = try value(name).get()
                    guard let l = LogLevel(name: v) else {
                        return .usageError("--log-level must be one of debug, info, warning, error, off (got '\(v)')")
                    }
                    o.logLevel = l
                case "--max-frame-bytes":
                    let v = try value(name).get()
                    guard let n = Int(v), n >= 1024 else {
                        return .usageError("--max-frame-bytes must be an integer >= 1024 (got '\(v)')")
                    }
                    o.maxFrameBytes = n
                case "--mcp-allow-approve": o.mcpAllowApprove = true
                default:
                    return .usageError(a.hasPrefix("-") ? "unknown option '\(a)' for 'serve'" : "unexpected argument '\(a)' for 'serve'")
                }
            } catch {
                return .usageError(error.message)
            }
            i += 1
        }
        if let choice = routerChoice {
            let (source, v) = choice
            guard let kind = RouterKind(rawValue: v) else {
                return .usageError("\(source) must be one of \(RouterKind.allCases.map(\.rawValue).joined(separator: ", ")) (got '\(v)')")
            }
            o.router = kind
        }
        return .serve(o)
    }

    struct CLIError: Error {
        let message: String
        init(_ m: String) { message = m }
    }

    /// The help text for `topic` (nil = overview).
    public static func help(_ topic: String?) -> String {
        if topic == "serve" {
            return """
                Usage: model-deployer serve [options]

                Speaks JSON-RPC 2.0 on stdin/stdout until stdin closes. Framing (newline-delimited JSON or
                LSP-style Content-Length headers) is detected from the first byte. Logs are JSON lines on stderr.

                Options:
                  --home DIR              state directory (env MODEL_DEPLOYER_HOME;
                                          default $XDG_STATE_HOME/model-deployer or ~/.local/state/model-deployer)
                  --database-url URL      Postgres ledger, postgres://... (env MODEL_DEPLOYER_DATABASE_URL);
                                          default: embedded SQLite at <home>/deployer.db
                  --policy FILE           approval policy JSON (default <home>/policy.json if present)
                  --bentoml PATH          bentoml executable (env MODEL_DEPLOYER_BENTOML; default: PATH)
                  --router KIND           haproxy | nginx: the router in front of the slots
                                          (env MODEL_DEPLOYER_ROUTER; default haproxy)
                  --haproxy PATH          haproxy executable (env MODEL_DEPLOYER_HAPROXY; default: PATH, /usr/sbin)
                  --nginx PATH            nginx executable for --router nginx (env MODEL_DEPLOYER_NGINX;
                                          default: PATH, /usr/sbin)
                  --log-level LEVEL       debug | info | warning | error | off (default info)
                  --max-frame-bytes N     largest accepted frame (default 67108864)
                  --mcp-allow-approve     list deploy_approve to MCP clients (off by default)
                  -h, --help              show this help

                Methods: deploy.plan, deploy.approve, deploy.execute, deploy.rollback, deploy.status,
                deploy.list, deploy.follow, deploy.stop, history.query, ping, rpc.discover;
                MCP: initialize, tools/list, tools/call.
                """
        }
        return """
            model-deployer \(AgentInfo.version): plans, approves, executes and rolls back BentoML model
            deployments (blue-green behind HAProxy or nginx), with every step recorded in a ledger.

            Usage:
              model-deployer serve [options]   speak JSON-RPC 2.0 / MCP on stdin and stdout
              model-deployer --version         print the version
              model-deployer help [serve]      show help

            Run 'model-deployer help serve' for the options of serve.
            """
    }
}

/// The process environment as a dictionary (the runtime's reader: one copy of the `environ` walk).
public func currentEnvironment() -> [String: String] { ProcessLauncher.currentEnvironment() }
