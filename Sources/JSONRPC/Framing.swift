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
/// A header block without a usable length says nothing about where its body ends, so the reader
/// reports it once and resynchronises at the next `Content-Length` it sees (which may be in that very
/// block, when junk came first), rather than reading the body as the next header block and so on for ever.
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
    /// In Content-Length mode: skipping bytes up to the next `Content-Length` after a bad header block.
    private var resyncing = false

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
    ///
    /// After a large frame the buffer's storage is given back rather than kept at its largest size: a
    /// 30 MB batch otherwise stayed resident for the life of the agent.
    public mutating func compact() {
        if start > 0 {
            if buffer.capacity > Self.keepCapacity, buffer.count - start <= Self.keepCapacity / 2 {
                var smaller: [UInt8] = []
                smaller.reserveCapacity(Self.keepCapacity)
                smaller.append(contentsOf: buffer[start...])
                buffer = smaller
            } else {
                buffer.removeSubrange(0..<start)
            }
            scanFrom -= start
            start = 0
        }
    }

    /// Storage kept between frames (what a 64 KiB read and a few ordinary frames need).
    static let keepCapacity = 1 << 20

    /// Whether a partial frame is pending (bytes received but no complete frame).
    public var hasPartialFrame: Bool {
        // What is left while resynchronising belongs to a header block already reported as bad.
        !resyncing && buffer[start...].contains { !isSpace($0) }
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
        if resyncing, !resynchronise() { return nil }
        while start < buffer.count, isSpace(buffer[start]) { start += 1 }
        // Find the end of the header block.
        guard let headerEnd = findHeaderEnd() else {
            if buffer.count - start > 8192 {
                startResync()
                return .badHeader("header block too long or missing")
            }
            return nil
        }
        let headerBytes = buffer[start..<headerEnd]
        let text = String(decoding: headerBytes, as: UTF8.self)
        var length: Int?
        var sawLength = false
        var conflicting = false
        for line in text.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                line[..<colon].utf8.allSatisfy(Self.isTokenByte)
            else {
                // Not a header line: junk (the tail of a body, a line of the other framing) ran into a
                // header block. Reading its headers could take a length that is not the next frame's own.
                startResync()
                return .badHeader("bytes that are not a header before a header block")
            }
            let name = line[..<colon].lowercased()
            if name == "content-length" {
                sawLength = true
                let value = Int(line[line.index(after: colon)...].trimmingSpaces())
                if length != nil, value != length { conflicting = true }
                length = value
            }
        }
        let bodyStart = headerEnd + 4
        guard let length, length >= 0, !conflicting else {
            // A block of headers with a bad length is skipped whole; one without any may hide a header
            // after junk on its line ("xyzContent-Length: 2").
            if sawLength { start = bodyStart - 1 }
            startResync()
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

    /// Gives up the header block at `start`: the search for the next header begins one byte further on.
    private mutating func startResync() {
        start += 1
        resyncing = true
    }

    private static let marker = Array("content-length".utf8)

    /// Moves `start` to the next `Content-Length` (any case) and returns true, or drops what cannot hold
    /// one (keeping a tail that may be the marker's first part) and returns false.
    private mutating func resynchronise() -> Bool {
        let m = Self.marker
        var i = start
        while i + m.count <= buffer.count {
            var k = 0
            while k < m.count, Self.lowercased(buffer[i + k]) == m[k] { k += 1 }
            if k == m.count {
                start = i
                resyncing = false
                return true
            }
            i += 1
        }
        start = max(start, buffer.count - (m.count - 1))
        return false
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

    /// RFC 9110 `tchar`: what a header name is made of.
    private static func isTokenByte(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(c)
        }
    }

    @inline(__always) private static func lowercased(_ c: UInt8) -> UInt8 {
        c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") ? c | 0x20 : c
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
