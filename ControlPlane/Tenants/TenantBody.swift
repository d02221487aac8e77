import Foundation
import Logging
import PostgresNIO
import Shared

/// A tenant as the admin API shows it: its tier and the limits in force (tier, overridden by the
/// tenant's quota policy where it says so).
struct TenantBody: Encodable, Sendable {
    struct Limits: Encodable, Sendable {
        /// Per key.
        let queriesPerHour: Int
        /// For the whole tenant, across its keys (the tier's published limit unless the policy says otherwise).
        let tenantQueriesPerHour: Int
        let maxActiveKeys: Int
        let modelClasses: [String]
        let maxCitations: Int
        let cacheTtlSeconds: Int
        let auditRetentionDays: Int
        let canonUpdatesAllowed: Bool
        /// nil: the nodes' default (`cache.semantic_threshold`, 0.95).
        let semanticCacheThreshold: Float?
        /// nil: the nodes' default (0.5): `auto` answers in the cloud class at or above it.
        let routingThreshold: Float?
        /// Whether audit events and the answer cache keep questions as asked; false: redacted.
        let storeRawQuestions: Bool
        /// The classes whose answers are given asynchronously when a request does not say
        /// (`async`); empty: none.
        let asyncModelClasses: [String]
    }

    let id: String
    let name: String
    let slug: String
    let status: String
    let tier: String
    let createdAt: Date
    let revision: Int
    let limits: Limits

    static let select = """
        SELECT t.id, t.name, t.slug, t.status, t.tier_id, t.created_at, t.revision,
               coalesce(p.queries_per_hour, tr.queries_per_hour),
               coalesce(p.tenant_queries_per_hour, tr.queries_per_hour),
               coalesce(p.max_active_keys, tr.max_active_keys),
               coalesce(p.model_classes, tr.model_classes), coalesce(p.max_citations, tr.max_citations),
               coalesce(p.cache_ttl_seconds, tr.cache_ttl_seconds),
               coalesce(p.audit_retention_days, tr.audit_retention_days),
               coalesce(p.canon_updates_allowed, tr.canon_updates_allowed), p.semantic_cache_threshold,
               p.routing_threshold, coalesce(p.store_raw_questions, false),
               coalesce(p.async_model_classes, '{}')
        FROM tenants t JOIN tiers tr ON tr.id = t.tier_id LEFT JOIN quota_policies p ON p.tenant_id = t.id
        """

    typealias Row = (
        UUID, String, String, String, String, Date, Int, Int, Int, Int, [String], Int, Int, Int, Bool, Float?, Float?,
        Bool, [String]
    )

    init(_ row: Row) {
        self.id = row.0.uuidString.lowercased()
        self.name = row.1
        self.slug = row.2
        self.status = row.3
        self.tier = row.4
        self.createdAt = row.5
        self.revision = row.6
        self.limits = Limits(
            queriesPerHour: row.7, tenantQueriesPerHour: row.8, maxActiveKeys: row.9, modelClasses: row.10,
            maxCitations: row.11, cacheTtlSeconds: row.12, auditRetentionDays: row.13, canonUpdatesAllowed: row.14,
            semanticCacheThreshold: row.15, routingThreshold: row.16, storeRawQuestions: row.17,
            asyncModelClasses: row.18
        )
    }

    var etag: String { "\"r\(revision)\"" }

    /// One tenant visible in the connection's scope, or 404.
    static func fetch(_ id: UUID, connection: PostgresConnection, logger: Logger) async throws -> TenantBody {
        let rows = try await connection.query("\(unescaped: Self.select) WHERE t.id = \(id)", logger: logger)
        for try await row in rows.decode(Row.self) { return TenantBody(row) }
        throw Problem.notFound("No such tenant.")
    }
}
