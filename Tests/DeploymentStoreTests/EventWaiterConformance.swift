import DeployCore
@testable import DeploymentStore
import Foundation
import Synchronization
import Testing

/// `eventWaiter(deploymentId:)`: woken by appends made through other connections (Postgres), absent where the
/// store announces nothing (readers poll).
enum EventWaiterConformance {
    static func note(_ id: String, _ message: String) -> DeploymentEvent {
        DeploymentEvent(deploymentId: id, at: instant(1), step: "note", actor: "bob", message: message)
    }

    /// Runs `body` on a thread of its own (so it blocks while the caller goes on) and returns a way to join it.
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) -> () -> T {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let r = body()
            result.withLock { $0 = r }
            done.signal()
        }
        return {
            done.wait()
            return result.withLock { $0! }
        }
    }

    /// SQLite and the in-memory store announce nothing: no waiter, the caller polls.
    static func noWaiter(_ kind: StoreKind) throws {
        try Conformance.withDatabase(kind) { _, store in
            let r = sampleRecord()
            try store.insert(r, event: planEvent())
            #expect(try store.eventWaiter(deploymentId: r.deploymentId) == nil)
        }
    }

    /// An append from another connection (a second store, as another agent process would have) wakes the
    /// waiter: once when it came before the wait (it listened since it was made), once during the wait.
    static func wokenByAnotherConnection() throws {
        try Conformance.withDatabase(.postgres) { db, store in
            let r = sampleRecord()
            try store.insert(r, event: planEvent())
            let waiter = try #require(try store.eventWaiter(deploymentId: r.deploymentId))
            defer { waiter.close() }
            let other = try db.makeStore()
            let e2 = try other.appendEvent(note(r.deploymentId, "between a read and the wait"))
            #expect(e2.seq == 2)
            #expect(waiter.wait(afterSequence: 1, timeoutMs: 60_000) == true)

            let join = onThread { waiter.wait(afterSequence: 2, timeoutMs: 60_000) }
            let e3 = try other.appendEvent(note(r.deploymentId, "during the wait"))
            #expect(e3.seq == 3)
            #expect(join() == true)

            // A status change (transition) is announced too: every path that adds an event row is.
            let join2 = onThread { waiter.wait(afterSequence: 3, timeoutMs: 60_000) }
            try other.transition(id: r.deploymentId, from: .planned, to: .approved, changes: .init(approvedBy: "bob"),
                                 event: note(r.deploymentId, "approved"))
            #expect(join2() == true)
        }
    }

    /// Announcements of other deployments, and of events the caller has already read, do not wake it.
    static func filtersByDeploymentAndSequence() throws {
        try Conformance.withDatabase(.postgres) { db, store in
            let r = sampleRecord()
            try store.insert(r, event: planEvent())
            let waiter = try #require(try store.eventWaiter(deploymentId: r.deploymentId))
            defer { waiter.close() }
            let other = try db.makeStore()
            try other.insert(sampleRecord(model: "other"), event: planEvent())
            _ = try other.appendEvent(note(r.deploymentId, "already read"))
            // Both announcements are consumed and neither is news for a caller that has read up to seq 2.
            #expect(waiter.wait(afterSequence: 2, timeoutMs: 300) == false)
            _ = try other.appendEvent(note(r.deploymentId, "news"))
            #expect(waiter.wait(afterSequence: 2, timeoutMs: 60_000) == true)
        }
    }

    /// `interrupt` wins over a pending announcement and ends a wait in progress; `close` ends later waits.
    static func interruptEndsTheWait() throws {
        try Conformance.withDatabase(.postgres) { db, store in
            let r = sampleRecord()
            try store.insert(r, event: planEvent())
            let other = try db.makeStore()

            let waiter = try #require(try store.eventWaiter(deploymentId: r.deploymentId))
            let join = onThread { waiter.wait(afterSequence: 1, timeoutMs: 600_000) }
            waiter.interrupt()
            #expect(join() == false)
            _ = try other.appendEvent(note(r.deploymentId, "after the interrupt"))
            #expect(waiter.wait(afterSequence: 1, timeoutMs: 600_000) == false)
            waiter.close()

            let closed = try #require(try store.eventWaiter(deploymentId: r.deploymentId))
            closed.close()
            _ = try other.appendEvent(note(r.deploymentId, "after close"))
            #expect(closed.wait(afterSequence: 1, timeoutMs: 600_000) == false)
        }
    }

    /// When the listening session is killed, the waiter says "read again" (announcements may be lost), listens
    /// again on the next wait, and is woken by the next append.
    static func survivesAKilledListener() throws {
        try Conformance.withDatabase(.postgres) { db, store in
            let r = sampleRecord()
            try store.insert(r, event: planEvent())
            let waiter = try #require(try store.eventWaiter(deploymentId: r.deploymentId))
            defer { waiter.close() }
            let killed = try PostgresRestart.psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'model-deployer-listen'")
            #expect(Int(killed) ?? 0 >= 1)
            #expect(waiter.wait(afterSequence: 1, timeoutMs: 60_000) == true)  // lost: read again
            #expect(waiter.wait(afterSequence: 1, timeoutMs: 60_000) == true)  // listening again: read again
            let other = try db.makeStore()
            let join = onThread { waiter.wait(afterSequence: 1, timeoutMs: 60_000) }
            _ = try other.appendEvent(note(r.deploymentId, "after the reconnect"))
            #expect(join() == true)
        }
    }
}

@Suite("Event waiter: SQLite and in-memory")
struct NoEventWaiterTests {
    @Test func sqliteHasNone() throws { try EventWaiterConformance.noWaiter(.sqlite) }
    @Test func inMemoryHasNone() throws { try EventWaiterConformance.noWaiter(.memory) }
}

/// Serialized: one case kills every listening session of the test server.
@Suite("Event waiter: Postgres LISTEN/NOTIFY", .serialized, .enabled(if: testPostgresURL != nil, "MODEL_DEPLOYER_TEST_DATABASE_URL is not set"))
struct PostgresEventWaiterTests {
    @Test func wokenByAnAppendFromAnotherConnection() throws { try EventWaiterConformance.wokenByAnotherConnection() }
    @Test func ignoresOtherDeploymentsAndEventsAlreadyRead() throws { try EventWaiterConformance.filtersByDeploymentAndSequence() }
    @Test(.timeLimit(.minutes(1))) func interruptEndsAWait() throws { try EventWaiterConformance.interruptEndsTheWait() }
    @Test func survivesAKilledListeningSession() throws { try EventWaiterConformance.survivesAKilledListener() }
}
