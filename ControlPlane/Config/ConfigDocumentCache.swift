import Logging
import Shared

/// Signed config documents, built once per (version held, head) and shared: when a change lands,
/// every node asks for the same delta at the same moment, and only the first request builds it.
/// A document older than `refreshAfter` is built again, so what nodes receive is always well
/// inside its validity.
actor ConfigDocumentCache {
    struct Key: Hashable {
        var since: Int64?
        var head: Int64
    }

    private let source: ConfigSource
    private let signingKey: ConfigSigningKey
    private let capacity: Int
    private let refreshAfter: Duration
    private var entries:
        [Key: (built: ContinuousClock.Instant, task: Task<(version: Int64, bytes: [UInt8])?, any Error>)] =
            [:]
    private var order: [Key] = []

    init(source: ConfigSource, signingKey: ConfigSigningKey, refreshAfter: Duration, capacity: Int = 16) {
        self.source = source
        self.signingKey = signingKey
        self.refreshAfter = refreshAfter
        self.capacity = capacity
    }

    /// The signed update from `since` to at least `head`, or nil when nothing is newer than `since`.
    func document(since: Int64?, head: Int64, logger: Logger) async throws -> (version: Int64, bytes: [UInt8])? {
        let key = Key(since: since, head: head)
        if let entry = self.entries[key] {
            if entry.built.duration(to: .now) < self.refreshAfter { return try await entry.task.value }
            self.entries[key] = nil
            self.order.removeAll { $0 == key }
        }
        let source = self.source
        let signingKey = self.signingKey
        let task =
            Task {
                guard let update = try await source.update(since: since, logger: logger) else { return nil }
                return (update.version, SignedConfigDocument.encode(update, signedWith: signingKey))
            } as Task<(version: Int64, bytes: [UInt8])?, any Error>
        self.entries[key] = (.now, task)
        self.order.append(key)
        if self.order.count > self.capacity {
            self.entries[self.order.removeFirst()] = nil
        }
        do {
            return try await task.value
        } catch {
            // Failures are not cached: the next request tries again.
            if self.entries[key]?.task == task {
                self.entries[key] = nil
                self.order.removeAll { $0 == key }
            }
            throw error
        }
    }
}
