#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import JSON
import Synchronization

/// Gathers the answers of one batch, in element order, and sends them as one array when the last is in.
///
/// Answers are held as encoded bytes (tens of bytes for a ping) rather than JSON values. An element
/// that is a notification, or that the peer cancelled with MCP `notifications/cancelled`, has no answer;
/// a batch with no answers at all sends nothing, as JSON-RPC 2.0 asks.
final class BatchCollector: Sendable {
    private struct State {
        var answers: [[UInt8]?]
        /// Answers still to come, plus one until the reader has dispatched every element (so the batch
        /// completes on the reader when every element answered inline, and on a task otherwise).
        var remaining: Int

        /// Counts one answer in; returns the answers (and lets go of them) when it was the last.
        mutating func complete() -> [[UInt8]?]? {
            remaining -= 1
            guard remaining == 0 else { return nil }
            defer { answers = [] }
            return answers
        }
    }
    private let state: Mutex<State>
    private let sink: OutputSink
    private let count: Int

    /// Batches at least this long give their memory back to the system when answered (glibc keeps freed
    /// heap otherwise: after a large batch the process stayed gigabytes larger than it needed).
    static let trimAfter = 1000

    init(count: Int, sink: OutputSink) {
        self.count = count
        self.sink = sink
        state = Mutex(State(answers: Array(repeating: nil, count: count), remaining: count + 1))
    }

    /// Records element `k`'s answer (nil: none).
    func fill(_ k: Int, _ answer: [UInt8]?) {
        let done = state.withLock { s -> [[UInt8]?]? in
            s.answers[k] = answer
            return s.complete()
        }
        // Only a task can be last here (the reader's own hold is released in `dispatched`): write at once.
        if var done { send(&done, flush: true) }
    }

    /// Called by the reader once every element is dispatched.
    func dispatched() {
        let done = state.withLock { $0.complete() }
        // On the reader thread: the frame joins the others written when the input is drained.
        if var done { send(&done, flush: false) }
    }

    private func send(_ answers: inout [[UInt8]?], flush: Bool) {
        var size = 2
        for case let a? in answers { size += a.count + 1 }
        if size > 2 {
            var out: [UInt8] = []
            out.reserveCapacity(size)
            out.append(UInt8(ascii: "["))
            for case let a? in answers {
                if out.count > 1 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: a)
            }
            out.append(UInt8(ascii: "]"))
            answers = []
            sink.send(out, flush: flush)
        }
        answers = []
        if count >= Self.trimAfter { releaseFreedMemory() }
    }

}

/// glibc's `malloc_trim(0)`: hands freed heap back to the system after big work (glibc keeps it otherwise).
/// Looked up at run time: it is not in Swift's Glibc module, and other C libraries do not have it.
func releaseFreedMemory() {
    #if os(Linux)
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return }
    typealias Trim = @convention(c) (Int) -> Int32
    _ = unsafeBitCast(sym, to: Trim.self)(0)
    #endif
}
