import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle

/// Removes expired answers and answers of canon versions since replaced, in the background.
struct AnswerCacheSweeper: Service {
    let client: PostgresClient
    let interval: Duration
    let logger: Logger
    let removed = Counter(label: "zaas_answer_cache_swept_total")
    static let batch: Int32 = 5000

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.interval)
                await self.sweep()
            }
        }
    }

    /// Deletes in batches until a batch comes back short.
    @discardableResult
    func sweep() async -> Int {
        var total = 0
        do {
            while true {
                let rows = try await self.client.queryRows(
                    "SELECT zaas_answer_cache_sweep(\(Self.batch))", logger: self.logger)
                var removed: Int32 = 0
                for try await count in rows.decode(Int32.self) { removed = count }
                total += Int(removed)
                if removed < Self.batch { break }
            }
        } catch {
            self.logger.warning("answer cache sweep failed", metadata: ["error": "\(String(reflecting: error))"])
        }
        if total > 0 { self.removed.increment(by: total) }
        return total
    }
}
