import Glibc

/// An HTTP response: status, headers with lowercased names, the decoded body and the time it took.
public struct HTTPResponse: Sendable {
    /// Status code, e.g. 200.
    public var status: Int
    /// Header names lowercased; a repeated header keeps its last value.
    public var headers: [String: String]
    /// Body after Content-Length / chunked decoding.
    public var body: [UInt8]
    /// From the start of connect to the last body byte, in milliseconds.
    public var latencyMs: Double

    /// Creates a response value.
    public init(status: Int, headers: [String: String], body: [UInt8], latencyMs: Double) {
        self.status = status
        self.headers = headers
        self.body = body
        self.latencyMs = latencyMs
    }

    /// `true` for 2xx.
    public var isSuccess: Bool { (200..<300).contains(status) }
}

/// A minimal HTTP/1.1 client over POSIX sockets (IPv4 literal hosts or a Unix-domain socket, `Connection: close`), with a connect
/// and a total deadline. The blocking work runs on its own thread, off the cooperative pool.
public enum HTTPClient {
    /// Sends one request and reads the whole response.
    /// - Parameters:
    ///   - host: an IPv4 address literal (default loopback).
    ///   - timeoutMs: total deadline for connect, send and receive.
    /// - Throws: `connection_refused`, `http_timeout`, `http_failed`.
    public static func request(method: String, host: String = "127.0.0.1", port: Int, path: String,
                               headers: [String: String] = [:], body: [UInt8]? = nil,
                               timeoutMs: Int) async throws(RuntimeError) -> HTTPResponse {
        try await Blocking.run { () throws(RuntimeError) -> HTTPResponse in
            try requestSync(method: method, host: host, port: port, path: path, headers: headers, body: body,
                            timeoutMs: timeoutMs)
        }
    }

    /// The blocking implementation of `request`.
    public static func requestSync(method: String, host: String = "127.0.0.1", port: Int, path: String,
                                   headers: [String: String] = [:], body: [UInt8]? = nil,
                                   timeoutMs: Int) throws(RuntimeError) -> HTTPResponse {
        let start = monotonicMs()
        let deadline = start + Double(timeoutMs)
        guard (1...65535).contains(port) else { throw failed("invalid port \(port)") }
        try checkRequest(path: path, headers: headers)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw failed("socket: \(errnoString())") }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))

        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port)).bigEndian
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { throw failed("host must be an IPv4 address: \(host)") }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            guard errno == EINPROGRESS else { throw connectError(errno, port) }
            try waitFor(fd, Int16(POLLOUT), deadline: deadline, what: "connect to \(host):\(port)")
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 { throw connectError(err, port) }
        }

        return try exchange(fd: fd, method: method, hostHeader: "\(host):\(port)", path: path, headers: headers, body: body,
                            start: start, deadline: deadline)
    }

    /// Sends one request over the Unix-domain stream socket at `socketPath` (for example a
    /// `kubectl proxy --unix-socket`) and reads the whole response. The `Host` header is `localhost`.
    /// - Throws: `connection_refused` (nothing listens at the path, or it does not exist), `http_timeout`,
    ///   `http_failed`.
    public static func request(method: String, unixSocket socketPath: String, path: String,
                               headers: [String: String] = [:], body: [UInt8]? = nil,
                               timeoutMs: Int) async throws(RuntimeError) -> HTTPResponse {
        try await Blocking.run { () throws(RuntimeError) -> HTTPResponse in
            try requestSync(method: method, unixSocket: socketPath, path: path, headers: headers, body: body, timeoutMs: timeoutMs)
        }
    }

    /// The blocking implementation of `request(method:unixSocket:...)`.
    public static func requestSync(method: String, unixSocket socketPath: String, path: String,
                                   headers: [String: String] = [:], body: [UInt8]? = nil,
                                   timeoutMs: Int) throws(RuntimeError) -> HTTPResponse {
        let start = monotonicMs()
        let deadline = start + Double(timeoutMs)
        try checkRequest(path: path, headers: headers)
        let fd = try connectUnix(socketPath, deadline: deadline)
        defer { close(fd) }
        return try exchange(fd: fd, method: method, hostHeader: "localhost", path: path, headers: headers, body: body,
                            start: start, deadline: deadline)
    }

    /// A connected, non-blocking stream socket to the Unix-domain socket at `socketPath` (the caller closes it).
    /// - Throws: `connection_refused` (ENOENT, ECONNREFUSED), `http_timeout`, `http_failed`.
    static func connectUnix(_ socketPath: String, deadline: Double) throws(RuntimeError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw failed("socket: \(errnoString())") }
        var ok = false
        defer { if !ok { close(fd) } }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socketPath.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: addr.sun_path), !bytes.contains(0) else {
            throw failed("unix socket path too long or empty (\(bytes.count) bytes)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            let e = errno
            if e == ENOENT || e == ECONNREFUSED {
                throw RuntimeError(code: "connection_refused", message: "nothing listens on \(socketPath): \(errnoString(e))")
            }
            // A full backlog answers EAGAIN on a non-blocking Unix connect: wait for the socket to be writable.
            guard e == EAGAIN || e == EINPROGRESS else { throw failed("connect to \(socketPath): \(errnoString(e))") }
            try waitFor(fd, Int16(POLLOUT), deadline: deadline, what: "connect to \(socketPath)")
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err == ECONNREFUSED || err == ENOENT {
                throw RuntimeError(code: "connection_refused", message: "nothing listens on \(socketPath): \(errnoString(err))")
            }
            if err != 0 { throw failed("connect to \(socketPath): \(errnoString(err))") }
        }
        ok = true
        return fd
    }

    private static func checkRequest(path: String, headers: [String: String]) throws(RuntimeError) {
        guard path.hasPrefix("/"), !path.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7f }) else {
            throw failed("invalid request path")
        }
        for (k, v) in headers where (k + v).utf8.contains(where: { $0 == 0x0d || $0 == 0x0a }) {
            throw failed("invalid header \(k)")
        }
    }

    /// Writes the request on the connected socket `fd` and reads the whole response.
    private static func exchange(fd: Int32, method: String, hostHeader: String, path: String, headers: [String: String],
                                 body: [UInt8]?, start: Double, deadline: Double) throws(RuntimeError) -> HTTPResponse {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nConnection: close\r\n"
        var hasLength = false
        for (k, v) in headers.sorted(by: { $0.key < $1.key }) {
            if k.lowercased() == "content-length" { hasLength = true }
            head += "\(k): \(v)\r\n"
        }
        if let body, !hasLength { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        var out = Array(head.utf8)
        if let body { out += body }
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                try waitFor(fd, Int16(POLLOUT), deadline: deadline, what: "send")
                continue
            }
            throw failed("send: \(errnoString())")
        }

        var parser = ResponseParser(isHead: method.uppercased() == "HEAD")
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            if let done = try parser.finished() {
                return HTTPResponse(status: done.status, headers: done.headers, body: done.body, latencyMs: monotonicMs() - start)
            }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { parser.append(buf[0..<n]); continue }
            if n == 0 {
                if let done = try parser.finishedAtEOF() {
                    return HTTPResponse(status: done.status, headers: done.headers, body: done.body, latencyMs: monotonicMs() - start)
                }
                throw failed("connection closed before a complete response (\(parser.received) bytes)")
            }
            if errno == EAGAIN || errno == EINTR {
                try waitFor(fd, Int16(POLLIN), deadline: deadline, what: "response")
                continue
            }
            if errno == ECONNRESET { throw failed("connection reset by peer") }
            throw failed("recv: \(errnoString())")
        }
    }

    private static func waitFor(_ fd: Int32, _ events: Int16, deadline: Double, what: String) throws(RuntimeError) {
        while true {
            let remaining = deadline - monotonicMs()
            if remaining <= 0 { throw RuntimeError(code: "http_timeout", message: "timed out waiting for \(what)") }
            var pfd = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&pfd, 1, Int32(max(1, remaining.rounded(.up))))
            if r > 0 { return }
            if r < 0 && errno != EINTR { throw failed("poll: \(errnoString())") }
        }
    }

    private static func connectError(_ code: Int32, _ port: Int) -> RuntimeError {
        if code == ECONNREFUSED { return RuntimeError(code: "connection_refused", message: "connection refused on port \(port)") }
        if code == ETIMEDOUT { return RuntimeError(code: "http_timeout", message: "connect to port \(port) timed out") }
        return failed("connect to port \(port): \(errnoString(code))")
    }

    private static func failed(_ m: String) -> RuntimeError { RuntimeError(code: "http_failed", message: m) }
}

/// Incremental HTTP/1.1 response parser (Content-Length, chunked, or read-to-EOF bodies).
struct ResponseParser {
    struct Done { var status: Int; var headers: [String: String]; var body: [UInt8] }

    private(set) var data: [UInt8] = []
    private var headerEnd: Int?
    private var status = 0
    private var headers: [String: String] = [:]
    let isHead: Bool

    init(isHead: Bool = false) { self.isHead = isHead }

    var received: Int { data.count }

    mutating func append(_ bytes: ArraySlice<UInt8>) { data.append(contentsOf: bytes) }

    /// A complete response, or nil if more bytes are needed.
    mutating func finished() throws(RuntimeError) -> Done? {
        if headerEnd == nil { try parseHead() }
        guard let start = headerEnd else { return nil }
        if isHead || status == 204 || status == 304 || (100..<200).contains(status) {
            return Done(status: status, headers: headers, body: [])
        }
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            return try decodeChunked(from: start)
        }
        if let lenText = headers["content-length"] {
            guard let len = Int(lenText.trimmingSpaces), len >= 0 else { throw bad("invalid Content-Length") }
            guard data.count - start >= len else { return nil }
            return Done(status: status, headers: headers, body: Array(data[start..<(start + len)]))
        }
        return nil
    }

    /// At end of stream: a body without length ends here.
    mutating func finishedAtEOF() throws(RuntimeError) -> Done? {
        if let done = try finished() { return done }
        guard let start = headerEnd, headers["content-length"] == nil,
              headers["transfer-encoding"] == nil else { return nil }
        return Done(status: status, headers: headers, body: Array(data[start...]))
    }

    private mutating func parseHead() throws(RuntimeError) {
        guard let end = findCRLFCRLF() else {
            if data.count > 1 << 20 { throw bad("response head too large") }
            return
        }
        let head = String(decoding: data[0..<end], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)[...]
        guard let statusLine = lines.popFirst() else { throw bad("empty response") }
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let code = Int(parts[1]) else {
            throw bad("invalid status line '\(statusLine.prefix(80))'")
        }
        var h: [String: String] = [:]
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { continue }
            h[line[..<colon].lowercased()] = String(line[line.index(after: colon)...]).trimmingSpaces
        }
        if (100..<200).contains(code) && code != 101 {
            // Interim response: drop it and parse what follows.
            data.removeFirst(end + 4)
            try parseHead()
            return
        }
        status = code
        headers = h
        headerEnd = end + 4
    }

    private func findCRLFCRLF() -> Int? {
        guard data.count >= 4 else { return nil }
        for i in 0...(data.count - 4) where data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 {
            return i
        }
        return nil
    }

    private func decodeChunked(from start: Int) throws(RuntimeError) -> Done? {
        var body: [UInt8] = []
        var i = start
        while true {
            guard let lineEnd = crlf(from: i) else { return nil }
            let sizeText = String(decoding: data[i..<lineEnd], as: UTF8.self)
                .split(separator: ";", maxSplits: 1).first.map { String($0).trimmingSpaces } ?? ""
            guard let size = Int(sizeText, radix: 16), size >= 0 else { throw bad("invalid chunk size '\(sizeText)'") }
            i = lineEnd + 2
            if size == 0 {
                // Trailers end with an empty line.
                while true {
                    guard let e = crlf(from: i) else { return nil }
                    if e == i { return Done(status: status, headers: headers, body: body) }
                    i = e + 2
                }
            }
            guard data.count >= i + size + 2 else { return nil }
            body.append(contentsOf: data[i..<(i + size)])
            i += size + 2
        }
    }

    private func crlf(from i: Int) -> Int? {
        var j = i
        while j + 1 < data.count {
            if data[j] == 13 && data[j + 1] == 10 { return j }
            j += 1
        }
        return nil
    }

    private func bad(_ m: String) -> RuntimeError { RuntimeError(code: "http_failed", message: m) }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" || f == "\n" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" || l == "\n" { s.removeLast() }
        return String(s)
    }
}
