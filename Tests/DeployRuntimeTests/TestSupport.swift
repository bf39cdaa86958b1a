import Foundation
import Glibc

/// A temporary directory removed by `remove()`.
struct TempDir {
    let path: String

    init(_ label: String) throws {
        var template = Array("/tmp/md-rt-\(label)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw POSIXError(.EIO) }
        path = String(cString: p)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    static func write(_ path: String, _ text: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
    }
}

extension String {
    func replacingAll(_ a: String, _ b: String) -> String { replacingOccurrences(of: a, with: b) }
}

/// A tiny HTTP/1.1 test server on 127.0.0.1 (one thread per connection). Routes:
/// `/cl` Content-Length body, `/chunked` chunked body, `/hang` never answers, `/echo` echoes the body,
/// `/status/<n>` answers n, anything else answers `body` with `headers`.
final class TestHTTPServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let lock = NSLock()
    private var closed = false
    let body: String
    let extraHeaders: [String: String]

    init(body: String = "{\"ok\":true}", headers: [String: String] = [:]) throws {
        self.body = body
        self.extraHeaders = headers
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 128)
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        self.port = Int(UInt16(bigEndian: bound.sin_port))
        let t = Thread { [self] in acceptLoop() }
        t.start()
    }

    func close() {
        lock.lock(); closed = true; lock.unlock()
        // Only wake the accept loop; it closes the descriptor itself, so the number cannot be reused by another
        // server while this loop still accepts on it.
        shutdown(fd, Int32(SHUT_RDWR))
    }

    private func acceptLoop() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                Glibc.close(fd)
                return
            }
            let t = Thread { [self] in handle(c) }
            t.start()
        }
    }

    private func handle(_ c: Int32) {
        defer { Glibc.close(c) }
        var data = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        var headerEnd: Int?
        var contentLength = 0
        while true {
            if let h = headerEnd, data.count >= h + contentLength { break }
            let n = read(c, &buf, buf.count)
            if n <= 0 { return }
            data += buf[0..<n]
            if headerEnd == nil, let r = String(decoding: data, as: UTF8.self).range(of: "\r\n\r\n") {
                let head = String(String(decoding: data, as: UTF8.self)[..<r.lowerBound])
                headerEnd = head.utf8.count + 4
                for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
                    contentLength = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
                }
            }
        }
        let head = String(decoding: data, as: UTF8.self)
        let path = head.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
        let reqBody = Array(data[(headerEnd ?? data.count)...])
        var out: String
        switch true {
        case path == "/hang":
            sleep(5)
            return
        case path == "/chunked":
            out = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Test: yes\r\n\r\n4\r\nWiki\r\n7;ext=1\r\npedia i\r\nB\r\nn chunks.!!\r\n0\r\nTrailer: x\r\n\r\n"
        case path == "/echo":
            out = "HTTP/1.1 200 OK\r\nContent-Length: \(reqBody.count)\r\n\r\n" + String(decoding: reqBody, as: UTF8.self)
        case path.hasPrefix("/status/"):
            let code = Int(path.dropFirst(8)) ?? 500
            out = "HTTP/1.1 \(code) X\r\nContent-Length: 2\r\n\r\nno"
        default:
            out = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n"
            for (k, v) in extraHeaders { out += "\(k): \(v)\r\n" }
            out += "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        }
        let bytes = Array(out.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }
}

/// Settings for tests that need real programs.
enum TestEnv {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// The nginx executable: `MODEL_DEPLOYER_NGINX`, else /usr/sbin/nginx, else nil.
    static var nginx: String? {
        if let n = environment["MODEL_DEPLOYER_NGINX"] { return n }
        for c in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] where access(c, X_OK) == 0 { return c }
        return nil
    }

    /// A BentoML store where examples/iris/build.sh ran, and the bentoml executable.
    static var bentoml: (home: String, executable: String)? {
        guard let home = environment["MODEL_DEPLOYER_TEST_BENTOML_HOME"], !home.isEmpty,
              let exe = environment["MODEL_DEPLOYER_BENTOML"], !exe.isEmpty else { return nil }
        return (home, exe)
    }

    static var hasNginx: Bool { nginx != nil }
    static var hasBentoML: Bool { bentoml != nil && nginx != nil }
}

/// Runs `body`, then `cleanup` whether or not `body` threw.
func withCleanup<T>(_ body: () async throws -> T, cleanup: () async -> Void) async throws -> T {
    do {
        let value = try await body()
        await cleanup()
        return value
    } catch {
        await cleanup()
        throw error
    }
}
