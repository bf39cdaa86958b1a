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

@Suite struct FrameReaderResyncTests {
    static let ok = "Content-Length: 2\r\n\r\n{}"

    @Test(arguments: ["abc", "-5", "", "99999999999999999999999", "2, 3"])
    func aBadLengthCostsOnlyItsOwnFrame(length: String) {
        let bad = "Content-Length: \(length)\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"
        let (_, out) = frames([Self.ok, bad, Self.ok, Self.ok])
        #expect(out == ["{}", "<bad header>", "{}", "{}"])
    }

    @Test func aHeaderBlockWithoutLengthCostsOnlyItsOwnFrame() {
        let (_, out) = frames([Self.ok, "Content-Type: x\r\n\r\n{\"a\":1}", Self.ok, "Content-Length: 3\r\n\r\n[1]"])
        #expect(out == ["{}", "<bad header>", "{}", "[1]"])
    }

    @Test func conflictingLengthsAreBad() {
        // The block is skipped whole, not re-read from its second header.
        let (_, out) = frames(["Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}x", Self.ok])
        #expect(out == ["<bad header>", "{}"])
    }

    @Test func junkBeforeAHeaderIsReportedAndTheHeaderKept() {
        // The junk and the header land in one block: the header inside it must still be found.
        let (_, out) = frames([Self.ok, "{\"stray\":1}\n", Self.ok, "rpc\":\"2.0\"}content-length: 2\r\n\r\n[]"])
        #expect(out == ["{}", "<bad header>", "{}", "<bad header>", "[]"])
    }

    @Test func theNextHeaderIsFoundAcrossReadsByteByByte() {
        let stream = "Content-Length: x\r\n\r\n{\"body\":true}" + Self.ok + Self.ok
        let (_, out) = frames(stream.map { String($0) })
        #expect(out == ["<bad header>", "{}", "{}"])
    }

    @Test func aLongBlockWithoutHeaderEndResyncs() {
        let junk = String(repeating: "z", count: 9000)
        let (_, out) = frames([Self.ok, junk, Self.ok])
        #expect(out == ["{}", "<bad header>", "{}"])
    }

    @Test func aLyingLengthSwallowsTheNextFrameOnlyAndReadingResumes() {
        // 10 bytes more than the body: the next frame's header is eaten, its remains are one bad block.
        let (_, out) = frames(["Content-Length: 12\r\n\r\n{}", Self.ok, Self.ok, Self.ok])
        #expect(out.first == "{}Content-Le")
        #expect(out.dropFirst() == ["<bad header>", "{}", "{}"])
    }

    @Test func noPartialFrameIsReportedForTheTailOfABadBlock() {
        var r = FrameReader()
        Array("Content-Length: nope\r\n\r\n{\"x\":1}".utf8).withUnsafeBytes { r.append($0) }
        var events: [FrameEvent] = []
        while let e = r.next() { events.append(e) }
        #expect(events.count == 1)
        #expect(!r.hasPartialFrame)
    }

    @Test func aTruncatedFrameIsPartialAndTheFramingKnownBeforeAnyEvent() {
        var r = FrameReader()
        Array("Content-Length: 40\r\n\r\n{\"jsonrpc\"".utf8).withUnsafeBytes { r.append($0) }
        #expect(r.next() == nil)
        #expect(r.framing == .contentLength)
        #expect(r.hasPartialFrame)
    }
}

@Suite struct FrameReaderJunkTests {
    @Test func aJunkLineBeforeHeadersDoesNotLendItsBlockAWrongLength() {
        // The junk line hides the first of two conflicting lengths unless the block is refused as a whole.
        let (_, out) = frames([FrameReaderResyncTests.ok, "{\"x\":1}\n", "Content-Length: 2\r\nContent-Length: 5\r\n\r\n{}",
                               "Content-Length: 3\r\n\r\n[1]"])
        #expect(out == ["{}", "<bad header>", "<bad header>", "[1]"])
    }

    @Test func aLineWithoutColonIsNotAHeader() {
        let (_, out) = frames([FrameReaderResyncTests.ok, "junk\r\nContent-Length: 2\r\n\r\n{}"])
        #expect(out == ["{}", "<bad header>", "{}"])
    }
}

@Suite struct FrameReaderMemoryTests {
    @Test func theBufferShrinksBackAfterABigFrame() {
        var r = FrameReader(maxFrameBytes: 8 << 20)
        let big = "[" + String(repeating: "1,", count: 1_500_000) + "1]\n"
        Array(big.utf8).withUnsafeBytes { r.append($0) }
        guard case .frame(let range)? = r.next() else { Issue.record("no frame"); return }
        #expect(range.count == big.utf8.count - 1)
        #expect(r.buffer.capacity >= 3_000_000)
        r.compact()
        #expect(r.buffer.capacity <= 1 << 21)
        Array("{\"after\":1}\n".utf8).withUnsafeBytes { r.append($0) }
        guard case .frame(let next)? = r.next() else { Issue.record("no frame after"); return }
        #expect(String(decoding: r.buffer[next], as: UTF8.self) == "{\"after\":1}")
    }
}
