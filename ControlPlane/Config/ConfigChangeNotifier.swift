import Logging
import PostgresNIO
import ServiceLifecycle

/// The newest change-log version this control plane knows of, and the watch requests waiting for
/// it to move. `ConfigChangeListener` advances it from PostgreSQL's notifications.
actor ConfigChangeNotifier {
    private(set) var latest: Int64 = 0
    private var waiters: [Int: (after: Int64, continuation: CheckedContinuation<Void, Never>)] = [:]
    /// Waiters released (timed out, cancelled) before they were registered.
    private var released: Set<Int> = []
    private var nextID = 0

    func advance(to version: Int64) {
        guard version > self.latest else { return }
        self.latest = version
        for (id, waiter) in self.waiters where waiter.after < version {
            self.waiters[id] = nil
            waiter.continuation.resume()
        }
    }

    /// Returns when a version newer than `after` is known (true) or `timeout` passed (false).
    nonisolated func waitForChange(after: Int64, timeout: Duration) async -> Bool {
        let id = await self.makeID()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.suspend(id: id, after: after) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                await self.release(id: id)
            }
            await group.next()
            group.cancelAll()
        }
        await self.forget(id: id)
        return await self.latest > after
    }

    private func makeID() -> Int {
        self.nextID += 1
        return self.nextID
    }

    private func suspend(id: Int, after: Int64) async {
        if self.latest > after || self.released.remove(id) != nil { return }
        await withCheckedContinuation { continuation in
            self.waiters[id] = (after, continuation)
        }
    }

    private func release(id: Int) {
        if let waiter = self.waiters.removeValue(forKey: id) {
            waiter.continuation.resume()
        } else {
            self.released.insert(id)
        }
    }

    /// Forgets release marks of waiters that finished (called once per wait, after both tasks ended).
    private func forget(id: Int) {
        self.released.remove(id)
    }
}
