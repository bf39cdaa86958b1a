import Glibc
import Synchronization

/// The HAProxy runtime API over its UNIX stats socket: one connection per command (non-interactive mode,
/// HAProxy answers and closes), blocking, with a deadline.
enum HAProxySocket {
    /// Sends `command` and returns HAProxy's whole answer.
    /// - Throws: `haproxy_failed` when the socket cannot be reached or does not answer within `timeoutMs`.
    static func send(_ path: String, _ command: String, timeoutMs: Double = 5000) throws(RuntimeError) -> String {
        func fail(_ m: String) -> RuntimeError { RuntimeError(code: "haproxy_failed", message: "runtime API \(path): \(m)") }
        guard !command.utf8.contains(where: { $0 == 10 || $0 == 13 || $0 == 0 || $0 == UInt8(ascii: ";") }) else {
            throw fail("refusing a command with a line break or ';'")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw fail("socket: \(errnoString())") }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw fail("socket path too long") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw fail("connect: \(errnoString())") }
        var tv = timeval(tv_sec: Int(timeoutMs / 1000), tv_usec: Int(timeoutMs.truncatingRemainder(dividingBy: 1000) * 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let line = Array((command + "\n").utf8)
        var sent = 0
        while sent < line.count {
            let n = line.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if errno == EINTR { continue }; throw fail("send: \(errnoString())") }
            sent += n
        }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        let deadline = monotonicMs() + timeoutMs
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { out.append(contentsOf: buf[0..<n]); continue }
            if n == 0 { break }
            if errno == EINTR && monotonicMs() < deadline { continue }
            throw fail(errno == EAGAIN ? "no answer to '\(command)' within \(Int(timeoutMs)) ms" : "recv: \(errnoString())")
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Runs a command whose success HAProxy signals with an empty answer or one of `okAnswers`.
    /// - Throws: `haproxy_failed` with HAProxy's own words otherwise.
    static func expect(_ path: String, _ command: String, okAnswers: [String] = []) throws(RuntimeError) {
        let answer = try send(path, command).trimmingSpaces
        guard answer.isEmpty || okAnswers.contains(answer) else {
            throw RuntimeError(code: "haproxy_failed", message: "'\(command)' was refused: \(answer)")
        }
    }
}

/// Parsers for the runtime API's tabular answers.
enum HAProxyParse {
    /// `show servers state <backend>`: the servers of `backend`.
    static func serversState(_ text: String, backend: String) -> [HAProxyServerState] {
        var header: [String] = []
        var out: [HAProxyServerState] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# ") {
                header = line.dropFirst(2).split(separator: " ").map(String.init)
                continue
            }
            guard !header.isEmpty else { continue }
            let f = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            func v(_ k: String) -> String? { header.firstIndex(of: k).flatMap { $0 < f.count ? f[$0] : nil } }
            guard v("be_name") == backend, let name = v("srv_name"), let port = v("srv_port").flatMap({ Int($0) }),
                  let weight = v("srv_uweight").flatMap({ Int($0) }),
                  let admin = v("srv_admin_state").flatMap({ Int($0) }) else { continue }
            // Any maintenance (forced, inherited, config, resolution, hostname) or drain bit takes it out.
            out.append(HAProxyServerState(name: name, port: port, weight: weight, enabled: admin & 0x7f == 0))
        }
        return out
    }

    /// `show stat` (CSV with a `# pxname,svname,...` header): one dictionary per server row of `backend`.
    static func statRows(_ text: String, backend: String) -> [[String: String]] {
        var header: [String] = []
        var rows: [[String: String]] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# ") {
                header = line.dropFirst(2).split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                continue
            }
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard !header.isEmpty, f.count >= 2, f[0] == backend, f[1] != "BACKEND", f[1] != "FRONTEND" else { continue }
            var row: [String: String] = [:]
            for (i, k) in header.enumerated() where i < f.count { row[k] = f[i] }
            rows.append(row)
        }
        return rows
    }
}

/// Per-server traffic facts of one route, from the router on real traffic.
///
/// Counters (`requests`, `selections`, `responses*`, errors, retries) come from HAProxy's `show stat` and
/// count since the endpoint's HAProxy process `routerPid` started: they restart from 0 when that process is
/// restarted (repair, or the endpoint moved to another port), so compare two snapshots only when their
/// `routerPid` is the same. `averageResponseMs` and `averageTotalMs` are HAProxy's averages over the
/// server's last 1,024 requests. `p95Ms` is computed by the agent from HAProxy's request log (one datagram
/// per request to a loopback UDP port, recorded in `router/log.port`, read by the agent while it runs; the last
/// 8,192 requests per server are kept), over the requests that ended in the window asked for.
public struct TrafficStats: Sendable, Hashable {
    /// Server (slot) name.
    public var backend: String
    /// Version label of the server, from the router's state.
    public var version: String?
    /// The weight HAProxy uses now.
    public var weight: Int
    /// `false` while in maintenance (disabled / not yet enabled / draining).
    public var enabled: Bool
    /// HTTP requests sent to this server (`req_tot`).
    public var requests: Int
    /// Times the load balancer chose this server (`lbtot`); above `requests` when connection attempts
    /// failed and were retried elsewhere.
    public var selections: Int
    /// Retries of a request on this server after a failed attempt (`wretr`), and requests moved from it to
    /// another server (`wredis`): failures the client did not see.
    public var retries: Int
    /// See `retries`.
    public var redispatches: Int
    /// Responses with a 2xx status (`hrsp_2xx`).
    public var responses2xx: Int
    /// Responses with a 4xx status (`hrsp_4xx`).
    public var responses4xx: Int
    /// Responses with a 5xx status (`hrsp_5xx`), including those HAProxy made up for this server.
    public var responses5xx: Int
    /// Failed connection attempts to the server (`econ`).
    public var connectionErrors: Int
    /// Responses aborted or broken on the server side (`eresp`).
    public var responseErrors: Int
    /// Requests in flight on the server now (`scur`).
    public var currentSessions: Int
    /// Average time to the response headers over the last 1,024 requests (`rtime`), ms.
    public var averageResponseMs: Int
    /// Average total session time over the last 1,024 requests (`ttime`), ms.
    public var averageTotalMs: Int
    /// 95th percentile of the request log's `Ta` (request received to response sent) in the window, ms;
    /// nil when the window holds no logged request.
    public var p95Ms: Double?
    /// Logged requests in the window (what `p95Ms` was computed from).
    public var windowRequests: Int
    /// Logged 5xx answers in the window.
    public var window5xx: Int
    /// The HAProxy process whose counters these are.
    public var routerPid: Int32

    /// Creates a stats value.
    public init(backend: String, version: String?, weight: Int, enabled: Bool, requests: Int, selections: Int,
                retries: Int, redispatches: Int, responses2xx: Int,
                responses4xx: Int, responses5xx: Int, connectionErrors: Int, responseErrors: Int, currentSessions: Int,
                averageResponseMs: Int, averageTotalMs: Int, p95Ms: Double?, windowRequests: Int, window5xx: Int,
                routerPid: Int32) {
        self.backend = backend
        self.version = version
        self.weight = weight
        self.enabled = enabled
        self.requests = requests
        self.selections = selections
        self.retries = retries
        self.redispatches = redispatches
        self.responses2xx = responses2xx
        self.responses4xx = responses4xx
        self.responses5xx = responses5xx
        self.connectionErrors = connectionErrors
        self.responseErrors = responseErrors
        self.currentSessions = currentSessions
        self.averageResponseMs = averageResponseMs
        self.averageTotalMs = averageTotalMs
        self.p95Ms = p95Ms
        self.windowRequests = windowRequests
        self.window5xx = window5xx
        self.routerPid = routerPid
    }
}

/// Reads HAProxy's request log from a loopback UDP port (`log 127.0.0.1:<port> format raw`, log-format
/// `%b %s %ST %Ta`) on its own thread and keeps the last `capacity` requests per (backend, server), so
/// percentiles over a recent window cost no file I/O. UDP rather than a UNIX datagram socket: a UNIX
/// datagram receiver queues at most `net.unix.max_dgram_qlen` messages (10 here), so lines were lost
/// whenever the reader thread waited for a core; a UDP socket queues up to its 4 MiB receive buffer.
/// While no collector runs HAProxy's datagrams are dropped by the kernel; HAProxy never blocks on them.
final class HAProxyLogCollector: @unchecked Sendable {
    struct Sample { var atMs: Double; var status: Int; var totalMs: Int }

    /// The last `capacity` samples of one server, overwritten in place once full.
    struct Ring {
        var items: [Sample] = []
        var next = 0
        mutating func append(_ s: Sample, capacity: Int) {
            if items.count < capacity { items.append(s) } else { items[next] = s }
            next = (next + 1) % capacity
        }
    }

    /// The UDP port on 127.0.0.1 the collector listens on.
    let port: Int
    let capacity: Int
    private let samples = Mutex<[String: Ring]>([:])
    private let stopped = Atomic<Bool>(false)
    private let fd: Int32

    /// Binds 127.0.0.1:`preferredPort` (any free port when it is nil or taken) and starts reading.
    /// - Throws: `io_failed` when no port can be bound.
    /// A UDP socket bound to 127.0.0.1:`port` (0: any free port), nil when the port is taken.
    static func bindLoopbackUDP(_ port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port)).bigEndian
        addr.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 { close(fd); return nil }
        return fd
    }

    init(preferredPort: Int?, capacity: Int = 8192) throws(RuntimeError) {
        self.capacity = max(1, capacity)
        var bound: Int32? = nil
        if let p = preferredPort, (1024...65535).contains(p) { bound = Self.bindLoopbackUDP(p) }
        if bound == nil { bound = Self.bindLoopbackUDP(0) }
        guard let fd = bound else { throw .io("cannot bind a UDP port on 127.0.0.1 for the request log: \(errnoString())") }
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
        // A big receive buffer absorbs bursts while the reader thread waits for a core.
        var size: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(4))
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
        let box = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        if pthread_create(&tid, nil, { ctx in
            let me = Unmanaged<HAProxyLogCollector>.fromOpaque(ctx!).takeRetainedValue()
            me.readLoop()
            return nil
        }, box) == 0 {
            pthread_detach(tid)
        } else {
            Unmanaged<HAProxyLogCollector>.fromOpaque(box).release()
            close(fd)
            throw .io("cannot start the log reader thread")
        }
    }

    /// Stops the reader; its port is released within 200 ms.
    func stop() {
        stopped.store(true, ordering: .relaxed)
    }

    private func readLoop() {
        var buf = [UInt8](repeating: 0, count: 2048)
        while !stopped.load(ordering: .relaxed) {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { continue }
            record(buf[0..<n], at: monotonicMs())
        }
        close(fd)
    }

    /// Parses one `be srv status Ta` line; `<NOSRV>` lines (nothing could serve) count for nobody.
    func record(_ line: ArraySlice<UInt8>, at now: Double) {
        let parts = String(decoding: line, as: UTF8.self).trimmingSpaces.split(separator: " ")
        guard parts.count >= 4, let status = Int(parts[2]), let ta = Int(parts[3]), parts[1] != "<NOSRV>" else { return }
        let key = String(parts[0]) + "/" + String(parts[1])
        samples.withLock { all in
            all[key, default: Ring()].append(Sample(atMs: now, status: status, totalMs: max(0, ta)), capacity: capacity)
        }
    }

    /// Requests, 5xx answers and the nearest-rank p95 of `Ta` for `backend/server` since `sinceMs`.
    func window(backend: String, server: String, sinceMs: Double) -> (count: Int, errors5xx: Int, p95: Double?) {
        let picked = samples.withLock { all in (all[backend + "/" + server]?.items ?? []).filter { $0.atMs >= sinceMs } }
        guard !picked.isEmpty else { return (0, 0, nil) }
        let sorted = picked.map { Double($0.totalMs) }.sorted()
        return (picked.count, picked.filter { $0.status >= 500 }.count, Probes.percentile(sorted, 0.95))
    }
}
