import Foundation
import Logging
import PostgresNIO
import Shared

/// Tenants, their tiers and quota policies in PostgreSQL. Operators act on any tenant (each change
/// recorded in `operator_audit` by trigger); a tenant admin reads only its own tenant.
struct TenantStore: Sendable {
    let database: ScopedDatabase

    /// One page of tenants by id, optionally of one status.
    func list(status: String?, page: PageRequest, operatorID: UUID, logger: Logger) async throws -> (
        items: [TenantBody], nextCursor: String?
    ) {
        try await self.database.withOperator(operatorID, logger: logger) { connection in
            let rows = try await connection.query(
                """
                \(unescaped: TenantBody.select)
                WHERE (\(status)::text IS NULL OR t.status = \(status))
                  AND (\(page.after)::uuid IS NULL OR t.id > \(page.after))
                ORDER BY t.id LIMIT \(page.limit + 1)
                """,
                logger: logger
            )
            var tenants: [TenantBody] = []
            for try await row in rows.decode(TenantBody.Row.self) { tenants.append(TenantBody(row)) }
            return page.page(tenants, id: \.id)
        }
    }

    func fetch(_ id: UUID, operatorID: UUID, logger: Logger) async throws -> TenantBody {
        try await self.database.withOperator(operatorID, logger: logger) { connection in
            try await TenantBody.fetch(id, connection: connection, logger: logger)
        }
    }

    /// A tenant admin's own tenant.
    func fetch(own tenantID: UUID, logger: Logger) async throws -> TenantBody {
        try await self.database.withTenant(tenantID, logger: logger) { connection in
            try await TenantBody.fetch(tenantID, connection: connection, logger: logger)
        }
    }

    /// A new tenant; its slug is unique.
    func create(name: String, slug: String, tier: String, operatorID: UUID, logger: Logger) async throws -> TenantBody {
        try await self.database.withOperator(operatorID, logger: logger) { connection in
            try await Self.requireTier(tier, connection: connection, logger: logger)
            let id = UUID()
            do {
                try await connection.query(
                    "INSERT INTO tenants (id, name, slug, tier_id) VALUES (\(id), \(name), \(slug), \(tier))",
                    logger: logger
                )
            } catch let error as PSQLError where error.sqlState == "23505" {
                throw Problem.conflict("A tenant with the slug \(slug) already exists.")
            }
            logger.info("tenant created", metadata: ["tenant": "\(id)"])
            return try await TenantBody.fetch(id, connection: connection, logger: logger)
        }
    }

    /// Changes what is given. A deleted tenant stays deleted; suspending or deleting a tenant ends
    /// its admins' sessions.
    func update(
        _ id: UUID, name: String?, status: String?, tier: String?, ifMatch: String?, operatorID: UUID, logger: Logger
    ) async throws -> TenantBody {
        try await self.database.withOperator(operatorID, logger: logger) { connection in
            let current = try await TenantBody.fetch(id, connection: connection, logger: logger)
            if let ifMatch, ifMatch != current.etag { throw Problem.preconditionFailed }
            if current.status == "deleted", status != nil, status != "deleted" {
                throw Problem.conflict("A deleted tenant stays deleted.")
            }
            if let tier { try await Self.requireTier(tier, connection: connection, logger: logger) }
            try await connection.query(
                """
                UPDATE tenants SET name = coalesce(\(name), name), status = coalesce(\(status), status),
                       tier_id = coalesce(\(tier), tier_id), updated_at = now(), revision = revision + 1
                WHERE id = \(id)
                """,
                logger: logger
            )
            if status == "deleted" || status == "suspended" {
                // Their sessions end with the tenant's access.
                try await connection.query(
                    "UPDATE admin_sessions SET revoked_at = now() WHERE tenant_id = \(id) AND revoked_at IS NULL",
                    logger: logger
                )
            }
            return try await TenantBody.fetch(id, connection: connection, logger: logger)
        }
    }

    /// Replaces the tenant's quota policy (every field; nil means "as the tier says").
    func setQuotaPolicy(
        _ id: UUID, _ policy: TenantController.QuotaPolicy, operatorID: UUID, logger: Logger
    ) async throws -> TenantBody {
        try await self.database.withOperator(operatorID, logger: logger) { connection in
            _ = try await TenantBody.fetch(id, connection: connection, logger: logger)
            try await connection.query(
                """
                INSERT INTO quota_policies (tenant_id, queries_per_hour, tenant_queries_per_hour, max_active_keys,
                    model_classes, max_citations, cache_ttl_seconds, audit_retention_days, canon_updates_allowed,
                    semantic_cache_threshold, routing_threshold, store_raw_questions, async_model_classes)
                VALUES (\(id), \(policy.queriesPerHour), \(policy.tenantQueriesPerHour), \(policy.maxActiveKeys),
                    \(policy.modelClasses),
                    \(policy.maxCitations), \(policy.cacheTtlSeconds), \(policy.auditRetentionDays),
                    \(policy.canonUpdatesAllowed), \(policy.semanticCacheThreshold),
                    \(policy.routingThreshold), \(policy.storeRawQuestions), \(policy.asyncModelClasses))
                ON CONFLICT (tenant_id) DO UPDATE SET
                    queries_per_hour = EXCLUDED.queries_per_hour,
                    tenant_queries_per_hour = EXCLUDED.tenant_queries_per_hour,
                    max_active_keys = EXCLUDED.max_active_keys,
                    model_classes = EXCLUDED.model_classes, max_citations = EXCLUDED.max_citations,
                    cache_ttl_seconds = EXCLUDED.cache_ttl_seconds,
                    audit_retention_days = EXCLUDED.audit_retention_days,
                    canon_updates_allowed = EXCLUDED.canon_updates_allowed,
                    semantic_cache_threshold = EXCLUDED.semantic_cache_threshold,
                    routing_threshold = EXCLUDED.routing_threshold,
                    store_raw_questions = EXCLUDED.store_raw_questions,
                    async_model_classes = EXCLUDED.async_model_classes,
                    updated_at = now(), revision = quota_policies.revision + 1
                """,
                logger: logger
            )
            return try await TenantBody.fetch(id, connection: connection, logger: logger)
        }
    }

    static func requireTier(_ tier: String, connection: PostgresConnection, logger: Logger) async throws {
        var known: [String] = []
        for try await id in try await connection.query("SELECT id FROM tiers ORDER BY sort_order", logger: logger)
            .decode(String.self)
        {
            known.append(id)
        }
        guard known.contains(tier) else {
            throw Problem.validation([FieldError("tier", "must be one of \(known.joined(separator: ", "))")])
        }
    }
}
