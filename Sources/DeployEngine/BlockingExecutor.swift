#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A task executor whose threads may block: ledger calls (SQLite, libpq), process waits and large hashes
/// run here instead of on Swift's cooperative pool, which has one thread per core (two on the machines
/// this runs on) and stalls every other request while those threads wait.
///
/// Threads are made on demand up to `maxThreads` and leave after `idleSeconds` without work, so an idle
/// agent holds none. Jobs run in arrival order.
public final class BlockingExecutor: TaskExecutor, @unchecked Sendable {
    /// The executor every engine call runs on.
    public static let shared = BlockingExecutor(maxThreads: 64, idleSeconds: 30)

    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Guarded by `lock`.
    private var queue: [UnownedJob] = []
    private var head = 0
    private var idle = 0
    private var threads = 0
    private let maxThreads: Int
    private let idleSeconds: Int

    /// - Parameters:
    ///   - maxThreads: the most threads at once; past it, jobs wait for a free thread.
    ///   - idleSeconds: how long a thread waits for work before it ends.
    public init(maxThreads: Int, idleSeconds: Int) {
        self.maxThreads = max(1, maxThreads)
        self.idleSeconds = max(1, idleSeconds)
        pthread_mutex_init(lock, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(wake, &attr)
        pthread_condattr_destroy(&attr)
    }

    /// Threads running now (for tests and diagnostics).
    public var threadCount: Int {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return threads
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        pthread_mutex_lock(lock)
        queue.append(unowned)
        var spawn = false
        if idle > 0 {
            pthread_cond_signal(wake)
        } else if threads < maxThreads {
            threads += 1
            spawn = true
        }
        pthread_mutex_unlock(lock)
        if spawn { startThread() }
    }

    private func startThread() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { raw in
            let me = Unmanaged<BlockingExecutor>.fromOpaque(raw!).takeRetainedValue()
            me.work()
            return nil
        }, box)
        if rc == 0 {
            pthread_detach(tid)
        } else {
            // No thread to be had: the job stays queued for a running thread, or runs on this one.
            Unmanaged<BlockingExecutor>.fromOpaque(box).release()
            pthread_mutex_lock(lock)
            threads -= 1
            let orphaned = threads == 0
            pthread_mutex_unlock(lock)
            if orphaned { drainInline() }
        }
    }

    private func drainInline() {
        while let job = take(waiting: false) { job.runSynchronously(on: asUnownedTaskExecutor()) }
    }

    /// The next job; waits up to `idleSeconds` when `waiting`. Nil when there is none.
    private func take(waiting: Bool) -> UnownedJob? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        if waiting, head == queue.count {
            var deadline = timespec()
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            deadline.tv_sec += idleSeconds
            idle += 1
            while head == queue.count {
                if pthread_cond_timedwait(wake, lock, &deadline) == ETIMEDOUT { break }
            }
            idle -= 1
        }
        guard head < queue.count else { return nil }
        let job = queue[head]
        head += 1
        if head > 1024, head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        } else if head == queue.count {
            queue.removeAll(keepingCapacity: queue.count <= 1024)
            head = 0
        }
        return job
    }

    private func work() {
        while true {
            guard let job = take(waiting: true) else {
                pthread_mutex_lock(lock)
                // Work may have arrived between the timeout and this lock: stay for it.
                if head < queue.count {
                    pthread_mutex_unlock(lock)
                    continue
                }
                threads -= 1
                pthread_mutex_unlock(lock)
                return
            }
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
