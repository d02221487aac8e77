import ServiceLifecycle

/// The loop of a background service that works in rounds: the first after `delay`, then one every
/// `interval` until graceful shutdown. A round that failed (the schema not migrated yet, the
/// database away) is tried again after `retry` at most.
enum Rounds {
    static func run(
        firstAfter delay: Duration, every interval: Duration, retryAfter retry: Duration = .seconds(30),
        _ round: @escaping @Sendable () async -> Bool
    ) async {
        try? await cancelWhenGracefulShutdown {
            try await Task.sleep(for: delay)
            while !Task.isCancelled {
                let done = await round()
                try await Task.sleep(for: done ? interval : min(interval, retry))
            }
        }
    }
}
