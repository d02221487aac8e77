import Synchronization

/// Concurrent identical work on one node done once: the first caller runs it, the others wait
/// for its result.
public final class SingleFlight<Value: Sendable>: Sendable {
    private let inFlight = Mutex<[String: Task<Value, any Error>]>([:])

    public init() {}

    /// The value, and whether this caller waited for another's work.
    public func run(_ key: String, _ work: @escaping @Sendable () async throws -> Value) async throws -> (
        Value, shared: Bool
    ) {
        let (task, shared) = self.inFlight.withLock { flights -> (Task<Value, any Error>, Bool) in
            if let running = flights[key] { return (running, true) }
            // Inserted under the lock before the task can take it to remove itself.
            let task = Task {
                defer { _ = self.inFlight.withLock { $0.removeValue(forKey: key) } }
                return try await work()
            }
            flights[key] = task
            return (task, false)
        }
        return (try await task.value, shared)
    }

    /// Work running now.
    public var count: Int { self.inFlight.withLock { $0.count } }
}
