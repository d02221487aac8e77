/// Thrown by `withTimeout` when the deadline passes first.
public struct TimeoutError: Error, CustomStringConvertible {
    public let duration: Duration
    public var description: String { "timed out after \(duration)" }
}

/// Runs `operation`, giving up after `duration`; the operation is cancelled if it loses.
public func withTimeout<Result: Sendable>(
    _ duration: Duration,
    _ operation: @escaping @Sendable () async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Result.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: duration)
            throw TimeoutError(duration: duration)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// The task's result, or nil when it has not ended within `duration`. Unlike `withTimeout`, the
/// task is neither awaited past the deadline nor cancelled: for work that may not notice
/// cancellation (a connection lease, a request to a server that died mid-answer), whose caller
/// must not be held by it. The caller decides whether to cancel it or keep waiting later.
public func result<Success: Sendable>(of task: Task<Success, Never>, within duration: Duration) async -> Success? {
    let (stream, continuation) = AsyncStream<Success?>.makeStream()
    let waiter = Task { continuation.yield(await task.value) }
    let timer = Task {
        try? await Task.sleep(for: duration)
        continuation.yield(nil)
    }
    defer {
        waiter.cancel()
        timer.cancel()
    }
    for await outcome in stream { return outcome }
    return nil
}
