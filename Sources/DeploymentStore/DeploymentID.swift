#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// The last (milliseconds, sub-millisecond counter) handed out, so ids made in one process are strictly increasing.
private let lastDeploymentIDClock = Mutex<(ms: UInt64, sub: UInt64)>((0, 0))

/// A new deployment id: a UUIDv7 (RFC 9562) in lowercase text, ordered by `now`.
///
/// The 48-bit Unix millisecond timestamp comes first and the next 12 bits carry the sub-millisecond
/// fraction, so ids sort by creation time as text; within one process, ids are strictly increasing
/// even when the clock stands still or steps back.
/// - Parameter now: the creation instant.
/// - Returns: e.g. `018f3a2b-7c4d-7e5f-8a6b-1c2d3e4f5a6b`.
public func makeDeploymentID(now: Date) -> String {
    let micros = max(0, (now.timeIntervalSince1970 * 1_000_000).rounded(.down))
    var ms = UInt64(micros / 1000)
    var sub = UInt64((micros.truncatingRemainder(dividingBy: 1000)) * 4096 / 1000) & 0xFFF
    lastDeploymentIDClock.withLock { last in
        if ms < last.ms || (ms == last.ms && sub <= last.sub) {
            ms = last.ms
            sub = last.sub + 1
            if sub > 0xFFF { ms += 1; sub = 0 }
        }
        last = (ms, sub)
    }
    var rng = SystemRandomNumberGenerator()
    let randB = rng.next() & 0x3FFF_FFFF_FFFF_FFFF
    let high = (ms & 0xFFFF_FFFF_FFFF) << 16 | 0x7000 | sub
    let low = 0x8000_0000_0000_0000 | randB
    return uuidText(high: high, low: low)
}

/// A UUIDv7 for an instant given in Unix microseconds, with caller-supplied random bits and no
/// monotonic guard: for generating historical ids in bulk (benchmarks, imports).
public func makeDeploymentID(unixMicros micros: Int64, random: UInt64) -> String {
    let ms = UInt64(max(0, micros) / 1000)
    let sub = UInt64(max(0, micros) % 1000) * 4096 / 1000
    let high = (ms & 0xFFFF_FFFF_FFFF) << 16 | 0x7000 | (sub & 0xFFF)
    let low = 0x8000_0000_0000_0000 | (random & 0x3FFF_FFFF_FFFF_FFFF)
    return uuidText(high: high, low: low)
}

private func uuidText(high: UInt64, low: UInt64) -> String {
    let hex: [UInt8] = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(36)
    for (i, word) in [high, low].enumerated() {
        for nibble in 0..<16 {
            let pos = i * 16 + nibble
            if pos == 8 || pos == 12 || pos == 16 || pos == 20 { out.append(UInt8(ascii: "-")) }
            out.append(hex[Int((word >> UInt64(60 - nibble * 4)) & 0xF)])
        }
    }
    return String(decoding: out, as: UTF8.self)
}
