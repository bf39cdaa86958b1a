import Glibc
import Synchronization

/// One HTTP/1.1 client connection kept open across requests (`Connection: keep-alive`), blocking, for
/// measuring what a long-lived client sees while the router's weights change. A failed request is reported,
/// never retried: the point is to count what a real client would have lost.
public final class KeepAliveHTTPConnection {
    /// Port on 127.0.0.1.
    public let port: Int
    /// TCP connections opened so far (1 when every request reused the first one).
    public private(set) var connects = 0
    private var fd: Int32 = -1

    /// A connection to 127.0.0.1:`port`, opened at the first request.
    public init(port: Int) { self.port = port }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    /// Closes the connection; the next request opens a new one.
    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Sends one request on the kept connection (opening it when needed) and reads the whole response.
    /// - Throws: `connection_refused`, `http_timeout`, `http_failed`; the connection is closed after any error.
    public func request(method: String = "POST", path: String, body: [UInt8] = [],
                        timeoutMs: Int = 10_000) throws(RuntimeError) -> HTTPResponse {
        do {
            return try send(method: method, path: path, body: body, timeoutMs: timeoutMs)
        } catch {
            close()
            throw error
        }
    }

    private func send(method: String, path: String, body: [UInt8], timeoutMs: Int) throws(RuntimeError) -> HTTPResponse {
        let start = monotonicMs()
        let deadline = start + Double(timeoutMs)
        if fd < 0 { try open(deadline: deadline) }
        var out = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
        out += body
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw RuntimeError(code: "http_failed", message: "send: \(errnoString())")
        }
        var parser = ResponseParser(isHead: method == "HEAD")
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            if let done = try parser.finished() {
                if done.headers["connection"]?.lowercased() == "close" { close() }
                return HTTPResponse(status: done.status, headers: done.headers, body: done.body, latencyMs: monotonicMs() - start)
            }
            let remaining = deadline - monotonicMs()
            if remaining <= 0 { throw RuntimeError(code: "http_timeout", message: "no complete response within \(timeoutMs) ms") }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let pr = poll(&pfd, 1, Int32(max(1, remaining.rounded(.up))))
            if pr < 0 && errno != EINTR { throw RuntimeError(code: "http_failed", message: "poll: \(errnoString())") }
            if pr <= 0 { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { parser.append(buf[0..<n]); continue }
            if n == 0 {
                if let done = try parser.finishedAtEOF() {
                    close()
                    return HTTPResponse(status: done.status, headers: done.headers, body: done.body, latencyMs: monotonicMs() - start)
                }
                throw RuntimeError(code: "http_failed", message: "connection closed before a complete response (\(parser.received) bytes)")
            }
            if errno == EINTR || errno == EAGAIN { continue }
            throw RuntimeError(code: "http_failed", message: errno == ECONNRESET ? "connection reset by peer" : "recv: \(errnoString())")
        }
    }

    private func open(deadline: Double) throws(RuntimeError) {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw RuntimeError(code: "http_failed", message: "socket: \(errnoString())") }
        var one: Int32 = 1
        setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port)).bigEndian
        addr.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(s)
            if e == ECONNREFUSED { throw RuntimeError(code: "connection_refused", message: "connection refused on port \(port)") }
            throw RuntimeError(code: "http_failed", message: "connect: \(errnoString(e))")
        }
        fd = s
        connects += 1
    }
}

/// What a `KeepAliveLoad` saw.
public struct KeepAliveLoadResult: Sendable, Hashable {
    /// Requests sent.
    public var requests = 0
    /// Requests without a 2xx answer (transport errors included).
    public var failures = 0
    /// Failure reasons (`HTTP <status>` or an error code) with counts.
    public var errors: [String: Int] = [:]
    /// 2xx answers per `X-Model-Deployer-Slot` value.
    public var slots: [String: Int] = [:]
    /// TCP connections opened by all clients together (= clients when keep-alive held throughout).
    public var connects = 0

    /// Creates an empty result.
    public init() {}

    /// The counts added since `earlier` (a snapshot of the same load).
    public func subtracting(_ earlier: KeepAliveLoadResult) -> KeepAliveLoadResult {
        var d = KeepAliveLoadResult()
        d.requests = requests - earlier.requests
        d.failures = failures - earlier.failures
        d.connects = connects - earlier.connects
        d.errors = errors.merging(earlier.errors.mapValues { -$0 }, uniquingKeysWith: +).filter { $0.value != 0 }
        d.slots = slots.merging(earlier.slots.mapValues { -$0 }, uniquingKeysWith: +).filter { $0.value != 0 }
        return d
    }

    /// Share of 2xx answers served by `slot`, in percent (0 when there were none).
    public func sharePercent(_ slot: String) -> Double {
        let total = slots.values.reduce(0, +)
        return total == 0 ? 0 : Double(slots[slot, default: 0]) * 100 / Double(total)
    }
}

/// A steady load of `clients` threads, each sending POSTs back to back on its own keep-alive connection,
/// until `stop()`. Threads of its own, so the load never competes with the caller's tasks for the
/// cooperative pool.
public final class KeepAliveLoad: Sendable {
    private let state = Mutex<KeepAliveLoadResult>(KeepAliveLoadResult())
    private let stopFlag = Atomic<Bool>(false)
    private let running = Atomic<Int>(0)

    /// Starts the clients against 127.0.0.1:`port`.
    public init(port: Int, clients: Int, path: String = "/predict", body: [UInt8] = Array("{}".utf8)) {
        for _ in 0..<max(1, clients) {
            running.add(1, ordering: .relaxed)
            let job = LoadJob { [self] in
                let conn = KeepAliveHTTPConnection(port: port)
                while !stopFlag.load(ordering: .relaxed) {
                    var failure: String?
                    var slot: String?
                    do throws(RuntimeError) {
                        let r = try conn.request(path: path, body: body)
                        if r.isSuccess { slot = r.headers["x-model-deployer-slot"] ?? "-" } else { failure = "HTTP \(r.status)" }
                    } catch {
                        failure = error.code
                    }
                    state.withLock { s in
                        s.requests += 1
                        if let failure { s.failures += 1; s.errors[failure, default: 0] += 1 }
                        if let slot { s.slots[slot, default: 0] += 1 }
                    }
                }
                let connects = conn.connects
                state.withLock { $0.connects += connects }
                running.subtract(1, ordering: .relaxed)
            }
            let raw = Unmanaged.passRetained(job).toOpaque()
            var tid = pthread_t()
            if pthread_create(&tid, nil, { ctx in
                Unmanaged<LoadJob>.fromOpaque(ctx!).takeRetainedValue().body()
                return nil
            }, raw) == 0 {
                pthread_detach(tid)
            } else {
                Unmanaged<LoadJob>.fromOpaque(raw).release()
                running.subtract(1, ordering: .relaxed)
            }
        }
    }

    /// Counts so far (`connects` is only added when the clients stop).
    public func snapshot() -> KeepAliveLoadResult { state.withLock { $0 } }

    /// Waits until at least `count` more requests were answered than in `after`, or `timeoutMs` passed.
    public func waitForRequests(_ count: Int, after: KeepAliveLoadResult, timeoutMs: Int = 30_000) async {
        let deadline = monotonicMs() + Double(timeoutMs)
        while snapshot().requests - after.requests < count && monotonicMs() < deadline { await pause(milliseconds: 5) }
    }

    /// Stops the clients after their request in flight and returns the totals.
    public func stop() async -> KeepAliveLoadResult {
        stopFlag.store(true, ordering: .relaxed)
        let deadline = monotonicMs() + 15_000
        while running.load(ordering: .relaxed) > 0 && monotonicMs() < deadline { await pause(milliseconds: 5) }
        return snapshot()
    }

    private final class LoadJob: @unchecked Sendable {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
}
