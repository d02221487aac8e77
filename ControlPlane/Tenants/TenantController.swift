import Foundation
import Hummingbird
import Logging
import Shared

/// Operators manage tenants (`/admin/v1/tenants…`: create, list, read, update, quota policy);
/// a tenant admin reads its own tenant (`/admin/v1/tenant`). HTTP only; `TenantStore` has the SQL.
struct TenantController: Sendable {
    let store: TenantStore

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
        let maxActiveKeys: Int?
        let modelClasses: [String]?
        let maxCitations: Int?
        let cacheTtlSeconds: Int?
        let auditRetentionDays: Int?
        let canonUpdatesAllowed: Bool?
        let semanticCacheThreshold: Float?
        let routingThreshold: Float?
        /// Whether audit events and the answer cache keep questions as asked (not redacted).
        let storeRawQuestions: Bool?
        /// The classes whose answers are given asynchronously when a request does not say.
        let asyncModelClasses: [String]?

        static let fields: Set<String> = [
            "queries_per_hour", "tenant_queries_per_hour", "max_active_keys", "model_classes", "max_citations",
            "cache_ttl_seconds",
            "audit_retention_days", "canon_updates_allowed", "semantic_cache_threshold",
            "routing_threshold", "store_raw_questions", "async_model_classes",
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
            check(maxActiveKeys, "max_active_keys", 1...100_000)
            check(maxCitations, "max_citations", 1...50)
            check(cacheTtlSeconds, "cache_ttl_seconds", 0...2_592_000)
            check(auditRetentionDays, "audit_retention_days", 1...3650)
            if let semanticCacheThreshold, !(0.8...1).contains(semanticCacheThreshold) {
                errors.append(FieldError("semantic_cache_threshold", "must be between 0.8 and 1"))
            }
            if let routingThreshold, !(0...1).contains(routingThreshold) {
                errors.append(FieldError("routing_threshold", "must be between 0 and 1"))
            }
            let names = ModelClasses.names.map(\.0).joined(separator: ", ")
            if let modelClasses, modelClasses.isEmpty || ModelClasses(names: modelClasses) == nil {
                errors.append(FieldError("model_classes", "must be a non-empty list of \(names)"))
            }
            if let asyncModelClasses, ModelClasses(names: asyncModelClasses) == nil {
                errors.append(FieldError("async_model_classes", "must be a list of \(names)"))
            }
            return errors
        }
    }

    struct Page: Encodable {
        let items: [TenantBody]
        let nextCursor: String?
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
            let (items, next) = try await self.store.list(
                status: status, page: page, operatorID: context.operatorID, logger: context.logger)
            return try StrictJSON.response(Page(items: items, nextCursor: next))
        }
        tenants.get(":id") { _, context in
            let tenant = try await self.store.fetch(
                try Self.tenantID(context.parameters.get("id")), operatorID: context.operatorID, logger: context.logger)
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
            let tenant = try await self.store.setQuotaPolicy(
                id, policy, operatorID: context.operatorID, logger: context.logger)
            return try StrictJSON.response(tenant, headers: [.eTag: tenant.etag])
        }

        // A tenant admin's own tenant.
        router.group("/admin/v1", context: TenantAdminContext.self).get("/tenant") { _, context in
            let tenant = try await self.store.fetch(own: context.tenantID, logger: context.logger)
            return try StrictJSON.response(tenant, headers: [.eTag: tenant.etag])
        }
    }

    static func tenantID(_ text: String?) throws -> UUID {
        guard let text, let id = UUID(uuidString: text) else { throw Problem.notFound("No such tenant.") }
        return id
    }

    func create(_ body: CreateTenant, context: OperatorContext) async throws -> TenantBody {
        var errors: [FieldError] = []
        let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
        if let error = FieldError("name", text: name, length: 1...200) { errors.append(error) }
        if !Self.isValidSlug(body.slug) {
            errors.append(FieldError("slug", "must be 1 to 63 lower-case letters, digits and inner hyphens"))
        }
        guard errors.isEmpty else { throw Problem.validation(errors) }
        return try await self.store.create(
            name: name, slug: body.slug, tier: body.tier, operatorID: context.operatorID, logger: context.logger)
    }

    func update(_ id: UUID, _ body: UpdateTenant, ifMatch: String?, context: OperatorContext) async throws -> TenantBody
    {
        var errors: [FieldError] = []
        let name = body.name?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let name, let error = FieldError("name", text: name, length: 1...200) {
            errors.append(error)
        }
        if let status = body.status, !["active", "suspended", "deleted"].contains(status) {
            errors.append(FieldError("status", "must be active, suspended or deleted"))
        }
        guard errors.isEmpty else { throw Problem.validation(errors) }
        return try await self.store.update(
            id, name: name, status: body.status, tier: body.tier, ifMatch: ifMatch, operatorID: context.operatorID,
            logger: context.logger)
    }
}
