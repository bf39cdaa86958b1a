#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeployCore
import JSON

/// The hash chain over a deployment's events: a later edit, insertion or deletion of a history row shows.
///
/// `hash = hex(sha256(utf8(prev_hash) || canonical event))`, where `prev_hash` is the hash of the
/// deployment's previous event (`""` for its first chained event) and the canonical event is the RFC 8785
/// JSON of `{deployment_id, seq, at_us, from_status, to_status, step, actor, message, data}` (`at_us`:
/// Unix microseconds, as both ledgers store it). `data` includes any signature, so signatures are
/// covered too. `scripts/verify-ledger` computes the same bytes in Python.
///
/// The chain lives in the same database as the events: it shows edits made by anyone who does not
/// recompute every later hash. Keeping the `head` hash elsewhere (a ticket, a log) closes that gap.
public enum EventChain {
    /// The bytes an event's hash covers.
    public static func canonical(_ e: DeploymentEvent) -> [UInt8] {
        CanonicalJSON.bytes([
            "deployment_id": .string(e.deploymentId), "seq": .int(Int64(e.seq)), "at_us": .int(Micros.from(e.at)),
            "from_status": .string(e.fromStatus?.rawValue), "to_status": .string(e.toStatus?.rawValue),
            "step": .string(e.step), "actor": .string(e.actor), "message": .string(e.message), "data": e.data,
        ])
    }

    /// The hash of `event` linked after `previous`.
    public static func hash(previous: String, _ event: DeploymentEvent) -> String {
        var h = SHA256()
        h.update(previous.utf8)
        h.update(canonical(event))
        return SHA256.hex(h.finalize())
    }

    /// Checks one deployment's events (all of them, in any order).
    ///
    /// Events written before the chain existed (no hash) may only come first; every later event must
    /// link to the one before it and hash to what is stored; seqs must run 1, 2, 3, ... without a gap.
    public static func verify(_ events: [DeploymentEvent]) -> ChainReport {
        let sorted = events.sorted { $0.seq < $1.seq }
        var prev: String? = nil
        var unchained = 0
        for (i, e) in sorted.enumerated() {
            let expectedSeq = i + 1
            if e.seq != expectedSeq {
                return ChainReport(verified: false, brokenAtSeq: expectedSeq, note: "event \(expectedSeq) is missing or unreadable", head: prev)
            }
            guard let stored = e.hash else {
                if prev != nil {
                    return ChainReport(verified: false, brokenAtSeq: e.seq, note: "event \(e.seq) has no hash but follows chained events", head: prev)
                }
                unchained += 1
                continue
            }
            let link = prev ?? ""
            if e.prevHash != link {
                return ChainReport(verified: false, brokenAtSeq: e.seq, note: "event \(e.seq) does not link to the event before it", head: prev)
            }
            if hash(previous: link, e) != stored {
                return ChainReport(verified: false, brokenAtSeq: e.seq, note: "event \(e.seq) was changed after it was written", head: prev)
            }
            prev = stored
        }
        var note: String? = nil
        if unchained > 0 {
            note = unchained == sorted.count
                ? "none of the \(unchained) events is hash-chained: they were written before the ledger kept a hash chain (migration 2) or bulk-loaded"
                : "events 1-\(unchained) were written before the ledger kept a hash chain (migration 2) and are not covered; the chain starts at event \(unchained + 1)"
        }
        return ChainReport(verified: true, brokenAtSeq: nil, note: note, head: prev)
    }
}

/// Whether a deployment's event chain holds.
public struct ChainReport: Sendable, Hashable {
    /// `true` when every chained event hashes to what is stored and links to the one before it.
    public var verified: Bool
    /// The first event that fails (missing, changed, unlinked).
    public var brokenAtSeq: Int?
    /// What is not covered or what failed, for people.
    public var note: String?
    /// The last good hash (what to keep elsewhere to anchor the chain).
    public var head: String?

    /// A report.
    public init(verified: Bool, brokenAtSeq: Int?, note: String?, head: String?) {
        self.verified = verified
        self.brokenAtSeq = brokenAtSeq
        self.note = note
        self.head = head
    }

    /// The wire form: `{verified, broken_at_seq?, note?, head?}`.
    public var json: JSONValue {
        var o: [String: JSONValue] = ["verified": .bool(verified)]
        if let brokenAtSeq { o["broken_at_seq"] = .int(Int64(brokenAtSeq)) }
        if let note { o["note"] = .string(note) }
        if let head { o["head"] = .string(head) }
        return .object(o)
    }
}
