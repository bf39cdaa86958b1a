// haproxy-bench: the HAProxy router's switch time, failed requests under weight changes, and canary step
// shares, against real HAProxy and two in-process keep-alive HTTP backends. Prints figures; not a test.
//
//   swift build -c release --product haproxy-bench && .build/release/haproxy-bench [--haproxy PATH] [--flips N]
//       [--clients N] [--step-requests N]
import DeployRuntime
import Glibc
import Synchronization

// MARK: - arguments

var haproxy = "/usr/sbin/haproxy"
var flips = 20
var clients = 4
var stepRequests = 4000
var argv = CommandLine.arguments.dropFirst()
while let a = argv.popFirst() {
    switch a {
    case "--haproxy": haproxy = argv.popFirst() ?? haproxy
    case "--flips": flips = argv.popFirst().flatMap { Int($0) } ?? flips
    case "--clients": clients = argv.popFirst().flatMap { Int($0) } ?? clients
    case "--step-requests": stepRequests = argv.popFirst().flatMap { Int($0) } ?? stepRequests
    default:
        FileHandleStderr.write("unknown argument \(a)\n")
        exit(2)
    }
}

enum FileHandleStderr {
    static func write(_ s: String) { let b = Array(s.utf8); _ = b.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) } }
}

// MARK: - a keep-alive backend (one thread per connection; answers `[id]` to every request)

final class Backend: @unchecked Sendable {
    let port: Int
    private let fd: Int32

    init(id: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 256)
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: bound.sin_port))
        let body = "[\(id)]"
        let response = Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        let listener = fd
        spawnThread {
            while true {
                let c = accept(listener, nil, nil)
                if c < 0 { if errno == EINTR { continue }; return }
                spawnThread { Backend.serve(c, response) }
            }
        }
    }

    /// Answers every request on the connection until the peer closes it.
    static func serve(_ c: Int32, _ response: [UInt8]) {
        defer { close(c) }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            // One full request: head up to CRLFCRLF, then Content-Length bytes.
            while true {
                if let end = headEnd(data) {
                    let head = String(decoding: data[0..<end], as: UTF8.self).lowercased()
                    var length = 0
                    for line in head.split(separator: "\r\n") where line.hasPrefix("content-length:") {
                        length = Int(line.dropFirst(15).trimmingCharacters()) ?? 0
                    }
                    if data.count >= end + 4 + length {
                        data.removeFirst(end + 4 + length)
                        break
                    }
                }
                let n = read(c, &buf, buf.count)
                if n <= 0 { return }
                data += buf[0..<n]
            }
            var off = 0
            while off < response.count {
                let n = response[off...].withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return }
                off += n
            }
        }
    }

    static func headEnd(_ d: [UInt8]) -> Int? {
        guard d.count >= 4 else { return nil }
        for i in 0...(d.count - 4) where d[i] == 13 && d[i + 1] == 10 && d[i + 2] == 13 && d[i + 3] == 10 { return i }
        return nil
    }
}

extension StringProtocol {
    func trimmingCharacters() -> String { String(self.filter { $0 != " " && $0 != "\t" }) }
}

final class ThreadBody: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

func spawnThread(_ body: @escaping () -> Void) {
    let raw = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var tid = pthread_t()
    if pthread_create(&tid, nil, { ctx in
        Unmanaged<ThreadBody>.fromOpaque(ctx!).takeRetainedValue().run()
        return nil
    }, raw) == 0 {
        pthread_detach(tid)
    }
}

func ms(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }
func fmt(_ v: Double, _ digits: Int = 2) -> String {
    var s = String(Int((v * pow(10, Double(digits))).rounded()))
    while s.count <= digits { s = "0" + s }
    return digits == 0 ? s : String(s.dropLast(digits)) + "." + String(s.suffix(digits))
}
func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? 0 : s[s.count / 2] }
func p90(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * 0.9))] }

// MARK: - the run

var template = Array("/tmp/md-haproxy-bench-XXXXXX".utf8CString)
guard let dir = mkdtemp(&template) else { FileHandleStderr.write("mkdtemp failed\n"); exit(1) }
let home = String(cString: dir)
let stable = Backend(id: 1)
let canary = Backend(id: 2)
let router = HAProxyRouter(home: home, haproxy: haproxy)
let port = freePort(preferred: nil)
func set(_ stableWeight: Int, _ canaryWeight: Int) async throws -> HAProxyApplyResult {
    try await router.setBackends(model: "bench", environment: "prod", port: port, backends: [
        HAProxyServer(name: "blue", port: stable.port, weight: stableWeight, version: "v1"),
        HAProxyServer(name: "green", port: canary.port, weight: canaryWeight, version: "v2"),
    ])
}

do {
    let clock = ContinuousClock()
    let first = try await set(100, 0)
    print("haproxy-bench: HAProxy \(haproxy), home \(home), endpoint 127.0.0.1:\(port), \(clients) keep-alive clients")
    print("first route (config + start): \(fmt(first.elapsedMs)) ms")

    // 1. Switch time, idle: setBackends flips all traffic; end to end = until a request on a kept connection
    //    (opened before the flip) is answered by the new slot.
    var agentMoved: [Double] = []
    var agentTotal: [Double] = []
    var endToEnd: [Double] = []
    let probe = KeepAliveHTTPConnection(port: port)
    for i in 0..<flips {
        let toGreen = i % 2 == 0
        let want = toGreen ? "green" : "blue"
        _ = try? probe.request(path: "/predict", body: Array("{}".utf8))
        let t0 = clock.now
        let r = try await set(toGreen ? 0 : 100, toGreen ? 100 : 0)
        var seen = false
        while !seen {
            let answer = try probe.request(path: "/predict", body: Array("{}".utf8))
            seen = answer.headers["x-model-deployer-slot"] == want
        }
        endToEnd.append(ms(clock.now - t0))
        agentMoved.append(r.trafficMovedMs)
        agentTotal.append(r.elapsedMs)
    }
    print("\n## switch 0 -> 100 (\(flips) flips, idle)")
    print("router, until the last runtime command was answered: median \(fmt(median(agentMoved))) ms, p90 \(fmt(p90(agentMoved))) ms")
    print("router, including the routes.json write (fsync):     median \(fmt(median(agentTotal))) ms, p90 \(fmt(p90(agentTotal))) ms")
    print("end to end (call -> a kept connection answered by the new slot): median \(fmt(median(endToEnd))) ms, p90 \(fmt(p90(endToEnd))) ms")
    print("keep-alive probe opened \(probe.connects) connection(s) for \(flips * 2) requests")

    // 2. Ten weight changes under load.
    _ = try await set(100, 0)
    let load = KeepAliveLoad(port: port, clients: clients)
    await load.waitForRequests(1000, after: load.snapshot())
    let weights = [(90, 10), (75, 25), (50, 50), (0, 100), (100, 0), (95, 5), (50, 50), (10, 90), (0, 100), (100, 0)]
    var underLoad: [Double] = []
    var movedUnderLoad: [Double] = []
    for (s, c) in weights {
        let r = try await set(s, c)
        underLoad.append(r.elapsedMs)
        movedUnderLoad.append(r.trafficMovedMs)
        await load.waitForRequests(800, after: load.snapshot())
    }
    let total = await load.stop()
    print("\n## 10 weight changes under load (\(clients) keep-alive clients)")
    print("requests \(total.requests), failed \(total.failures) \(total.errors.isEmpty ? "" : "\(total.errors)"), TCP connections opened \(total.connects)")
    print("router time per change under load, until traffic moved: median \(fmt(median(movedUnderLoad))) ms, max \(fmt(movedUnderLoad.max() ?? 0)) ms")
    print("router time per change under load, with the routes.json fsync: median \(fmt(median(underLoad))) ms, max \(fmt(underLoad.max() ?? 0)) ms")

    // 3. Canary steps: share measured by the clients' answers and by the router's counters.
    print("\n## canary steps (\(stepRequests) requests per step, \(clients) keep-alive clients)")
    print("| weight (canary) | client-counted share | router-counted share (req_tot) | failed | request-log lines / router requests | canary p95 / stable p95 (log) |")
    print("|---:|---:|---:|---:|---:|---:|")
    _ = try await set(100, 0)
    let steady = KeepAliveLoad(port: port, clients: clients)
    for w in [5, 25, 50, 100] {
        _ = try await set(100 - w, w)
        let s0 = steady.snapshot()
        let st0 = try await router.trafficStats(model: "bench", environment: "prod")
        let stepStart = clock.now
        await steady.waitForRequests(stepRequests, after: s0)
        let s1 = steady.snapshot()
        // Let the log reader take the last datagrams of the step before counting them.
        try await Task.sleep(for: .milliseconds(100))
        let st1 = try await router.trafficStats(model: "bench", environment: "prod",
                                                latencyWindowMs: Int(ms(clock.now - stepStart).rounded(.up)))
        let d = s1.subtracting(s0)
        func lb(_ stats: [TrafficStats], _ name: String) -> Int { stats.first { $0.backend == name }?.requests ?? 0 }
        let g = lb(st1, "green") - lb(st0, "green")
        let b = lb(st1, "blue") - lb(st0, "blue")
        let routerShare = g + b == 0 ? 0 : Double(g) * 100 / Double(g + b)
        let logged = st1.map(\.windowRequests).reduce(0, +)
        let counted = st1.map(\.requests).reduce(0, +) - st0.map(\.requests).reduce(0, +)
        func p95(_ name: String) -> String { st1.first { $0.backend == name }?.p95Ms.map { fmt($0, 0) + " ms" } ?? "-" }
        print("| \(w) % | \(fmt(d.sharePercent("green"), 1)) % | \(fmt(routerShare, 1)) % | \(d.failures) | \(logged) / \(counted) | \(p95("green")) / \(p95("blue")) |")
    }
    let canaryTotal = await steady.stop()

    // 4. A third server added and removed (disable, drain, del) under load, backends keeping connections alive.
    let third = Backend(id: 3)
    let extra = KeepAliveLoad(port: port, clients: clients)
    await extra.waitForRequests(500, after: extra.snapshot())
    let both = [HAProxyServer(name: "blue", port: stable.port, weight: 50, version: "v1"),
                HAProxyServer(name: "green", port: canary.port, weight: 50, version: "v2")]
    let added = try await router.setBackends(model: "bench", environment: "prod", port: port,
                                             backends: both + [HAProxyServer(name: "c-3", port: third.port, weight: 50, version: "v3")])
    let a0 = extra.snapshot()
    await extra.waitForRequests(1500, after: a0)
    let withThird = extra.snapshot().subtracting(a0)
    let removed = try await router.setBackends(model: "bench", environment: "prod", port: port, backends: both)
    let r0 = extra.snapshot()
    await extra.waitForRequests(1500, after: r0)
    let extraTotal = await extra.stop()
    print("\n## add and delete a third server under load")
    print("add + enable: \(fmt(added.elapsedMs)) ms; c-3 then served \(fmt(withThird.sharePercent("c-3"), 1)) % at weight 50 of 150")
    print("disable + drain + del: \(fmt(removed.elapsedMs)) ms; c-3 served \(extraTotal.subtracting(r0).slots["c-3", default: 0]) requests afterwards")
    print("requests \(extraTotal.requests), failed \(extraTotal.failures) \(extraTotal.errors.isEmpty ? "" : "\(extraTotal.errors)"), connections \(extraTotal.connects)")
    // 5. A second endpoint added (it gets an HAProxy process of its own) while the first one is under load.
    let otherLoad = KeepAliveLoad(port: port, clients: clients)
    await otherLoad.waitForRequests(500, after: otherLoad.snapshot())
    let second = try await router.setBackends(model: "bench", environment: "staging", port: freePort(preferred: nil), backends: [
        HAProxyServer(name: "blue", port: stable.port, weight: 100, version: "v1")])
    await otherLoad.waitForRequests(1500, after: otherLoad.snapshot())
    let otherTotal = await otherLoad.stop()
    print("\n## a second endpoint added (its own HAProxy process) while the first is under load")
    print("second endpoint started: \(fmt(second.elapsedMs)) ms; first endpoint: requests \(otherTotal.requests), failed \(otherTotal.failures) \(otherTotal.errors.isEmpty ? "" : "\(otherTotal.errors)"), TCP connections opened \(otherTotal.connects) by \(clients) clients")

    let stats = try await router.trafficStats(model: "bench", environment: "prod", latencyWindowMs: 600_000)
    print("canary run: \(canaryTotal.requests) requests, \(canaryTotal.failures) failed, \(canaryTotal.connects) connections")
    for s in stats {
        print("router stats \(s.backend): requests (req_tot) \(s.requests), lbtot \(s.selections), retries \(s.retries + s.redispatches), 2xx \(s.responses2xx), 5xx \(s.responses5xx), rtime avg \(s.averageResponseMs) ms, ttime avg \(s.averageTotalMs) ms, p95 (request log, last 10 min) \(s.p95Ms.map { fmt($0, 0) } ?? "-") ms over \(s.windowRequests) logged")
    }
} catch {
    FileHandleStderr.write("haproxy-bench failed: \(error)\n")
    await router.stop()
    exit(1)
}
await router.stop()
// The home held only this run's router files.
_ = try? await ProcessLauncher.run(executable: "rm", arguments: ["-rf", "--", home], timeout: .seconds(10))
