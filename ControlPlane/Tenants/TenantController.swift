import Common
import Foundation
import Hummingbird
import Logging
import PostgresNIO

/// Operators manage tenants (`/admin/v1/tenants…`); tenant admins see their own tenant and manage
/// their admins (`/admin/v1/tenant`, `/admin/v1/admins`).
struct TenantController: Sendable {
    let database: ScopedDatabase
    let accounts: AdminAccounts

    struct CreateTenant: Decodable {
        let name: String
        let slug: String
        let tier: String
    }

    struct UpdateTenant: Decodable {
        let name: String?
        let status: String?
        let tier: String?
    }

    /// Every field optional; `null` or absent means "as the tier says".
    struct QuotaPolicy: Codable {
        let queriesPerHour: Int?
        let tenantQueriesPerHour: Int?
        let modelClasses: [String]?
        let maxCitations: Int?
        let cacheTtlSeconds: Int?
        let auditRetentionDays: Int?
        let canonUpdatesAllowed: Bool?
        let semanticCacheThreshold: Float?

        static let fields: Set<String> = [
            "queries_per_hour", "tenant_queries_per_hour", "model_classes", "max_citations", "cache_ttl_seconds",
            "audit_retention_days", "canon_updates_allowed", "semantic_cache_threshold",
        ]

        var errors: [FieldError] {
            var errors: [FieldError] = []
            func check(_ value: Int?, _ field: String, _ range: ClosedRange<Int>) {
                if let value, !range.contains(value) {
                    errors.append(FieldError(field, "must be between \(range.lowerBound) and \(range.upperBound)"))
                }
            }
            check(queriesPerHour, "queries_per_hour", 1...10_000_000)
            check(tenantQueriesPerHour, "tenant_queries_per_hour", 1...100_000_000)
            check(maxCitations, "max_citations", 1...50)
            check(cacheTtlSeconds, "cache_ttl_seconds", 0...2_592_000)
            check(auditRetentionDays, "audit_retention_days", 1...3650)
            if let semanticCacheThreshold, !(0.8...1).contains(semanticCacheThreshold) {
                errors.append(FieldError("semantic_cache_threshold", "must be between 0.8 and 1"))
            }
            if let modelClasses {
                if modelClasses.isEmpty || !Set(modelClasses).isSubset(of: ["local", "cloud"]) {
                    errors.append(FieldError("model_classes", "must be a non-empty list of local and cloud"))
                }
            }
            return errors
        }
    }

    struct UpdateAdmin: Decodable {
        let role: String?
        let status: String?
    }

    struct Page: Encodable {
        let items: [TenantBody]
        let nextCursor: String?
    }

    struct AdminPage: Encodable {
        let items: [AdminAccounts.AdminBody]
    }

    /// 1 to 63 of `[a-z0-9-]`, not starting or ending with a hyphen (a DNS label).
    static func isValidSlug(_ slug: String) -> Bool {
        let bytes = Array(slug.utf8)
        guard (1...63).contains(bytes.count), bytes.first != 0x2D, bytes.last != 0x2D else { return false }
        return bytes.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }

    func addRoutes(to router: Router<AdminRequestContext>) {
        let tenants = router.group("/admin/v1/tenants", context: OperatorContext.self)
        tenants.post { request, context in
            let body = try await StrictJSON.decode(
                CreateTenant.self, from: request, context: context, allowedFields: ["name", "slug", "tier"]
            )
            let tenant = try await self.create(body, context: context)
            return try StrictJSON.response(
                tenant, status: .created, headers: [.location: "/admin/v1/tenants/\(tenant.id)", .eTag: tenant.etag]
            )
        }
        tenants.get { request, context in
            let page = try PageRequest(request)
            let status = request.uri.queryParameters["status"].map(String.init)
            if let status, !["active", "suspended", "deleted"].contains(status) {
                throw Problem.validation([FieldError("status", "must be active, suspended or deleted")])
            }
            return try StrictJSON.response(
                try await self.database.withOperator(context.operatorID, logger: context.logger) { connection in
                    let rows = try await connection.query(
                        """
                        \(unescaped: TenantBody.select)
                        WHERE (\(status)::text IS NULL OR t.status = \(status))
                          AND (\(page.after)::uuid IS NULL OR t.id > \(page.after))
                        ORDER BY t.id LIMIT \(page.limit + 1)
                        """,
                        logger: context.logger
                    )
                    var tenants: [TenantBody] = []
                    for try await row in rows.decode(TenantBody.Row.self) { tenants.append(TenantBody(row)) }
                    let (items, next) = page.page(tenants, id: \.id)
                    return Page(items: items, nextCursor: next)
                }
            )
        }
        tenants.get(":id") { _, context in
            let id = try Self.tenantID(context.parameters.get("id"))
            let tenant = try await self.database.withOperator(context.operatorID, logger: context.logger) {
                connection in
                try await TenantBody.fetch(id, connection: connection, logger: context.logger)
            }
            return try StrictJSON.response(tenant, headers: [.eTag: tenant.etag])
        }
        tenants.patch(":id") { request, context in
            let id = try Self.tenantID(context.parameters.get("id"))
            let body = try await StrictJSON.decode(
                UpdateTenant.self, from: request, context: context, allowedFields: ["name", "status", "tier"]
            )
            let tenant = try await self.update(id, body, ifMatch: request.headers[.ifMatch], context: context)
            return try StrictJSON.response(tenant, headers: [.eTag: tenant.etag])
        }
        tenants.put(":id/quota-policy") { request, context in
            let id = try Self.tenantID(context.parameters.get("id"))
            let policy = try await StrictJSON.decode(
                QuotaPolicy.self, from: request, context: context, allowedFields: QuotaPolicy.fields
            )
            let errors = policy.errors
            guard errors.isEmpty else { throw Problem.validation(errors) }
            let tenant = try await self.database.withOperator(context.operatorID, logger: context.logger) {
                connection in
                _ = try await TenantBody.fetch(id, connection: connection, logger: context.logger)
                try await connection.query(
                    """
                    INSERT INTO quota_policies (tenant_id, queries_per_hour, tenant_queries_per_hour, model_classes,
                        max_citations, cache_ttl_seconds, audit_retention_days, canon_updates_allowed,
                        semantic_cache_threshold)
                    VALUES (\(id), \(policy.queriesPerHour), \(policy.tenantQueriesPerHour), \(policy.modelClasses),
                        \(policy.maxCitations), \(policy.cacheTtlSeconds), \(policy.auditRetentionDays),
                        \(policy.canonUpdatesAllowed), \(policy.semanticCacheThreshold))
                    ON CONFLICT (tenant_id) DO UPDATE SET
                        queries_per_hour = EXCLUDED.queries_per_hour,
                        tenant_queries_per_hour = EXCLUDED.tenant_queries_per_hour,
                        model_classes = EXCLUDED.model_classes, max_citations = EXCLUDED.max_citations,
                        cache_ttl_seconds = EXCLUDED.cache_ttl_seconds,
                        audit_retention_days = EXCLUDED.audit_retention_days,
                        canon_updates_allowed = EXCLUDED.canon_updates_allowed,
                        semantic_cache_threshold = EXCLUDED.semantic_cache_threshold,
                        updated_at = now(), revision = quota_policies.revision + 1
                    """,
                    logger: context.logger
                )
                return try await TenantBody.fetch(id, connection: connection, logger: context.logger)
            }
            return try StrictJSON.response(tenant, headers: [.eTag: tenant.etag])
        }
        tenants.post(":id/admins") { request, context in
            let id = try Self.tenantID(context.parameters.get("id"))
            let body = try await StrictJSON.decode(
                AdminAccounts.CreateAdmin.self, from: request, context: context,
                allowedFields: ["email", "password", "role"]
            )
            let (email, role, hash) = try await self.accounts.validate(body)
            let admin = try await self.database.withOperator(context.operatorID, logger: context.logger) { connection in
                let tenant = try await TenantBody.fetch(id, connection: connection, logger: context.logger)
                guard tenant.status != "deleted" else { throw Problem.conflict("The tenant is deleted.") }
                return try await AdminAccounts.insert(
                    email: email, role: role, passwordHash: hash, tenantID: id, connection: connection,
                    logger: context.logger
                )
            }
            return try StrictJSON.response(admin, status: .created)
        }

        // A tenant admin's own tenant and fellow admins.
        let own = router.group("/admin/v1", context: TenantAdminContext.self)
        own.get("/tenant") { _, context in
            let tenant = try await self.database.withTenant(context.tenantID, logger: context.logger) { connection in
                try await TenantBody.fetch(context.tenantID, connection: connection, logger: context.logger)
            }
            return try StrictJSON.response(tenant, headers: [.eTag: tenant.etag])
        }
        own.get("/admins") { _, context in
            let admins = try await self.database.withTenant(context.tenantID, logger: context.logger) { connection in
                var items: [AdminAccounts.AdminBody] = []
                for try await row in try await connection.query(
                    "SELECT \(unescaped: AdminAccounts.columns) FROM admin_users ORDER BY email",
                    logger: context.logger
                ).decode(AdminAccounts.Row.self) {
                    items.append(AdminAccounts.body(row))
                }
                return AdminPage(items: items)
            }
            return try StrictJSON.response(admins)
        }
        own.post("/admins") { request, context in
            try context.requireAdmin()
            let body = try await StrictJSON.decode(
                AdminAccounts.CreateAdmin.self, from: request, context: context,
                allowedFields: ["email", "password", "role"]
            )
            let (email, role, hash) = try await self.accounts.validate(body)
            let admin = try await self.database.withTenant(context.tenantID, logger: context.logger) { connection in
                try await AdminAccounts.insert(
                    email: email, role: role, passwordHash: hash, tenantID: context.tenantID, connection: connection,
                    logger: context.logger
                )
            }
            return try StrictJSON.response(admin, status: .created)
        }
        own.patch("/admins/:id") { request, context in
            try context.requireAdmin()
            guard let text = context.parameters.get("id"), let id = UUID(uuidString: text) else {
                throw Problem.notFound("No such admin.")
            }
            let body = try await StrictJSON.decode(
                UpdateAdmin.self, from: request, context: context, allowedFields: ["role", "status"]
            )
            var errors: [FieldError] = []
            if let role = body.role, AdminRole(rawValue: role) == nil {
                errors.append(FieldError("role", "must be admin or viewer"))
            }
            if let status = body.status, !["active", "disabled"].contains(status) {
                errors.append(FieldError("status", "must be active or disabled"))
            }
            guard errors.isEmpty else { throw Problem.validation(errors) }
            let ifMatch = request.headers[.ifMatch]
            let admin = try await self.database.withTenant(context.tenantID, logger: context.logger) { connection in
                try await Self.updateAdmin(id, body, ifMatch: ifMatch, context: context, connection: connection)
            }
            return try StrictJSON.response(admin, headers: [.eTag: admin.etag])
        }
        own.delete("/admins/:id") { _, context in
            try context.requireAdmin()
            guard let text = context.parameters.get("id"), let id = UUID(uuidString: text) else {
                throw Problem.notFound("No such admin.")
            }
            guard id != context.adminID else { throw Problem.conflict("You cannot remove your own account.") }
            try await self.database.withTenant(context.tenantID, logger: context.logger) { connection in
                var removed = 0
                for try await _ in try await connection.query(
                    "DELETE FROM admin_users WHERE id = \(id) RETURNING 1",
                    logger: context.logger
                ) {
                    removed += 1
                }
                guard removed == 1 else { throw Problem.notFound("No such admin.") }
            }
            return Response(status: .noContent)
        }
    }

    /// Changes an admin's role or status. The tenant always keeps one active admin, and a
    /// disabled admin's sessions end at once.
    static func updateAdmin(
        _ id: UUID,
        _ body: UpdateAdmin,
        ifMatch: String?,
        context: TenantAdminContext,
        connection: PostgresConnection
    ) async throws -> AdminAccounts.AdminBody {
        // Lock the tenant's admin rows so two concurrent demotions cannot both pass the check.
        var admins: [AdminAccounts.AdminBody] = []
        for try await row in try await connection.query(
            "SELECT \(unescaped: AdminAccounts.columns) FROM admin_users ORDER BY id FOR UPDATE",
            logger: context.logger
        ).decode(AdminAccounts.Row.self) {
            admins.append(AdminAccounts.body(row))
        }
        guard let current = admins.first(where: { $0.id == id.uuidString.lowercased() }) else {
            throw Problem.notFound("No such admin.")
        }
        if let ifMatch, ifMatch != current.etag { throw Problem.preconditionFailed }
        let role = body.role ?? current.role
        let status = body.status ?? current.status
        let activeAdminsAfter = admins.filter { admin in
            admin.id == current.id
                ? (role == "admin" && status == "active") : (admin.role == "admin" && admin.status == "active")
        }
        guard !activeAdminsAfter.isEmpty else {
            throw Problem.conflict("The tenant must keep at least one active admin.")
        }
        let rows = try await connection.query(
            """
            UPDATE admin_users SET role = \(role), status = \(status), updated_at = now(), revision = revision + 1
            WHERE id = \(id) RETURNING \(unescaped: AdminAccounts.columns)
            """,
            logger: context.logger
        )
        var updated: AdminAccounts.AdminBody?
        for try await row in rows.decode(AdminAccounts.Row.self) { updated = AdminAccounts.body(row) }
        if status == "disabled" {
            try await connection.query(
                "UPDATE admin_sessions SET revoked_at = now() WHERE admin_user_id = \(id) AND revoked_at IS NULL",
                logger: context.logger
            )
        }
        guard let updated else { throw Problem.notFound("No such admin.") }
        return updated
    }

    static func tenantID(_ text: String?) throws -> UUID {
        guard let text, let id = UUID(uuidString: text) else { throw Problem.notFound("No such tenant.") }
        return id
    }

    func create(_ body: CreateTenant, context: OperatorContext) async throws -> TenantBody {
        var errors: [FieldError] = []
        let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
        if name.isEmpty || name.count > 200 { errors.append(FieldError("name", "must be 1 to 200 characters")) }
        if !Self.isValidSlug(body.slug) {
            errors.append(FieldError("slug", "must be 1 to 63 lower-case letters, digits and inner hyphens"))
        }
        guard errors.isEmpty else { throw Problem.validation(errors) }
        return try await self.database.withOperator(context.operatorID, logger: context.logger) { connection in
            try await Self.requireTier(body.tier, connection: connection, logger: context.logger)
            let id = UUID()
            do {
                try await connection.query(
                    "INSERT INTO tenants (id, name, slug, tier_id) VALUES (\(id), \(name), \(body.slug), \(body.tier))",
                    logger: context.logger
                )
            } catch let error as PSQLError where error.sqlState == "23505" {
                throw Problem.conflict("A tenant with the slug \(body.slug) already exists.")
            }
            context.logger.info("tenant created", metadata: ["tenant": "\(id)"])
            return try await TenantBody.fetch(id, connection: connection, logger: context.logger)
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

    func update(_ id: UUID, _ body: UpdateTenant, ifMatch: String?, context: OperatorContext) async throws -> TenantBody
    {
        var errors: [FieldError] = []
        let name = body.name?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let name, name.isEmpty || name.count > 200 {
            errors.append(FieldError("name", "must be 1 to 200 characters"))
        }
        if let status = body.status, !["active", "suspended", "deleted"].contains(status) {
            errors.append(FieldError("status", "must be active, suspended or deleted"))
        }
        guard errors.isEmpty else { throw Problem.validation(errors) }
        return try await self.database.withOperator(context.operatorID, logger: context.logger) { connection in
            let current = try await TenantBody.fetch(id, connection: connection, logger: context.logger)
            if let ifMatch, ifMatch != current.etag { throw Problem.preconditionFailed }
            if current.status == "deleted", body.status != nil, body.status != "deleted" {
                throw Problem.conflict("A deleted tenant stays deleted.")
            }
            if let tier = body.tier { try await Self.requireTier(tier, connection: connection, logger: context.logger) }
            try await connection.query(
                """
                UPDATE tenants SET name = coalesce(\(name), name), status = coalesce(\(body.status), status),
                       tier_id = coalesce(\(body.tier), tier_id), updated_at = now(), revision = revision + 1
                WHERE id = \(id)
                """,
                logger: context.logger
            )
            if body.status == "deleted" || body.status == "suspended" {
                // Their sessions end with the tenant's access.
                try await connection.query(
                    "UPDATE admin_sessions SET revoked_at = now() WHERE tenant_id = \(id) AND revoked_at IS NULL",
                    logger: context.logger
                )
            }
            return try await TenantBody.fetch(id, connection: connection, logger: context.logger)
        }
    }
}
