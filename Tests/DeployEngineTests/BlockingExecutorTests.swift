import DeployEngine
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A gate that blocks the thread that waits on it (as a ledger call or a process wait does).
private final class ThreadGate: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var open = false
    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }
    func wait() {
        pthread_mutex_lock(&mutex)
        while !open { pthread_cond_wait(&cond, &mutex) }
        pthread_mutex_unlock(&mutex)
    }
    func release() {
        pthread_mutex_lock(&mutex)
        open = true
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
    }
}

private final class Counter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

@Suite struct BlockingExecutorTests {
    /// More blocked calls than the machine has cores, and one more call still runs to completion: the gate
    /// is opened only by that last call, so on a pool of one thread per core this test would never end.
    @Test func blockedCallsDoNotStarveTheNextOne() async {
        let executor = BlockingExecutor(maxThreads: 16, idleSeconds: 1)
        let gate = ThreadGate()
        let blockers = 2 * max(2, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let entered = Counter()
        await withTaskGroup(of: String.self) { group in
            for _ in 0..<blockers {
                group.addTask(executorPreference: executor) {
                    entered.add()
                    gate.wait()
                    return "blocked"
                }
            }
            group.addTask(executorPreference: executor) {
                // Waits (without blocking a thread) until every blocker holds a thread, then frees them.
                while entered.value < blockers { await Task.yield() }
                gate.release()
                return "freed"
            }
            var results: [String] = []
            for await r in group { results.append(r) }
            #expect(results.filter { $0 == "blocked" }.count == blockers)
            #expect(results.contains("freed"))
        }
        #expect(executor.threadCount <= 16)
    }

    /// Idle threads leave, so an idle agent holds none.
    @Test func idleThreadsLeave() async throws {
        let executor = BlockingExecutor(maxThreads: 4, idleSeconds: 1)
        // Asked while the job runs on one of its threads: a later look could come after the idle timeout.
        let during = await withTaskExecutorPreference(executor) { () async -> Int in
            await Task.yield()
            return executor.threadCount
        }
        #expect(during >= 1)
        var waited = 0
        while executor.threadCount > 0, waited < 100 {
            try await Task.sleep(for: .milliseconds(100))
            waited += 1
        }
        #expect(executor.threadCount == 0)
    }
}
