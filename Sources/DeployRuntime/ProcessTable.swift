import Glibc

/// A snapshot of /proc: who is whose child, in which process group, in which state.
struct ProcInfo: Sendable, Hashable {
    var pid: Int32
    var ppid: Int32
    var pgrp: Int32
    var state: Character
}

enum ProcessTable {
    /// Parses `/proc/<pid>/stat` (the command name may contain spaces and parentheses).
    static func info(_ pid: Int32) -> ProcInfo? {
        guard let bytes = FileIO.readBytes("/proc/\(pid)/stat", limit: 4096),
              let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let rest = String(decoding: bytes[(close + 1)...], as: UTF8.self).split(separator: " ")
        guard rest.count >= 4, let st = rest[0].first, let ppid = Int32(rest[1]), let pgrp = Int32(rest[2]) else { return nil }
        return ProcInfo(pid: pid, ppid: ppid, pgrp: pgrp, state: st)
    }

    /// Every process currently visible.
    static func snapshot() -> [ProcInfo] {
        FileIO.list("/proc").compactMap { Int32($0) }.compactMap { info($0) }
    }

    /// All descendants of `roots` (not including the roots), found through parent links.
    static func descendants(of roots: Set<Int32>, in table: [ProcInfo]) -> Set<Int32> {
        var children: [Int32: [Int32]] = [:]
        for p in table { children[p.ppid, default: []].append(p.pid) }
        var out: Set<Int32> = []
        var queue = Array(roots)
        while let next = queue.popLast() {
            for c in children[next] ?? [] where !out.contains(c) && !roots.contains(c) {
                out.insert(c)
                queue.append(c)
            }
        }
        return out
    }

    /// Pids whose initial environment contains exactly `entry` (`KEY=value`).
    static func pids(withEnvironmentEntry entry: String, in table: [ProcInfo]) -> Set<Int32> {
        let needle = Array(entry.utf8)
        var out: Set<Int32> = []
        for p in table where p.state != "Z" {
            guard let env = FileIO.readBytes("/proc/\(p.pid)/environ", limit: 1 << 20) else { continue }
            if env.split(separator: 0).contains(where: { $0.elementsEqual(needle) }) { out.insert(p.pid) }
        }
        return out
    }

    /// `true` when `pid`'s initial environment contains `entry`; `nil` when it cannot be read.
    static func hasEnvironmentEntry(_ pid: Int32, _ entry: String) -> Bool? {
        guard let env = FileIO.readBytes("/proc/\(pid)/environ", limit: 1 << 20) else { return nil }
        let needle = Array(entry.utf8)
        return env.split(separator: 0).contains(where: { $0.elementsEqual(needle) })
    }

    /// `true` when some non-zombie process is in group `pgid`.
    static func groupAlive(_ pgid: Int32) -> Bool {
        guard pgid > 0 else { return false }
        if kill(-pgid, 0) != 0 && errno == ESRCH { return false }
        return snapshot().contains { $0.pgrp == pgid && $0.state != "Z" }
    }
}
