import Foundation
import Logging
import PostgresNIO
import Shared

/// The persistent answer cache in PostgreSQL (migration 8's functions, which run with the rights
/// of their owner: the cache spans tenants and is reached only through the internal API).
struct AnswerCacheStore: Sendable {
    let client: PostgresClient

    /// Stores a batch (a newer answer under the same digest replaces the older); how many were stored.
    func put(_ entries: [AnswerCacheRecord], logger: Logger) async throws -> Int {
        guard !entries.isEmpty else { return 0 }
        let rows = try await self.client.query(
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
        let rows = try await self.client.query(
            "SELECT answer::text, ttl_seconds FROM zaas_answer_cache_get(\(tenant), \(digest))", logger: logger)
        for try await (answer, ttl) in rows.decode((String, Int32).self) { return (answer, ttl) }
        return nil
    }
}
