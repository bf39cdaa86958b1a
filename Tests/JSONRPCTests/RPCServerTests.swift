#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import JSON
import JSONRPC
import Synchronization
import Testing

/// A latch a handler waits on; opened by a frame, or when the waiting task is cancelled (after `lag`, so
/// that a shutdown that does not wait for the task would be seen returning first).
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func open() {
        let ws = state.withLock { s in defer { s.waiters = [] }; s.open = true; return s.waiters }
        for w in ws { w.resume() }
    }

    func wait(openOnCancelAfter lag: DispatchTimeInterval) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.open { return true }
                    s.waiters.append(c)
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            DispatchQueue.global().asyncAfter(deadline: .now() + lag) { self.open() }
        }
    }
}

/// Counts finished handler runs.
final class Counter: Sendable {
    private let n = Mutex(0)
    func add() { n.withLock { $0 += 1 } }
    var value: Int { n.withLock { $0 } }
}

/// How many times `needle` occurs in `text`.
func occurrences(of needle: String, in text: String) -> Int {
    let h = Array(text.utf8), n = Array(needle.utf8)
    guard h.count >= n.count else { return 0 }
    return (0...(h.count - n.count)).filter { h[$0..<($0 + n.count)].elementsEqual(n) }.count
}

/// Runs a server over pipes on `input` (all of it, then EOF) and returns everything it wrote.
/// `slow` finishes (with `{"done":true}`) only when `open` arrives or some time after it is cancelled:
/// it ignores cancellation as a handler that persists its state first would.
func serve(_ input: String, finished: Counter? = nil) async -> String {
    var inPipe: [Int32] = [0, 0], outPipe: [Int32] = [0, 0]
    #expect(pipe(&inPipe) == 0 && pipe(&outPipe) == 0)
    let server = RPCServer(input: inPipe[0], output: outPipe[1], maxBatchSize: 4, logger: Logger(level: .error))
    let gate = Gate()
    server.register("slow", .task { _, _ in
        await gate.wait(openOnCancelAfter: .milliseconds(200))
        finished?.add()
        return ["done": true]
    })
    server.register("open", .immediate { _ throws(RPCError) in gate.open(); return .object([:]) })
    let bytes = Array(input.utf8)
    #expect(bytes.withUnsafeBytes { write(inPipe[1], $0.baseAddress!, $0.count) } == bytes.count)
    close(inPipe[1])
    await server.run(drainTimeout: .seconds(20))
    close(outPipe[1])
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(outPipe[0], $0.baseAddress!, $0.count) }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    close(outPipe[0])
    close(inPipe[0])
    return String(decoding: out, as: UTF8.self)
}

func request(_ id: String, _ method: String) -> String { #"{"jsonrpc":"2.0","id":"\#(id)","method":"\#(method)"}"# }

@Suite struct RPCServerTrackingTests {
    @Test func aBatchStillRunningAtEOFIsAnswered() async {
        let out = await serve("[\(request("s", "slow")),\(request("p", "ping"))]\n")
        #expect(out == #"[{"jsonrpc":"2.0","id":"s","result":{"done":true}},{"jsonrpc":"2.0","id":"p","result":{}}]"# + "\n")
    }

    @Test func cancelRequestReachesABatchElement() async {
        let out = await serve("""
            [\(request("s", "slow")),\(request("p", "ping"))]
            {"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":"s"}}
            {"jsonrpc":"2.0","method":"open"}

            """)
        #expect(out.hasPrefix(#"[{"jsonrpc":"2.0","id":"s","error":{"code":-32800"#))
        #expect(out.hasSuffix(#"{"jsonrpc":"2.0","id":"p","result":{}}]"# + "\n"))
    }

    @Test func mcpCancelledBatchElementIsLeftOut() async {
        let out = await serve("""
            [\(request("s", "slow")),\(request("p", "ping"))]
            {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"s"}}
            {"jsonrpc":"2.0","method":"open"}

            """)
        #expect(out == #"[{"jsonrpc":"2.0","id":"p","result":{}}]"# + "\n")
    }

    @Test func aDuplicateIdInsideABatchIsRefused() async {
        let out = await serve("[\(request("s", "slow")),\(request("s", "slow"))]\n" + #"{"jsonrpc":"2.0","method":"open"}"# + "\n")
        #expect(out.hasPrefix(#"[{"jsonrpc":"2.0","id":"s","result":{"done":true}},{"jsonrpc":"2.0","id":"s","error":{"#))
        #expect(out.contains(#""reason":"duplicate_id""#))
    }

    @Test func theWorkOfARequestShapedNotificationIsWaitedForAtEOF() async {
        let finished = Counter()
        let out = await serve(#"{"jsonrpc":"2.0","method":"slow"}"# + "\n", finished: finished)
        #expect(out == "")
        #expect(finished.value == 1)
    }

    @Test func aBatchOverTheLimitIsRefusedWholeAndNothingRuns() async {
        let finished = Counter()
        let five = (1...5).map { request("s\($0)", "slow") }.joined(separator: ",")
        let out = await serve("[\(five)]\n" + request("p", "ping") + "\n", finished: finished)
        #expect(out.hasPrefix(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"data":{"max_batch_size":4,"#))
        #expect(out.contains(#""reason":"batch_too_large""#))
        #expect(out.hasSuffix(#"{"jsonrpc":"2.0","id":"p","result":{}}"# + "\n"))
        #expect(finished.value == 0)
    }

    @Test func aBatchAtTheLimitIsAnsweredInOrder() async {
        let four = (1...4).map { request("p\($0)", "ping") }.joined(separator: ",")
        let out = await serve("[\(four)]\n")
        #expect(out == "[" + (1...4).map { #"{"jsonrpc":"2.0","id":"p\#($0)","result":{}}"# }.joined(separator: ",") + "]\n")
    }

    @Test(arguments: ["18446744073709551616", "123456789012345678901234567890", "1e400", "-0", "1.50", "-1E-400"])
    func idsAreEchoedAsTheirExactText(id: String) async {
        let single = #"{"jsonrpc":"2.0","id":\#(id),"method":"ping"}"#
        let failing = #"{"jsonrpc":"2.0","id":\#(id),"method":"nope"}"#
        let out = await serve("\(single)\n[\(single)]\n\(failing)\n")
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines.first == #"{"jsonrpc":"2.0","id":\#(id),"result":{}}"#)
        #expect(lines.dropFirst().first == #"[{"jsonrpc":"2.0","id":\#(id),"result":{}}]"#)
        #expect(lines.last?.hasPrefix(#"{"jsonrpc":"2.0","id":\#(id),"error":{"code":-32601"#) == true)
    }

    @Test func anErrorAtEOFInsideAFrameUsesContentLengthFraming() async {
        let out = await serve("Content-Length: 40\r\n\r\n{\"jsonrpc\"")
        #expect(out.hasPrefix("Content-Length: "))
        #expect(out.contains(#""code":-32700"#))
    }

    @Test func aBadContentLengthCostsOneFrameOnly() async {
        func framed(_ body: String) -> String { "Content-Length: \(body.utf8.count)\r\n\r\n\(body)" }
        let out = await serve("Content-Length: -1\r\n\r\n\(request("x", "ping"))" + framed(request("a", "ping")) + framed(request("b", "ping")))
        #expect(occurrences(of: "Content-Length: ", in: out) == 3)  // the error, a, b
        #expect(out.contains(#""code":-32700"#))
        #expect(out.contains(#"{"jsonrpc":"2.0","id":"a","result":{}}"#))
        #expect(out.contains(#"{"jsonrpc":"2.0","id":"b","result":{}}"#))
    }
}
