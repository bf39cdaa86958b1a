#if canImport(Glibc)
import Glibc
#endif
import CPostgres
import Synchronization

extension PostgresStore {
    /// The channel every appended event is announced on (migration 4's trigger), payload `<deployment_id>:<seq>`.
    /// One channel for every schema in the database: a waiter filters by deployment id, and an id from another
    /// schema only costs a spurious read.
    public static let eventChannel = "model_deployer_events"

    /// A waiter listening on ``eventChannel`` for `deploymentId`, on a connection of its own (a session that
    /// `LISTEN`s cannot also run the ledger's transactions: it would see announcements only between them).
    /// - Throws: `.database` when the connection or the `LISTEN` fails.
    public func eventWaiter(deploymentId: String) throws(StoreError) -> (any EventWaiter)? {
        try PostgresEventWaiter(deploymentId: deploymentId, keywords: connectionKeywords, values: listenerValues)
    }

    /// The connection parameters, named for the listening sessions (`pg_stat_activity.application_name`).
    private var listenerValues: [String] {
        zip(connectionKeywords, connectionValues).map { $0 == "application_name" ? "model-deployer-listen" : $1 }
    }
}

/// `LISTEN model_deployer_events` on a dedicated libpq connection; `wait` is `poll()` on the connection's
/// socket and on a wake-up pipe (for ``interrupt()``), then `PQconsumeInput` and `PQnotifies`. It never spins:
/// with nothing to read it sleeps in `poll()` until the timeout.
final class PostgresEventWaiter: EventWaiter, @unchecked Sendable {
    private let deploymentId: String
    /// The connection; locked for a whole `wait` so `close` cannot pull it away mid-wait.
    private let state: Mutex<State>
    private let interrupted = Atomic<Bool>(false)
    /// Written once by `interrupt` and never drained: interruption is for good. Closed in deinit only, so a
    /// late `interrupt` never writes to a descriptor number reused by something else.
    private let wakeRead: Int32
    private let wakeWrite: Int32

    private final class State {
        let connection: PGConnection
        var closed = false
        init(_ c: PGConnection) { connection = c }
    }

    /// How long a `wait` sleeps before answering true when the connection cannot be made (the poll fallback).
    static let reconnectPauseMs = 250

    init(deploymentId: String, keywords: [String], values: [String]) throws(StoreError) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw StoreError(.database, "cannot make a wake-up pipe: \(String(cString: strerror(errno)))")
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)  // not inherited by the slot and router processes the agent starts
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        self.deploymentId = deploymentId
        let connection = PGConnection(keywords: keywords, values: values)
        do {
            try Self.listen(connection)
        } catch {
            Glibc.close(fds[0])
            Glibc.close(fds[1])
            throw StoreError(.database, "cannot listen for ledger events: \(error.description)")
        }
        state = Mutex(State(connection))
    }

    deinit {
        state.withLock { $0.connection.disconnect() }
        Glibc.close(wakeRead)
        Glibc.close(wakeWrite)
    }

    private static func listen(_ c: PGConnection) throws(DBFailure) {
        try c.connect(attempts: 1)
        // The channel is a constant identifier; LISTEN takes no parameters.
        _ = try c.execute("LISTEN \(PostgresStore.eventChannel)", [])
    }

    func wait(afterSequence: Int, timeoutMs: Int) -> Bool {
        state.withLock { st -> Bool in
            if st.closed || interrupted.load(ordering: .acquiring) { return false }
            let c = st.connection
            if !c.isConnected {
                // Announcements made while the connection was down are lost: listen again and have the caller read.
                do {
                    try Self.listen(c)
                    return true
                } catch {
                    c.disconnect()
                    return pause(min(timeoutMs, Self.reconnectPauseMs))
                }
            }
            let deadline = monotonicMillis() + Int64(max(0, timeoutMs))
            while true {
                switch drain(c, afterSequence: afterSequence) {
                case .announced: return true
                case .lost:
                    c.disconnect()
                    return true
                case .nothing: break
                }
                let remaining = deadline - monotonicMillis()
                if remaining <= 0 { return false }
                var fds = [
                    pollfd(fd: LibPQ.api.socket(c.conn), events: Int16(POLLIN), revents: 0),
                    pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                ]
                let rc = poll(&fds, 2, Int32(min(remaining, Int64(Int32.max))))
                if rc < 0 {
                    if errno == EINTR { continue }
                    return pause(Int(min(remaining, Int64(Self.reconnectPauseMs))))
                }
                if fds[1].revents != 0 { return false }
                if rc == 0 { return false }
                // The socket has data (or hung up): the next drain reads it or finds the connection lost.
            }
        }
    }

    func interrupt() {
        interrupted.store(true, ordering: .releasing)
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)  // the pipe is non-blocking; one byte already there is enough
    }

    func close() {
        state.withLock { st in
            st.closed = true
            st.connection.disconnect()
        }
    }

    private enum Drained { case announced, nothing, lost }

    /// Reads what the socket holds and takes every queued notification; whether one names an event of this
    /// deployment after `afterSequence`.
    private func drain(_ c: PGConnection, afterSequence: Int) -> Drained {
        guard LibPQ.api.consumeInput(c.conn) == 1, c.isConnected else { return .lost }
        var found = false
        while let n = LibPQ.api.notifies(c.conn) {
            if let extra = n.pointee.extra, announces(String(cString: extra), afterSequence: afterSequence) { found = true }
            LibPQ.api.freemem(n)
        }
        return found ? .announced : .nothing
    }

    /// Whether a payload names this deployment with a seq above `afterSequence`. A payload of the bare id
    /// (someone's hand-made `NOTIFY`) counts as news.
    private func announces(_ payload: String, afterSequence: Int) -> Bool {
        if payload == deploymentId { return true }
        guard let colon = payload.lastIndex(of: ":"), payload[..<colon] == deploymentId else { return false }
        guard let seq = Int(payload[payload.index(after: colon)...]) else { return true }
        return seq > afterSequence
    }

    /// Sleeps up to `ms` unless interrupted; true when the full pause passed (the caller should read again).
    private func pause(_ ms: Int) -> Bool {
        var fd = pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)
        let deadline = monotonicMillis() + Int64(max(0, ms))
        while true {
            let remaining = deadline - monotonicMillis()
            if remaining <= 0 { return true }
            let rc = poll(&fd, 1, Int32(remaining))
            if rc > 0 { return false }
            if rc == 0 { return true }
            if errno != EINTR { return true }
        }
    }
}

/// Monotonic milliseconds.
private func monotonicMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
