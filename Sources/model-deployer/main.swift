#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import DeployerAgent
import JSONRPC
import Synchronization

/// Writes a line to stderr (stdout is reserved for protocol frames in `serve`).
func stderrLine(_ s: String) {
    var bytes = Array(s.utf8)
    bytes.append(0x0A)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress!, $0.count) }
}

var args = Array(CommandLine.arguments.dropFirst())

switch CLI.parse(args) {
case .version:
    print("model-deployer \(AgentInfo.version)")
    exit(0)
case .help(let topic):
    print(CLI.help(topic))
    exit(0)
case .usageError(let message):
    stderrLine("model-deployer: \(message)")
    stderrLine("Run 'model-deployer --help' for usage.")
    exit(2)
case .serve(let options):
    if let problem = DeployerAgent.configurationProblem(options) {
        stderrLine("model-deployer: \(problem)")
        exit(2)
    }
    // The protocol gets its own copy of stdout; fd 1 then points at stderr, so a stray print
    // anywhere in the process cannot corrupt the frame stream.
    let protocolFD = dup(1)
    dup2(2, 1)
    signal(SIGPIPE, SIG_IGN)
    let logger = Logger(level: options.logLevel)
    let server = RPCServer(input: 0, output: protocolFD, maxFrameBytes: options.maxFrameBytes, logger: logger)
    let agent = DeployerAgent(options: options, server: server, logger: logger)
    agent.install()

    let term = installTerminationHandler(server: server, agent: agent, logger: logger)
    defer { for source in term { source.cancel() } }

    await server.run()
    await agent.close()
    exit(0)
}

/// On SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal or supervisor went away): finish in-flight work
/// (it persists its state when cancelled), then exit 0. Any of them ends the agent the same clean way;
/// a second signal while draining changes nothing, the drain is already bounded.
/// A nonisolated function, so the handler is not tied to the main actor (Dispatch runs it elsewhere).
nonisolated func installTerminationHandler(server: RPCServer, agent: DeployerAgent, logger: Logger) -> [any DispatchSourceSignal] {
    let once = Once()
    return [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT"), (SIGHUP, "SIGHUP")].map { (signo, name) in
        signal(signo, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
        source.setEventHandler { @Sendable in
            guard once.first() else { return }
            logger.info("\(name): finishing in-flight work")
            Task {
                await server.shutdown(drainTimeout: .seconds(10))
                await agent.close()
                exit(0)
            }
        }
        source.resume()
        return source
    }
}

/// True on the first call only.
final class Once: Sendable {
    private let state = Mutex(false)
    func first() -> Bool { state.withLock { s in defer { s = true }; return !s } }
}
