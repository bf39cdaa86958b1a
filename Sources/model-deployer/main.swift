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
    let startup = await DeployerAgent.routerStartup(options, logger: logger)
    if let problem = startup.problem {
        stderrLine("model-deployer: \(problem)")
        exit(2)
    }
    let server = RPCServer(input: 0, output: protocolFD, maxFrameBytes: options.maxFrameBytes, logger: logger)
    let agent = DeployerAgent(options: options, server: server, logger: logger, takeover: startup.moved)
    agent.install()

    let term = installTerminationHandler(server: server, agent: agent, logger: logger)
    defer { term.cancel() }

    await server.run()
    await agent.close()
    exit(0)
}

/// On SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal or supervisor went away): finish in-flight work
/// (it persists its state when cancelled), then exit 0. Any of them ends the agent the same clean way;
/// a second signal while draining changes nothing, the drain is already bounded.
///
/// A plain handler writes the signal number to a pipe and Dispatch watches the pipe. Not a Dispatch
/// signal source: on Linux that reads a signalfd, which only sees a signal no thread takes, and with
/// SIG_IGN a signal delivered to any other thread (most of them, in a busy agent) was dropped.
/// A nonisolated function, so the handler is not tied to the main actor (Dispatch runs it elsewhere).
nonisolated func installTerminationHandler(server: RPCServer, agent: DeployerAgent, logger: Logger) -> any DispatchSourceRead {
    var fds: [Int32] = [-1, -1]
    if pipe(&fds) != 0 { logger.error("no pipe for signals; SIGTERM, SIGINT and SIGHUP will kill the agent outright") }
    _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
    _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
    SignalPipe.writeFD = fds[1]
    let readFD = fds[0]
    let source = DispatchSource.makeReadSource(fileDescriptor: readFD, queue: .global())
    let once = Once()
    source.setEventHandler { @Sendable in
        var signo: UInt8 = 0
        guard read(readFD, &signo, 1) == 1, once.first() else { return }
        let name = [SIGTERM: "SIGTERM", SIGINT: "SIGINT", SIGHUP: "SIGHUP"][Int32(signo)] ?? "signal \(signo)"
        logger.info("\(name): finishing in-flight work")
        Task {
            await server.shutdown(drainTimeout: .seconds(10))
            await agent.close()
            exit(0)
        }
    }
    source.resume()
    if fds[1] >= 0 {
        for signo in [SIGTERM, SIGINT, SIGHUP] { signal(signo, onTerminationSignal) }
    }
    return source
}

/// The write end of the signal pipe. Set before any handler is installed, so the handler reads a
/// value already initialised (lazy initialisation is not safe inside a signal handler).
enum SignalPipe {
    nonisolated(unsafe) static var writeFD: Int32 = -1
}

/// Runs in whichever thread the signal lands on: only async-signal-safe calls (write; errno restored).
func onTerminationSignal(_ signo: Int32) {
    let saved = errno
    var b = UInt8(truncatingIfNeeded: signo)
    _ = write(SignalPipe.writeFD, &b, 1)
    errno = saved
}

/// True on the first call only.
final class Once: Sendable {
    private let state = Mutex(false)
    func first() -> Bool { state.withLock { s in defer { s = true }; return !s } }
}
