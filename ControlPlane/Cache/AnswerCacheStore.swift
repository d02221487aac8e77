import Foundation
import Logging
import PostgresNIO
import Shared

/// The persistent answer cache in PostgreSQL (migration 8's functions, which run with the rights
/// of their owner: the cache spans tenants and is reached only through the internal API).
struct AnswerCacheStore: Sendable {
    let client: PostgresClient

    struct PutOutcome {
        /// Rows written.
        var stored = 0
        /// Entries the database refused for good, by index in the batch given, with its reason.
        var refused: [(index: Int, reason: String)] = []
    }

    /// Stores a batch (a newer answer under the same digest replaces the older). When the
    /// database refuses the data of the batch (a value no check foresaw), each entry is written
    /// on its own so only the refused ones are lost; any other failure (the database is
    /// unreachable, a deadlock) is thrown for the caller to retry the whole batch.
    func put(_ entries: [AnswerCacheRecord], logger: Logger) async throws -> PutOutcome {
        guard !entries.isEmpty else { return PutOutcome() }
        do {
            return PutOutcome(stored: try await self.write(entries, logger: logger))
        } catch let error as PSQLError where error.isDataRefusal {
            var outcome = PutOutcome()
            for (index, entry) in entries.enumerated() {
                do {
                    outcome.stored += try await self.write([entry], logger: logger)
                } catch let error as PSQLError where error.isDataRefusal {
                    outcome.refused.append((index, "refused by the database (SQLSTATE \(error.sqlState ?? "?"))"))
                }
            }
            return outcome
        }
    }

    private func write(_ entries: [AnswerCacheRecord], logger: Logger) async throws -> Int {
        let rows = try await self.client.queryRows(
            """
            SELECT zaas_answer_cache_put(
                \(entries.map(\.tenantId)), \(entries.map(\.digest)), \(entries.map(\.scope)),
                \(entries.map(\.question)), \(entries.map { $0.embedding ?? "" }), \(entries.map(\.answer)),
                \(entries.map { Int32($0.ttlSeconds) }))
            """,
            logger: logger)
        var count = 0
        for try await stored in rows.decode(Int32.self) { count = Int(stored) }
        return count
    }

    /// An unexpired answer (JSON text) and the seconds it has left.
    func get(tenant: UUID, digest: String, logger: Logger) async throws -> (answer: String, ttlSeconds: Int32)? {
        let rows = try await self.client.queryRows(
            "SELECT answer::text, ttl_seconds FROM zaas_answer_cache_get(\(tenant), \(digest))", logger: logger)
        for try await (answer, ttl) in rows.decode((String, Int32).self) { return (answer, ttl) }
        return nil
    }
}
