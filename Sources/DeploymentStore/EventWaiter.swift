/// Waits for a deployment's next events to be appended, by another connection or process.
///
/// A port: the Postgres store implements it with `LISTEN`/`NOTIFY` on a connection of its own
/// (``PostgresEventWaiter``); a store without notifications has none (``DeploymentStore/eventWaiter(deploymentId:)``
/// returns nil) and its readers poll. `wait` blocks its thread, so callers run it off Swift's cooperative pool.
///
/// Listening starts when the waiter is made: an event appended after that and before a `wait` is not missed.
/// `wait` and `close` are called by one caller at a time; `interrupt` may be called from any thread at any time.
public protocol EventWaiter: AnyObject, Sendable {
    /// Blocks until an event of the deployment with a seq above `afterSequence` is announced, `timeoutMs`
    /// passes, or ``interrupt()`` is called.
    /// - Returns: true when the ledger should be read again now: an event was announced, or announcements may
    ///   have been missed (the listening connection was lost and made again, or cannot be made: then after at
    ///   most 250 ms, like a poll). False on timeout or interruption.
    func wait(afterSequence: Int, timeoutMs: Int) -> Bool

    /// Makes the current `wait` (if any) and every later one return false at once (cancellation).
    func interrupt()

    /// Stops listening and releases the connection. A later `wait` returns false at once.
    func close()
}

extension DeploymentStore {
    /// Stores without change notifications: readers poll.
    public func eventWaiter(deploymentId: String) throws(StoreError) -> (any EventWaiter)? { nil }
}
