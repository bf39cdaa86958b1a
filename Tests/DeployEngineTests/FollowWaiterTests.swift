@testable import DeployEngine
import DeploymentStore
import Foundation
import Synchronization
import Testing

/// A waiter that blocks until `interrupt()` (or its long timeout) and records how each wait ended.
private final class BlockingFakeWaiter: EventWaiter, @unchecked Sendable {
    private let interrupted = DispatchSemaphore(value: 0)
    let log = Mutex<[String]>([])
    let started = DispatchSemaphore(value: 0)

    func wait(afterSequence: Int, timeoutMs: Int) -> Bool {
        log.withLock { $0.append("wait after \(afterSequence) for \(timeoutMs) ms") }
        started.signal()
        let ended = interrupted.wait(timeout: .now() + .seconds(600))
        log.withLock { $0.append(ended == .success ? "interrupted" : "timed out") }
        return false
    }
    func interrupt() { interrupted.signal() }
    func close() { log.withLock { $0.append("closed") } }
}

@Suite("FollowWaiter")
struct FollowWaiterTests {
    /// Cancelling the follow request reaches the blocking wait: it is interrupted, not left to its timeout,
    /// and the follower sees CancellationError.
    @Test(.timeLimit(.minutes(1))) func cancellationInterruptsTheBlockingWait() async throws {
        let fake = BlockingFakeWaiter()
        let waiter = FollowWaiter(fake)
        #expect(waiter.mechanism == "notify")
        let task = Task { try await waiter.next(afterSeq: 7) }
        await withCheckedContinuation { c in
            DispatchQueue.global().async { fake.started.wait(); c.resume() }
        }
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        waiter.close()
        #expect(fake.log.withLock { $0 } == ["wait after 7 for \(FollowWaiter.recheckMilliseconds) ms", "interrupted", "closed"])
    }

    /// Without a waiter (SQLite) the follower polls; cancellation ends the pause too.
    @Test func withoutAWaiterItPolls() async throws {
        let waiter = FollowWaiter(nil)
        #expect(waiter.mechanism == "poll")
        try await waiter.next(afterSeq: 0)
        let task = Task { try await waiter.next(afterSeq: 0) }
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }
}
