import Synchronization

/// At most `limit` calls to one backend at once from this node; a call past it waits its turn for
/// at most `maximumWait`, then gives up (the router falls back rather than queueing without bound).
/// Waiters are served in arrival order; a waiter whose task is cancelled leaves the queue.
final class ConcurrencyGate: Sendable {
    let limit: Int
    let maximumWait: Duration
    private let state: Mutex<State>

    private struct State {
        var active = 0
        var nextTicket = 0
        /// Waiting calls by ticket, in arrival order.
        var waiters: [(ticket: Int, continuation: CheckedContinuation<Bool, Never>)] = []
    }

    init(limit: Int, maximumWait: Duration) {
        precondition(limit > 0)
        self.limit = limit
        self.maximumWait = maximumWait
        self.state = Mutex(State())
    }

    /// Calls running now.
    var active: Int { self.state.withLock { $0.active } }

    /// Runs `body` within the limit; nil (without running it) when no turn came within the wait.
    func run<Result: Sendable>(_ body: () async throws -> Result) async throws -> Result? {
        guard await self.enter() else { return nil }
        defer { self.leave() }
        return try await body()
    }

    /// Takes a turn, waiting at most `maximumWait`; false when none came.
    func enter() async -> Bool {
        let ticket: Int? = self.state.withLock { state in
            if state.active < self.limit, state.waiters.isEmpty {
                state.active += 1
                return nil
            }
            state.nextTicket += 1
            return state.nextTicket
        }
        guard let ticket else { return true }
        let wait = self.maximumWait
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let admitted = self.state.withLock { state -> Bool in
                    // A turn may have come up between taking the ticket and getting here.
                    if state.active < self.limit, state.waiters.isEmpty {
                        state.active += 1
                        return true
                    }
                    state.waiters.append((ticket, continuation))
                    return false
                }
                if admitted {
                    continuation.resume(returning: true)
                    return
                }
                Task {
                    try? await Task.sleep(for: wait)
                    self.giveUp(ticket)
                }
            }
        } onCancel: {
            self.giveUp(ticket)
        }
    }

    /// Ends a turn: the longest waiter gets it.
    func leave() {
        let next = self.state.withLock { state -> CheckedContinuation<Bool, Never>? in
            if !state.waiters.isEmpty {
                // The turn passes directly to the next waiter: `active` stays the same.
                return state.waiters.removeFirst().continuation
            }
            state.active -= 1
            return nil
        }
        next?.resume(returning: true)
    }

    /// A waiter that timed out or was cancelled leaves the queue (if it is still in it).
    private func giveUp(_ ticket: Int) {
        let waiting = self.state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard let position = state.waiters.firstIndex(where: { $0.ticket == ticket }) else { return nil }
            return state.waiters.remove(at: position).continuation
        }
        waiting?.resume(returning: false)
    }
}
