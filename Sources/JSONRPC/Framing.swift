/// How messages are delimited on the stream.
public enum Framing: String, Sendable {
    /// One JSON text per line (MCP stdio style).
    case newlineDelimited = "ndjson"
    /// `Content-Length: N\r\n\r\n` headers before each body (LSP style).
    case contentLength = "content-length"
}

/// What the frame reader found next in the input.
public enum FrameEvent: Equatable, Sendable {
    /// A complete message body, as a range of the reader's buffer (valid until the next `compact()`).
    case frame(Range<Int>)
    /// A frame larger than the limit was skipped whole; answer with an error and carry on.
    case tooLarge(Int)
    /// A header block that cannot be understood was skipped.
    case badHeader(String)
}

/// Splits a byte stream into frames. Pure: feed it bytes, take frames out; no I/O.
///
/// The framing is detected from the first non-whitespace byte: `{` or `[` mean newline-delimited JSON,
/// anything else means `Content-Length` headers. Frames over `maxFrameBytes` are skipped without
/// being buffered whole, so a 100 MiB frame costs no 100 MiB of memory and the stream stays in sync.
public struct FrameReader: Sendable {
    public private(set) var framing: Framing?
    public let maxFrameBytes: Int
    /// Bytes received and not yet consumed (from `start`).
    public private(set) var buffer: [UInt8] = []
    private var start = 0
    /// Where the newline scan resumes, so a long partial line is not rescanned on every read.
    private var scanFrom = 0
    /// Bytes still to drop of an oversized frame.
    private var discarding = 0
    /// In NDJSON mode: dropping the rest of an oversized line.
    private var discardingLine = false
    private var discardedSize = 0

    public init(maxFrameBytes: Int = 64 << 20, framing: Framing? = nil) {
        self.maxFrameBytes = maxFrameBytes
        self.framing = framing
        buffer.reserveCapacity(1 << 16)
    }

    /// Appends received bytes.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        var bytes = bytes
        if discarding > 0 {
            let n = min(discarding, bytes.count)
            discarding -= n
            bytes = UnsafeRawBufferPointer(rebasing: bytes[n...])
        }
        buffer.append(contentsOf: bytes)
    }

    /// Drops consumed bytes from the front of the buffer. Ranges returned earlier become invalid.
    public mutating func compact() {
        if start > 0 {
            buffer.removeSubrange(0..<start)
            scanFrom -= start
            start = 0
        }
    }

    /// Whether a partial frame is pending (bytes received but no complete frame).
    public var hasPartialFrame: Bool {
        buffer[start...].contains { !isSpace($0) }
    }

    /// The next event, or nil when more bytes are needed.
    public mutating func next() -> FrameEvent? {
        if framing == nil {
            while start < buffer.count, isSpace(buffer[start]) { start += 1 }
            guard start < buffer.count else { return nil }
            let c = buffer[start]
            framing = (c == UInt8(ascii: "{") || c == UInt8(ascii: "[")) ? .newlineDelimited : .contentLength
            scanFrom = start
        }
        switch framing! {
        case .newlineDelimited: return nextLine()
        case .contentLength: return nextContentLength()
        }
    }

    private mutating func nextLine() -> FrameEvent? {
        while true {
            if scanFrom < start { scanFrom = start }
            let nl: Int? = buffer.withUnsafeBufferPointer { b in
                guard scanFrom < b.count else { return nil }
                guard let base = b.baseAddress else { return nil }
                let p = memchr(base + scanFrom, 0x0A, b.count - scanFrom)
                return p.map { UnsafePointer<UInt8>($0.assumingMemoryBound(to: UInt8.self)) - base }
            }
            guard let nl else {
                let pending = buffer.count - start
                if discardingLine || pending > maxFrameBytes {
                    // Too long: drop what we have and keep dropping until the newline.
                    if !discardingLine { discardingLine = true; discardedSize = 0 }
                    discardedSize += pending
                    start = buffer.count
                }
                scanFrom = buffer.count
                return nil
            }
            let lineStart = start
            start = nl + 1
            scanFrom = start
            if discardingLine {
                discardingLine = false
                let size = discardedSize + (nl - lineStart)
                return .tooLarge(size)
            }
            var end = nl
            if end > lineStart, buffer[end - 1] == 0x0D { end -= 1 }
            var s = lineStart
            while s < end, isSpace(buffer[s]) { s += 1 }
            if s == end { continue }  // blank line
            if end - lineStart > maxFrameBytes { return .tooLarge(end - lineStart) }
            return .frame(s..<end)
        }
    }

    private mutating func nextContentLength() -> FrameEvent? {
        while start < buffer.count, isSpace(buffer[start]) { start += 1 }
        // Find the end of the header block.
        guard let headerEnd = findHeaderEnd() else {
            if buffer.count - start > 8192 {
                // No header block ends within 8 KiB: resynchronise at the next "Content-Length".
                start = buffer.count
                return .badHeader("header block too long or missing")
            }
            return nil
        }
        let headerBytes = buffer[start..<headerEnd]
        let text = String(decoding: headerBytes, as: UTF8.self)
        var length: Int?
        for line in text.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            if name == "content-length" {
                length = Int(line[line.index(after: colon)...].trimmingSpaces())
            }
        }
        let bodyStart = headerEnd + 4
        guard let length, length >= 0 else {
            start = bodyStart
            return .badHeader("missing or invalid Content-Length header")
        }
        if length > maxFrameBytes {
            let available = buffer.count - bodyStart
            if available >= length {
                start = bodyStart + length
            } else {
                discarding = length - available
                start = buffer.count
            }
            return .tooLarge(length)
        }
        guard buffer.count - bodyStart >= length else { return nil }
        start = bodyStart + length
        return .frame(bodyStart..<(bodyStart + length))
    }

    private func findHeaderEnd() -> Int? {
        var i = start
        let n = buffer.count
        while i + 3 < n {
            if buffer[i] == 0x0D && buffer[i + 1] == 0x0A && buffer[i + 2] == 0x0D && buffer[i + 3] == 0x0A {
                return i
            }
            i += 1
        }
        return nil
    }

    @inline(__always) private func isSpace(_ c: UInt8) -> Bool {
        c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}
