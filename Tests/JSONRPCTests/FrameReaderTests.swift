import Testing
import JSONRPC

/// Feeds `chunks` to a reader and collects what it yields.
func frames(_ chunks: [String], max: Int = 1 << 20) -> (Framing?, [String]) {
    var r = FrameReader(maxFrameBytes: max)
    var out: [String] = []
    for c in chunks {
        Array(c.utf8).withUnsafeBytes { r.append($0) }
        while let e = r.next() {
            switch e {
            case .frame(let range): out.append(String(decoding: r.buffer[range], as: UTF8.self))
            case .tooLarge(let n): out.append("<too large \(n)>")
            case .badHeader: out.append("<bad header>")
            }
        }
        r.compact()
    }
    return (r.framing, out)
}

@Suite struct FrameReaderTests {
    @Test func detectsNewlineDelimitedAndSplitsAcrossReads() {
        let (f, out) = frames(["  {\"a\":1}\n{\"b\"", ":2}\r\n\n[3]\n"])
        #expect(f == .newlineDelimited)
        #expect(out == ["{\"a\":1}", "{\"b\":2}", "[3]"])
    }

    @Test func detectsContentLengthAndSplitsAcrossReads() {
        let (f, out) = frames(["Content-Length: 7\r\n\r\n{\"a\":1}Content-Le", "ngth: 2\r\ncontent-type: x\r\n\r\n[]"])
        #expect(f == .contentLength)
        #expect(out == ["{\"a\":1}", "[]"])
    }

    @Test func skipsAnOversizedLineAndStaysInSync() {
        let big = String(repeating: "x", count: 5000)
        let (_, out) = frames(["{\"a\":\"", big, big, "\"}\n{\"ok\":1}\n"], max: 2048)
        #expect(out.count == 2)
        #expect(out[0].hasPrefix("<too large"))
        #expect(out[1] == "{\"ok\":1}")
    }

    @Test func skipsAnOversizedContentLengthBodyAndStaysInSync() {
        let big = String(repeating: "y", count: 4000)
        let (_, out) = frames(["Content-Length: 4000\r\n\r\n", String(big.prefix(100)), String(big.dropFirst(100)),
                               "Content-Length: 2\r\n\r\n{}"], max: 1024)
        #expect(out == ["<too large 4000>", "{}"])
    }

    @Test func reportsAHeaderWithoutLength() {
        let (_, out) = frames(["Content-Type: x\r\n\r\nContent-Length: 2\r\n\r\n{}"])
        #expect(out == ["<bad header>", "{}"])
    }
}
