import Foundation
import Hummingbird
import Logging
import PostgresNIO
import Shared

/// `/admin/v1/keys`: a tenant's API keys: create (the secret is shown once), list, read, rotate
/// with a grace period, revoke. HTTP only; `KeyStore` runs the SQL in the caller's tenant scope.
struct KeyController: Sendable {
    static let scopes: Set<String> = ["query", "canon:write", "stats:read"]
    static let maximumGrace = 7 * 24 * 3600

    let store: KeyStore

    struct CreateKey: Decodable {
        let name: String
        let scopes: [String]
        let environment: String?
        let expiresAt: Date?
    }

    struct RotateKey: Decodable {
        let graceSeconds: Int?
    }

    /// Ids go out as lower-case UUID text (JSONEncoder would write upper case).
    struct KeyBody: Encodable {
        let id: String
        let keyId: String
        let name: String
        let environment: String
        let scopes: [String]
        let status: String
        let createdAt: Date
        let expiresAt: Date?
        let revokedAt: Date?
        let lastUsedAt: Date?
        let replacedBy: String?
        let revision: Int
    }

    struct CreatedKey: Encodable {
        /// The whole key; shown this once and never again.
        let key: String
        let apiKey: KeyBody
    }

    struct Page: Encodable {
        let items: [KeyBody]
        let nextCursor: String?
    }

    func addRoutes(to router: Router<AdminRequestContext>) {
        let keys = router.group("/admin/v1/keys", context: TenantAdminContext.self)
        keys.post { request, context in
            try context.requireAdmin()
            let body = try await StrictJSON.decode(
                CreateKey.self,
                from: request,
                context: context,
                allowedFields: ["name", "scopes", "environment", "expires_at"]
            )
            let created = try await self.create(body, context: context)
            return try StrictJSON.response(
                created,
                status: .created,
                headers: [.location: "/admin/v1/keys/\(created.apiKey.id)"]
            )
        }
        keys.get { request, context in
            let page = try PageRequest(request)
            let status = request.uri.queryParameters["status"].map(String.init) ?? "all"
            guard ["all", "active", "revoked"].contains(status) else {
                throw Problem.validation([FieldError("status", "must be all, active or revoked")])
            }
            return try StrictJSON.response(
                try await self.store.list(
                    tenantID: context.tenantID, page: page, status: status, logger: context.logger))
        }
        keys.get(":id") { request, context in
            let key = try await self.store.fetch(
                try Self.id(context), tenantID: context.tenantID, logger: context.logger)
            return try StrictJSON.response(key, headers: [.eTag: KeyStore.etag(key.revision)])
        }
        keys.post(":id/rotate") { request, context in
            try context.requireAdmin()
            let id = try Self.id(context)
            let body = try await StrictJSON.decode(
                RotateKey.self,
                from: request,
                context: context,
                allowedFields: ["grace_seconds"]
            )
            let grace = body.graceSeconds ?? 3600
            guard (0...Self.maximumGrace).contains(grace) else {
                throw Problem.validation([FieldError("grace_seconds", "must be between 0 and \(Self.maximumGrace)")])
            }
            let created = try await self.store.rotate(
                id, grace: grace, ifMatch: request.headers[.ifMatch], tenantID: context.tenantID,
                adminID: context.adminID, logger: context.logger)
            return try StrictJSON.response(
                created,
                status: .created,
                headers: [.location: "/admin/v1/keys/\(created.apiKey.id)"]
            )
        }
        keys.delete(":id") { request, context in
            try context.requireAdmin()
            try await self.store.revoke(
                try Self.id(context), ifMatch: request.headers[.ifMatch], tenantID: context.tenantID,
                logger: context.logger)
            return Response(status: .noContent)
        }
    }

    /// A path id that is not a UUID names nothing: 404, like an id of another tenant.
    static func id(_ context: TenantAdminContext) throws -> UUID {
        guard let text = context.parameters.get("id"), let id = UUID(uuidString: text) else {
            throw Problem.notFound("No such API key.")
        }
        return id
    }

    func create(_ body: CreateKey, context: TenantAdminContext) async throws -> CreatedKey {
        var errors: [FieldError] = []
        let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
        if let error = FieldError("name", text: name, length: 1...200) { errors.append(error) }
        let scopes = Array(Set(body.scopes)).sorted()
        if scopes.isEmpty { errors.append(FieldError("scopes", "must name at least one scope")) }
        let unknown = Set(scopes).subtracting(Self.scopes).sorted()
        if !unknown.isEmpty {
            errors.append(
                FieldError(
                    "scopes", "unknown: \(unknown.joined(separator: ", ")); known: canon:write, query, stats:read"))
        }
        let environment = APIKey.Environment(rawValue: body.environment ?? "live")
        if environment == nil { errors.append(FieldError("environment", "must be live or test")) }
        if let expires = body.expiresAt {
            if expires <= Date() { errors.append(FieldError("expires_at", "must be in the future")) }
            if expires > Date().addingTimeInterval(10 * 365 * 24 * 3600) {
                errors.append(FieldError("expires_at", "must be within ten years"))
            }
        }
        guard errors.isEmpty, let environment else { throw Problem.validation(errors) }

        return try await self.store.create(
            name: name, scopes: scopes, environment: environment, expiresAt: body.expiresAt,
            tenantID: context.tenantID, adminID: context.adminID, logger: context.logger)
    }
}
