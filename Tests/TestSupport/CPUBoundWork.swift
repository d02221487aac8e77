import Dispatch

/// Runs a test's long, processor-bound work (embedding every fixture, scoring hundreds of
/// questions against a plain reference) on a thread of its own instead of the concurrency pool.
///
/// Swift Testing runs tests in parallel on the pool, which has one thread per core: two long
/// synchronous tests on a 2-core machine hold all of it, and every other test (the ones timing
/// Redis round trips, streams and TTLs) stalls until they end; on CI that turned into timeouts a
/// minute long. Here the work runs as part of the same task (so `#expect` still reports to the
/// current test), preferring one serial queue: such work runs one piece at a time on one core, and
/// the pool keeps the other.
public func onOwnThread<T: Sendable>(_ work: () async throws -> T) async rethrows -> T {
    try await withTaskExecutorPreference(CPUBoundExecutor.shared) { try await work() }
}

/// A task executor on one serial dispatch queue (which dispatch backs with a thread outside the
/// concurrency pool).
final class CPUBoundExecutor: TaskExecutor {
    static let shared = CPUBoundExecutor()

    private let queue = DispatchQueue(label: "zaas.tests.cpu-bound")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
