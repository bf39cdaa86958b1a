#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The one serialized writer: frames are appended whole under a lock and written in order.
///
/// Frames from the reader thread are batched and flushed when the input is drained; frames from
/// other tasks flush at once. After the peer closes its end (EPIPE), writes are dropped quietly.
public final class OutputSink: Sendable {
    private struct State {
        var pending: [UInt8] = []
        var closed = false
        var framing: Framing = .newlineDelimited
    }
    private let state = Mutex(State())
    private let fd: Int32

    public init(fd: Int32) {
        self.fd = fd
    }

    /// Sets the framing used for every frame from now on (the reader detects it from the input).
    public func setFraming(_ f: Framing) {
        state.withLock { $0.framing = f }
    }

    /// Appends one message body as a frame; writes everything pending when `flush` is set or much is pending.
    public func send(_ body: [UInt8], flush: Bool) {
        state.withLock { s in
            guard !s.closed else { return }
            switch s.framing {
            case .newlineDelimited:
                s.pending.append(contentsOf: body)
                s.pending.append(0x0A)
            case .contentLength:
                s.pending.append(contentsOf: "Content-Length: \(body.count)\r\n\r\n".utf8)
                s.pending.append(contentsOf: body)
            }
            if flush || s.pending.count >= 1 << 16 { writeAll(&s) }
        }
    }

    /// Writes everything pending.
    public func flush() {
        state.withLock { s in
            if !s.pending.isEmpty { writeAll(&s) }
        }
    }

    /// `true` once the peer stopped reading.
    public var isClosed: Bool { state.withLock { $0.closed } }

    private func writeAll(_ s: inout State) {
        guard !s.closed else { s.pending.removeAll(keepingCapacity: true); return }
        s.pending.withUnsafeBytes { p in
            var off = 0
            while off < p.count {
                let n = write(fd, p.baseAddress! + off, p.count - off)
                if n < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    s.closed = true
                    return
                }
                off += n
            }
        }
        s.pending.removeAll(keepingCapacity: true)
    }
}
