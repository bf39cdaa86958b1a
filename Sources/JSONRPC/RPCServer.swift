#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import JSON
import Synchronization

/// What a handler knows about the request it serves, and how it talks back while it works.
public struct RequestContext: Sendable {
    /// The request id; nil for a notification.
    public let id: JSONValue?
    public let method: String
    /// `params._meta.progressToken`, when the caller asked for MCP progress.
    public let progressToken: JSONValue?
    let sink: OutputSink
    let server: RPCServer?

    public init(id: JSONValue?, method: String, progressToken: JSONValue?, sink: OutputSink, server: RPCServer? = nil) {
        self.id = id
        self.method = method
        self.progressToken = progressToken
        self.sink = sink
        self.server = server
    }

    /// Sends a request to the peer (e.g. MCP `elicitation/create`) and waits for its answer.
    public func request(_ method: String, _ params: JSONValue, timeout: Duration = .seconds(600)) async throws(RPCError) -> JSONValue {
        guard let server else { throw RPCError.internalError("no connection to send \(method) on") }
        return try await server.sendRequest(method, params, timeout: timeout)
    }

    /// Sends a notification to the peer at once.
    public func notify(_ method: String, _ params: JSONValue) {
        sink.send(RPCServer.notificationBytes(method: method, params: params), flush: true)
    }

    /// Sends MCP `notifications/progress` when the request carried a progress token; does nothing otherwise.
    public func reportProgress(_ progress: Double, total: Double? = 100, message: String? = nil) {
        guard let token = progressToken else { return }
        var p: [String: JSONValue] = ["progressToken": token, "progress": .double(progress)]
        if let total { p["total"] = .double(total) }
        if let message { p["message"] = .string(message) }
        notify("notifications/progress", .object(p))
    }
}

/// A method implementation.
public enum Handler: Sendable {
    /// Runs inline on the reader thread: for cheap methods (ping, discovery). Must not block.
    case immediate(@Sendable (JSONValue?) throws(RPCError) -> JSONValue)
    /// Runs as its own task; may take long, stream notifications and be cancelled.
    case task(@Sendable (JSONValue?, RequestContext) async throws -> JSONValue)
}

/// A JSON-RPC 2.0 server over a pair of file descriptors.
///
/// One reader thread parses frames; cheap handlers answer inline and their answers are batched until
/// the input is drained; other handlers run concurrently and answer when done (possibly out of order).
public final class RPCServer: Sendable {
    private let handlers: Mutex<[String: Handler]>
    private let notificationHandlers: Mutex<[String: @Sendable (JSONValue?) -> Void]>
    private let inFlight = Mutex<[JSONValue: InFlight]>([:])
    /// Requests this server sent to the peer, waiting for their answers.
    private let outgoing = Mutex<(next: Int, waiting: [JSONValue: CheckedContinuation<Result<JSONValue, RPCError>, Never>])>((1, [:]))
    public let sink: OutputSink
    private let inputFD: Int32
    public let maxFrameBytes: Int
    public let logger: Logger

    struct InFlight {
        var task: Task<Void, Never>?
        /// How to answer once cancelled: nil = answer normally, `true` = -32800, `false` = no answer (MCP).
        var cancelAnswer: Bool?
    }

    /// - Parameters:
    ///   - input: the descriptor requests come from (stdin).
    ///   - output: the descriptor frames go to (a dup of the real stdout).
    ///   - maxFrameBytes: frames larger than this are refused with an error.
    public init(input: Int32, output: Int32, maxFrameBytes: Int = 64 << 20, logger: Logger = Logger()) {
        self.inputFD = input
        self.sink = OutputSink(fd: output)
        self.maxFrameBytes = maxFrameBytes
        self.logger = logger
        self.handlers = Mutex([:])
        self.notificationHandlers = Mutex([:])
        register("ping", .immediate { _ throws(RPCError) in .object([:]) })
        onNotification("$/cancelRequest") { [weak self] params in self?.cancel(params?["id"], answer: true) }
        onNotification("notifications/cancelled") { [weak self] params in self?.cancel(params?["requestId"], answer: false) }
    }

    /// Registers (or replaces) the handler of `method`.
    public func register(_ method: String, _ handler: Handler) {
        handlers.withLock { $0[method] = handler }
    }

    /// Registers what to do when the notification `method` arrives.
    public func onNotification(_ method: String, _ body: @escaping @Sendable (JSONValue?) -> Void) {
        notificationHandlers.withLock { $0[method] = body }
    }

    /// The names of all registered methods.
    public var methods: [String] { handlers.withLock { Array($0.keys) }.sorted() }

    // MARK: - Serving

    /// Reads and answers frames until the input ends, then cancels in-flight work and waits for it
    /// up to `drainTimeout` so that it can persist its state.
    public func run(drainTimeout: Duration = .milliseconds(800)) async {
        let done = ReaderDone()
        let box = Unmanaged.passRetained(ReaderBox(server: self, done: done))
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<ReaderBox>.fromOpaque(raw!).takeRetainedValue()
            box.server.readLoop()
            box.done.signal()
            return nil
        }, box.toOpaque())
        if rc != 0 {
            box.release()
            logger.error("cannot start the reader thread", ["errno": .int(Int64(rc))])
            return
        }
        pthread_detach(thread)
        await done.wait()
        // The peer is gone: nobody will answer our own requests any more.
        let orphans = outgoing.withLock { s in defer { s.waiting = [:] }; return Array(s.waiting.values) }
        for w in orphans { w.resume(returning: .failure(RPCError(code: -32603, reason: "peer_gone", message: "the client closed the connection"))) }
        await shutdown(drainTimeout: drainTimeout)
    }

    /// Cancels in-flight requests and waits (bounded) for them to finish.
    public func shutdown(drainTimeout: Duration) async {
        let tasks = inFlight.withLock { m in m.values.compactMap(\.task) }
        for t in tasks { t.cancel() }
        let clock = ContinuousClock()
        let deadline = clock.now + drainTimeout
        while clock.now < deadline {
            if inFlight.withLock({ $0.isEmpty }) { break }
            try? await Task.sleep(for: .milliseconds(10))
        }
        sink.flush()
    }

    private func readLoop() {
        var reader = FrameReader(maxFrameBytes: maxFrameBytes)
        var framingSet = false
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
        defer { chunk.deallocate() }
        while true {
            let n = read(inputFD, chunk.baseAddress!, chunk.count)
            if n < 0 {
                if errno == EINTR { continue }
                logger.error("read failed", ["errno": .int(Int64(errno))])
                break
            }
            if n == 0 { break }
            reader.append(UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
            while let event = reader.next() {
                if !framingSet, let f = reader.framing {
                    sink.setFraming(f)
                    framingSet = true
                    logger.debug("framing detected", ["framing": .string(f.rawValue)])
                }
                switch event {
                case .frame(let range):
                    reader.buffer.withUnsafeBufferPointer { b in
                        handleFrame(UnsafeBufferPointer(rebasing: b[range]))
                    }
                case .tooLarge(let size):
                    logger.warning("frame too large", ["bytes": .int(Int64(size)), "max": .int(Int64(maxFrameBytes))])
                    sendError(
                        RPCError(
                            code: -32600, reason: "frame_too_large",
                            message: "Invalid Request: frame of \(size) bytes exceeds the limit of \(maxFrameBytes) bytes",
                            extra: ["max_frame_bytes": .int(Int64(maxFrameBytes))]), id: .null, flush: false)
                case .badHeader(let why):
                    sendError(.parseError(why), id: .null, flush: false)
                }
            }
            reader.compact()
            sink.flush()
        }
        if reader.hasPartialFrame {
            // The stream ended inside a frame: say so, as for any frame that cannot be parsed.
            sendError(.parseError("input ended inside a frame"), id: .null, flush: true)
        }
        sink.flush()
    }

    // MARK: - Dispatch

    private func handleFrame(_ bytes: UnsafeBufferPointer<UInt8>) {
        let top: JSONTopLevel
        do {
            top = try JSONValue.parseTopLevel(bytes)
        } catch {
            sendError(.parseError(error.description), id: .null, flush: false)
            return
        }
        switch top {
        case .members(let members):
            if !members.contains(where: { $0.key == "method" }),
                members.contains(where: { $0.key == "result" || $0.key == "error" })
            {
                // An answer to a request this server sent; never answered in turn.
                handleResponse(members)
                return
            }
            handleSingle(validate(members: members))
        case .value(.array(let items)):
            handleBatch(items)
        case .value(let other):
            handleSingle(validate(other))
        }
    }

    /// An envelope refused before dispatch, with the id to answer under.
    struct Rejection: Error {
        var error: RPCError
        var id: JSONValue
    }

    /// A request that passed validation.
    struct Call {
        var id: JSONValue?  // nil = notification
        var method: String
        var params: JSONValue?
    }

    /// Validates the envelope; returns the call or the error to answer (with the id when recoverable).
    func validate(_ v: JSONValue) -> Result<Call, Rejection> {
        guard case .object(let o) = v else {
            return .failure(Rejection(error: .invalidRequest("a request must be an object"), id: .null))
        }
        return validate(id: o["id"], jsonrpc: o["jsonrpc"], method: o["method"], params: o["params"])
    }

    /// Validates an envelope given as ordered members (the single-request fast path: no dictionary).
    func validate(members: [JSONMember]) -> Result<Call, Rejection> {
        var id: JSONValue?, jsonrpc: JSONValue?, method: JSONValue?, params: JSONValue?
        for m in members {
            switch m.key {
            case "id": id = m.value
            case "jsonrpc": jsonrpc = m.value
            case "method": method = m.value
            case "params": params = m.value
            default: break
            }
        }
        return validate(id: id, jsonrpc: jsonrpc, method: method, params: params)
    }

    func validate(id rawID: JSONValue?, jsonrpc: JSONValue?, method rawMethod: JSONValue?, params: JSONValue?) -> Result<Call, Rejection> {
        var id: JSONValue? = nil
        if let rawID {
            switch rawID {
            case .string, .int, .double, .null: id = rawID
            default: return .failure(Rejection(error: .invalidRequest("id must be a string, a number or null"), id: .null))
            }
        }
        let answerID = id ?? .null
        guard case .string("2.0")? = jsonrpc else {
            return .failure(Rejection(error: .invalidRequest("\"jsonrpc\" must be exactly \"2.0\""), id: answerID))
        }
        guard case .string(let method)? = rawMethod else {
            return .failure(Rejection(error: .invalidRequest("\"method\" must be a string"), id: answerID))
        }
        if let p = params {
            switch p {
            case .object, .array: break
            default: return .failure(Rejection(error: .invalidRequest("\"params\" must be an object or an array"), id: answerID))
            }
        }
        return .success(Call(id: id, method: method, params: params))
    }

    private func handleSingle(_ validated: Result<Call, Rejection>) {
        switch validated {
        case .failure(let r):
            sendError(r.error, id: r.id, flush: false)
        case .success(let call):
            if call.id == nil {
                runNotification(call)
                return
            }
            let handler = handlers.withLock { $0[call.method] }
            switch handler {
            case nil:
                sendError(.methodNotFound(call.method), id: call.id!, flush: false)
            case .immediate(let body)?:
                sink.send(Self.answer(id: call.id!, result: Result { () throws(RPCError) in try body(call.params) }), flush: false)
            case .task(let body)?:
                startTask(call, body)
            }
        }
    }

    private func runNotification(_ call: Call) {
        if let body = notificationHandlers.withLock({ $0[call.method] }) {
            body(call.params)
            return
        }
        // A notification for a request method: run it, never answer.
        switch handlers.withLock({ $0[call.method] }) {
        case .immediate(let body)?: _ = try? body(call.params)
        case .task(let body)?:
            let ctx = RequestContext(id: nil, method: call.method, progressToken: nil, sink: sink)
            Task { _ = try? await body(call.params, ctx) }
        case nil: break
        }
    }

    private func startTask(_ call: Call, _ body: @escaping @Sendable (JSONValue?, RequestContext) async throws -> JSONValue) {
        let id = call.id!
        let ctx = RequestContext(id: id, method: call.method, progressToken: call.params?["_meta"]?["progressToken"], sink: sink, server: self)
        let duplicate = inFlight.withLock { m -> Bool in
            if m[id] != nil { return true }
            m[id] = InFlight(task: nil, cancelAnswer: nil)
            return false
        }
        if duplicate {
            sendError(.invalidRequest("a request with id \(id.jsonString) is still in flight", reason: "duplicate_id"), id: id, flush: false)
            return
        }
        let task = Task { [self] in
            let result = await Self.invoke(body, call.params, ctx, logger: logger)
            let entry = inFlight.withLock { $0.removeValue(forKey: id) }
            switch entry?.cancelAnswer {
            case false?: return  // MCP cancellation: no answer
            case true?: sink.send(Self.answer(id: id, result: .failure(.requestCancelled)), flush: true)
            case nil: sink.send(Self.answer(id: id, result: result), flush: true)
            }
        }
        inFlight.withLock { m in
            if m[id] != nil { m[id]!.task = task }
        }
    }

    static func invoke(
        _ body: @Sendable (JSONValue?, RequestContext) async throws -> JSONValue, _ params: JSONValue?, _ ctx: RequestContext,
        logger: Logger
    ) async -> Result<JSONValue, RPCError> {
        do {
            return .success(try await body(params, ctx))
        } catch let e as RPCError {
            return .failure(e)
        } catch is CancellationError {
            return .failure(.requestCancelled)
        } catch {
            logger.error("handler failed", ["method": .string(ctx.method), "error": .string(String(describing: error))])
            return .failure(.internalError(String(describing: error)))
        }
    }

    private func handleBatch(_ items: [JSONValue]) {
        if items.isEmpty {
            sendError(.invalidRequest("an empty batch"), id: .null, flush: false)
            return
        }
        var needsTask = false
        var calls: [Result<Call, Rejection>] = []
        calls.reserveCapacity(items.count)
        for item in items {
            let c = validate(item)
            if case .success(let call) = c, call.id != nil, case .task? = handlers.withLock({ $0[call.method] }) {
                needsTask = true
            }
            calls.append(c)
        }
        if !needsTask {
            var answers: [JSONValue] = []
            for c in calls {
                switch c {
                case .failure(let r): answers.append(Self.answerValue(id: r.id, result: .failure(r.error)))
                case .success(let call):
                    if call.id == nil { runNotification(call); continue }
                    switch handlers.withLock({ $0[call.method] }) {
                    case .immediate(let body)?:
                        answers.append(Self.answerValue(id: call.id!, result: Result { () throws(RPCError) in try body(call.params) }))
                    default:
                        answers.append(Self.answerValue(id: call.id!, result: .failure(.methodNotFound(call.method))))
                    }
                }
            }
            if !answers.isEmpty { sink.send(JSONValue.array(answers).jsonBytes, flush: false) }
            return
        }
        let handlersNow = handlers.withLock { $0 }
        let sink = self.sink
        let logger = self.logger
        for case .success(let call) in calls where call.id == nil { runNotification(call) }
        Task {
            let answers = await withTaskGroup(of: (Int, JSONValue?).self) { group in
                for (k, c) in calls.enumerated() {
                    group.addTask {
                        switch c {
                        case .failure(let r): return (k, Self.answerValue(id: r.id, result: .failure(r.error)))
                        case .success(let call):
                            guard let id = call.id else { return (k, nil) }
                            switch handlersNow[call.method] {
                            case nil: return (k, Self.answerValue(id: id, result: .failure(.methodNotFound(call.method))))
                            case .immediate(let body)?:
                                return (k, Self.answerValue(id: id, result: Result { () throws(RPCError) in try body(call.params) }))
                            case .task(let body)?:
                                let ctx = RequestContext(id: id, method: call.method, progressToken: call.params?["_meta"]?["progressToken"], sink: sink, server: self)
                                return (k, Self.answerValue(id: id, result: await Self.invoke(body, call.params, ctx, logger: logger)))
                            }
                        }
                    }
                }
                var out: [(Int, JSONValue)] = []
                for await (k, a) in group { if let a { out.append((k, a)) } }
                return out.sorted { $0.0 < $1.0 }.map(\.1)
            }
            if !answers.isEmpty { sink.send(JSONValue.array(answers).jsonBytes, flush: true) }
        }
    }

    func handleResponse(_ members: [JSONMember]) {
        var id: JSONValue = .null, result: JSONValue?, error: JSONValue?
        for m in members {
            switch m.key {
            case "id": id = m.value
            case "result": result = m.value
            case "error": error = m.value
            default: break
            }
        }
        let waiter = outgoing.withLock { $0.waiting.removeValue(forKey: id) }
        guard let waiter else {
            logger.warning("an answer to no request of ours was ignored", ["id": id])
            return
        }
        if let result {
            waiter.resume(returning: .success(result))
        } else {
            let code = Int(error?["code"]?.intValue ?? -32603)
            waiter.resume(returning: .failure(RPCError(code: code, message: error?["message"]?.stringValue ?? "error", data: error?["data"])))
        }
    }

    /// Sends a request to the peer and waits for its answer (or `timeout`, or cancellation).
    public func sendRequest(_ method: String, _ params: JSONValue, timeout: Duration) async throws(RPCError) -> JSONValue {
        let id: JSONValue = .string("model-deployer-\(outgoing.withLock { s -> Int in defer { s.next += 1 }; return s.next })")
        let timer = Task { [self] in
            try? await Task.sleep(for: timeout)
            let w = outgoing.withLock { $0.waiting.removeValue(forKey: id) }
            w?.resume(returning: .failure(RPCError(code: -32603, reason: "peer_timeout", message: "no answer to \(method) within \(timeout)")))
        }
        defer { timer.cancel() }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Result<JSONValue, RPCError>, Never>) in
                outgoing.withLock { $0.waiting[id] = c }
                let frame: JSONValue = ["jsonrpc": "2.0", "id": id, "method": .string(method), "params": params]
                sink.send(frame.jsonBytes, flush: true)
            }
        } onCancel: {
            let w = outgoing.withLock { $0.waiting.removeValue(forKey: id) }
            w?.resume(returning: .failure(.requestCancelled))
        }
        return try result.get()
    }

    /// Cancels the in-flight request `id`. Unknown ids are ignored, as the specifications ask.
    public func cancel(_ id: JSONValue?, answer: Bool) {
        guard let id else { return }
        let task = inFlight.withLock { m -> Task<Void, Never>? in
            guard m[id] != nil else { return nil }
            m[id]!.cancelAnswer = answer
            return m[id]!.task
        }
        task?.cancel()
    }

    // MARK: - Encoding

    private func sendError(_ e: RPCError, id: JSONValue, flush: Bool) {
        sink.send(Self.answer(id: id, result: .failure(e)), flush: flush)
    }

    /// The bytes of a response. Written by hand: this is the hot path of every request.
    static func answer(id: JSONValue, result: Result<JSONValue, RPCError>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        out.append(contentsOf: #"{"jsonrpc":"2.0","id":"#.utf8)
        id.write(to: &out)
        switch result {
        case .success(let v):
            out.append(contentsOf: #","result":"#.utf8)
            v.write(to: &out)
        case .failure(let e):
            out.append(contentsOf: #","error":"#.utf8)
            e.json.write(to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    static func answerValue(id: JSONValue, result: Result<JSONValue, RPCError>) -> JSONValue {
        switch result {
        case .success(let v): return .object(["jsonrpc": "2.0", "id": id, "result": v])
        case .failure(let e): return .object(["jsonrpc": "2.0", "id": id, "error": e.json])
        }
    }

    /// The bytes of a notification.
    public static func notificationBytes(method: String, params: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        out.append(contentsOf: #"{"jsonrpc":"2.0","method":"#.utf8)
        JSONValue.writeString(method, to: &out)
        out.append(contentsOf: #","params":"#.utf8)
        params.write(to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }
}

private final class ReaderBox {
    let server: RPCServer
    let done: ReaderDone
    init(server: RPCServer, done: ReaderDone) {
        self.server = server
        self.done = done
    }
}

/// A one-shot signal from the reader thread to the async world.
final class ReaderDone: Sendable {
    private let state = Mutex<(done: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func signal() {
        let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.done = true
            defer { s.waiter = nil }
            return s.waiter
        }
        w?.resume()
    }

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if s.done { return true }
                s.waiter = c
                return false
            }
            if resumeNow { c.resume() }
        }
    }
}
