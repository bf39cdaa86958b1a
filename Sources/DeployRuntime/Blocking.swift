import Glibc

/// Runs blocking system-call work on a dedicated detached thread so it never stalls the cooperative pool.
public enum Blocking {
    private final class Job: @unchecked Sendable {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Runs `work` on a fresh thread and resumes with its result.
    public static func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (cont: CheckedContinuation<T, Never>) in
            let job = Job { cont.resume(returning: work()) }
            let raw = Unmanaged.passRetained(job).toOpaque()
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { ctx in
                let job = Unmanaged<Job>.fromOpaque(ctx!).takeRetainedValue()
                job.body()
                return nil
            }, raw)
            if rc == 0 {
                pthread_detach(tid)
            } else {
                // No thread available: run inline rather than fail.
                Unmanaged<Job>.fromOpaque(raw).takeRetainedValue().body()
            }
        }
    }

    /// Like `run`, for work that throws `RuntimeError`.
    static func run<T: Sendable>(throwing work: @escaping @Sendable () throws(RuntimeError) -> T) async throws(RuntimeError) -> T {
        let result: Result<T, RuntimeError> = await run { () -> Result<T, RuntimeError> in
            do throws(RuntimeError) { return .success(try work()) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

/// Monotonic milliseconds.
func monotonicMs() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1_000_000
}

/// Sleeps without throwing; if the task is already cancelled it still waits (cleanup paths must finish).
func pause(milliseconds: Int) async {
    if Task.isCancelled {
        usleep(UInt32(max(0, milliseconds)) * 1000)
    } else {
        try? await Task.sleep(for: .milliseconds(milliseconds))
    }
}

extension Duration {
    var secondsDouble: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
