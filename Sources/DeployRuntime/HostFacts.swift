#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc

/// Available memory (MemAvailable from /proc/meminfo, in MiB; 0 if unreadable) and online CPU count.
public func readHostFacts() -> (freeMemoryMB: Int, cpuCount: Int) {
    let cpus = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    guard let text = FileIO.readString("/proc/meminfo") else { return (0, cpus) }
    var free = 0
    for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
        let kb = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) } ?? 0
        free = kb / 1024
    }
    return (free, cpus)
}
