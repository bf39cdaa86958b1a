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
    private let inFlight = Mutex(InFlightTable())
    /// Requests this server sent to the peer, waiting for their answers.
    private let outgoing = Mutex<(next: Int, waiting: [JSONValue: CheckedContinuation<Result<JSONValue, RPCError>, Never>])>((1, [:]))
    public let sink: OutputSink
    private let inputFD: Int32
    public let maxFrameBytes: Int
    /// Batches with more elements are refused whole (-32600, reason `batch_too_large`).
    public let maxBatchSize: Int
    public let logger: Logger

    /// The default of `maxBatchSize`. A batch holds every element's answer until the last one is done;
    /// 10,000 small requests cost a few MB, while the unbounded 400,000 measured before peaked at 3 GB.
    public static let defaultMaxBatchSize = 10_000

    struct InFlight {
        var task: Task<Void, Never>?
        /// How to answer once cancelled: nil = answer normally, `true` = -32800, `false` = no answer (MCP).
        var cancelAnswer: Bool?
    }

    /// Every task this server started and has not seen finish, so that cancellation can reach it and
    /// shutdown can wait for it: requests by id (batch elements included), and the work of notifications
    /// that name a request method (no id, so keyed by a counter).
    struct InFlightTable {
        var requests: [WireID: InFlight] = [:]
        var anonymous: [UInt64: Task<Void, Never>?] = [:]
        var nextAnonymous: UInt64 = 0
        /// Large frames being parsed off the reader thread.
        var parsing = 0
        /// Cancellations that named no known request while large frames were being parsed: the request
        /// may be in one of them, and is cancelled as soon as it starts (`true` = answer -32800).
        var earlyCancels: [JSONValue: Bool] = [:]
        var isEmpty: Bool { requests.isEmpty && anonymous.isEmpty && parsing == 0 }
    }

    /// Frames at least this large are parsed on a thread of their own, so that the reader goes on and a
    /// `ping` (or any request) behind a 20 MB plan is answered at once, not after its parse.
    public static let offThreadFrameBytes = 1 << 20

    /// - Parameters:
    ///   - input: the descriptor requests come from (stdin).
    ///   - output: the descriptor frames go to (a dup of the real stdout).
    ///   - maxFrameBytes: frames larger than this are refused with an error.
    ///   - maxBatchSize: batches with more elements are refused whole.
    public init(
        input: Int32, output: Int32, maxFrameBytes: Int = 64 << 20, maxBatchSize: Int = RPCServer.defaultMaxBatchSize,
        logger: Logger = Logger()
    ) {
        self.inputFD = input
        self.sink = OutputSink(fd: output)
        self.maxFrameBytes = maxFrameBytes
        self.maxBatchSize = maxBatchSize
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

    /// Cancels in-flight work (requests, batch elements, notifications' work) and waits (bounded) for it to finish.
    public func shutdown(drainTimeout: Duration) async {
        let tasks = inFlight.withLock { t in t.requests.values.compactMap(\.task) + t.anonymous.values.compactMap { $0 } }
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
        var bigFrame = false
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
            while true {
                let event = reader.next()
                // Before any answer, and also when the first read holds no whole frame: an error at EOF
                // must use the stream's framing too.
                if !framingSet, let f = reader.framing {
                    sink.setFraming(f)
                    framingSet = true
                    logger.debug("framing detected", ["framing": .string(f.rawValue)])
                }
                guard let event else { break }
                switch event {
                case .frame(let range) where range.count >= Self.offThreadFrameBytes:
                    handleOffThread(Array(reader.buffer[range]))
                    bigFrame = true
                case .frame(let range):
                    reader.buffer.withUnsafeBufferPointer { b in
                        handleFrame(UnsafeBufferPointer(rebasing: b[range]))
                    }
                    if range.count > FrameReader.keepCapacity { bigFrame = true }
                case .tooLarge(let size):
                    logger.warning("frame too large", ["bytes": .int(Int64(size)), "max": .int(Int64(maxFrameBytes))])
                    sendError(
                        RPCError(
                            code: -32600, reason: "frame_too_large",
                            message: "Invalid Request: frame of \(size) bytes exceeds the limit of \(maxFrameBytes) bytes",
                            extra: ["max_frame_bytes": .int(Int64(maxFrameBytes))]), id: .null, flush: false)
                case .badHeader(let why):
                    logger.warning("bad frame header skipped", ["why": .string(why)])
                    sendError(.parseError(why), id: .null, flush: false)
                }
            }
            reader.compact()
            sink.flush()
            if bigFrame {
                bigFrame = false
                releaseFreedMemory()
            }
        }
        if reader.hasPartialFrame {
            // The stream ended inside a frame: say so, as for any frame that cannot be parsed.
            sendError(.parseError("input ended inside a frame"), id: .null, flush: true)
        }
        // Frames still being parsed were read before the end: they are served like the others.
        while inFlight.withLock({ $0.parsing > 0 }) { usleep(1000) }
        sink.flush()
    }

    /// Parses and dispatches a large frame on a thread of its own (the reader goes on with the next one).
    /// Its answer may come after those of later frames, which JSON-RPC allows.
    private func handleOffThread(_ bytes: [UInt8]) {
        inFlight.withLock { $0.parsing += 1 }
        let job = OffThreadFrame(server: self, bytes: bytes)
        let raw = Unmanaged.passRetained(job).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<OffThreadFrame>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, raw)
        if rc == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<OffThreadFrame>.fromOpaque(raw).takeRetainedValue().run()  // no thread to be had: inline
        }
    }

    fileprivate func finishOffThread(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { handleFrame($0) }
        sink.flush()
        inFlight.withLock { t in
            t.parsing -= 1
            if t.parsing == 0 { t.earlyCancels = [:] }
        }
        releaseFreedMemory()
    }

    // MARK: - Dispatch

    private func handleFrame(_ bytes: UnsafeBufferPointer<UInt8>) {
        let top: JSONTopLevel
        do {
            top = try JSONValue.parseTopLevel(bytes, maxElements: maxBatchSize)
        } catch {
            sendError(.parseError(error.description), id: .null, flush: false)
            return
        }
        switch top {
        case .members(let members, let idText):
            if !members.contains(where: { $0.key == "method" }),
                members.contains(where: { $0.key == "result" || $0.key == "error" })
            {
                // An answer to a request this server sent; never answered in turn.
                handleResponse(members)
                return
            }
            handleSingle(validate(members: members, idText: idText))
        case .elements(let items):
            handleBatch(items)
        case .tooManyElements:
            sendError(.batchTooLarge(max: maxBatchSize), id: .null, flush: false)
        case .value(let other):
            handleSingle(validate(other))
        }
    }

    /// An envelope refused before dispatch, with the id to answer under.
    struct Rejection: Error {
        var error: RPCError
        var id: WireID
    }

    /// A request that passed validation.
    struct Call {
        var id: WireID?  // nil = notification
        var method: String
        var params: JSONValue?
    }

    /// Validates the envelope; returns the call or the error to answer (with the id when recoverable).
    func validate(_ v: JSONValue) -> Result<Call, Rejection> {
        guard case .object(let o) = v else {
            return .failure(Rejection(error: .invalidRequest("a request must be an object"), id: .null))
        }
        return validate(id: o["id"], idText: nil, jsonrpc: o["jsonrpc"], method: o["method"], params: o["params"])
    }

    /// Validates an envelope given as ordered members (the single-request fast path: no dictionary).
    func validate(members: [JSONMember], idText: String?) -> Result<Call, Rejection> {
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
        return validate(id: id, idText: idText, jsonrpc: jsonrpc, method: method, params: params)
    }

    func validate(
        id idValue: JSONValue?, idText: String?, jsonrpc: JSONValue?, method rawMethod: JSONValue?, params: JSONValue?
    ) -> Result<Call, Rejection> {
        var id: WireID? = nil
        if let idValue {
            switch idValue {
            case .string, .int, .double, .null:
                if let idText { id = WireID(numberText: idText) } else { id = WireID(idValue) }
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
                let sink = self.sink
                startTask(call, body) { bytes in if let bytes { sink.send(bytes, flush: true) } }
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
        case .immediate(let body)?: _ = try? body(call.params)  // nobody to tell about a failure
        case .task(let body)?:
            let ctx = RequestContext(id: nil, method: call.method, progressToken: nil, sink: sink)
            // Tracked like a request, so that shutdown cancels it and waits for it to persist its state.
            let token = inFlight.withLock { t -> UInt64 in
                defer { t.nextAnonymous &+= 1 }
                t.anonymous[t.nextAnonymous] = .some(nil)
                return t.nextAnonymous
            }
            let task = Task { [self] in
                _ = try? await body(call.params, ctx)  // a notification's outcome has no one to go to
                _ = inFlight.withLock { $0.anonymous.removeValue(forKey: token) }
            }
            inFlight.withLock { t in
                if t.anonymous[token] != nil { t.anonymous[token] = task }
            }
        case nil: break
        }
    }

    /// Runs a task handler as its own tracked task; `deliver` gets the answer's bytes, or nil when the
    /// peer cancelled with MCP `notifications/cancelled` (which is never answered).
    private func startTask(
        _ call: Call, _ body: @escaping @Sendable (JSONValue?, RequestContext) async throws -> JSONValue,
        deliver: @escaping @Sendable ([UInt8]?) -> Void
    ) {
        let id = call.id!
        let ctx = RequestContext(id: id.jsonValue, method: call.method, progressToken: call.params?["_meta"]?["progressToken"], sink: sink, server: self)
        let (duplicate, cancelledEarly) = inFlight.withLock { t -> (Bool, Bool?) in
            if t.requests[id] != nil { return (true, nil) }
            let early = t.earlyCancels.removeValue(forKey: id.jsonValue)
            t.requests[id] = InFlight(task: nil, cancelAnswer: early)
            return (false, early)
        }
        if duplicate {
            deliver(Self.answer(id: id, result: .failure(.invalidRequest("a request with id \(id.text) is still in flight", reason: "duplicate_id"))))
            return
        }
        let task = Task { [self] in
            let result = await Self.invoke(body, call.params, ctx, logger: logger)
            let entry = inFlight.withLock { $0.requests.removeValue(forKey: id) }
            switch entry?.cancelAnswer {
            case false?: deliver(nil)  // MCP cancellation: no answer
            case true?: deliver(Self.answer(id: id, result: .failure(.requestCancelled)))
            case nil: deliver(Self.answer(id: id, result: result))
            }
        }
        inFlight.withLock { t in
            if t.requests[id] != nil { t.requests[id]!.task = task }
        }
        if cancelledEarly != nil { task.cancel() }
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

    /// Answers a batch as one array once every element is answered. Each element that runs as a task is
    /// tracked by its id like a single request (cancellable, drained at shutdown); answers are kept as
    /// their encoded bytes, not as JSON values, which is what a large batch mostly costs.
    private func handleBatch(_ items: [JSONTopLevel]) {
        if items.isEmpty {
            sendError(.invalidRequest("an empty batch"), id: .null, flush: false)
            return
        }
        let collector = BatchCollector(count: items.count, sink: sink)
        for (k, item) in items.enumerated() {
            let validated: Result<Call, Rejection>
            switch item {
            case .members(let members, let idText): validated = validate(members: members, idText: idText)
            case .value(let v): validated = validate(v)
            case .elements, .tooManyElements: validated = .failure(Rejection(error: .invalidRequest("a request must be an object"), id: .null))
            }
            switch validated {
            case .failure(let r):
                collector.fill(k, Self.answer(id: r.id, result: .failure(r.error)))
            case .success(let call):
                guard let id = call.id else {
                    runNotification(call)
                    collector.fill(k, nil)
                    continue
                }
                switch handlers.withLock({ $0[call.method] }) {
                case nil:
                    collector.fill(k, Self.answer(id: id, result: .failure(.methodNotFound(call.method))))
                case .immediate(let body)?:
                    collector.fill(k, Self.answer(id: id, result: Result { () throws(RPCError) in try body(call.params) }))
                case .task(let body)?:
                    startTask(call, body) { bytes in collector.fill(k, bytes) }
                }
            }
        }
        collector.dispatched()
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
        let task = inFlight.withLock { t -> Task<Void, Never>? in
            // The cancel notification's own params lost the id's text; match by value when the text differs.
            var key = WireID(id)
            if t.requests[key] == nil, let same = t.requests.keys.first(where: { $0.matches(id) }) { key = same }
            guard t.requests[key] != nil else {
                // Maybe in a large frame still being parsed: remember it (bounded) for when it starts.
                if t.parsing > 0, t.earlyCancels.count < 10_000 { t.earlyCancels[id] = answer }
                return nil
            }
            t.requests[key]!.cancelAnswer = answer
            return t.requests[key]!.task
        }
        task?.cancel()
    }

    // MARK: - Encoding

    private func sendError(_ e: RPCError, id: WireID, flush: Bool) {
        sink.send(Self.answer(id: id, result: .failure(e)), flush: flush)
    }

    /// The bytes of a response. Written by hand: this is the hot path of every request.
    static func answer(id: WireID, result: Result<JSONValue, RPCError>) -> [UInt8] {
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

/// A large frame handed to a thread of its own.
private final class OffThreadFrame {
    let server: RPCServer
    let bytes: [UInt8]
    init(server: RPCServer, bytes: [UInt8]) {
        self.server = server
        self.bytes = bytes
    }
    func run() { server.finishOffThread(bytes) }
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
