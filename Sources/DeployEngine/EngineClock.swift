#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The engine's time: what it records and how long it waits (bake windows, keep-warm). Tests use a manual
/// clock whose sleeps return at once and move its time on.
public protocol EngineClock: Sendable {
    /// Now.
    func now() -> Date
    /// Waits `milliseconds` (returns early, throwing, when the task is cancelled).
    func sleep(milliseconds: Int) async throws
}

/// The system's clock.
public struct SystemClock: EngineClock {
    /// The system clock.
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(milliseconds: Int) async throws { try await Task.sleep(for: .milliseconds(milliseconds)) }
}
