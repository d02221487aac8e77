import Common
import Foundation
import Hummingbird
import Logging
import PostgresNIO

/// A tenant's API keys: create (the secret is shown once), list, read, rotate with a grace period,
/// revoke. Every query runs in the caller's tenant scope, so another tenant's key ids are 404.
struct KeyController: Sendable {
    static let scopes: Set<String> = ["query", "canon:write", "stats:read"]
    static let maximumGrace = 7 * 24 * 3600

    let database: ScopedDatabase
    let digester: APIKeyDigester

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

    static let columns =
        "id, key_id, name, environment, scopes, created_at, expires_at, revoked_at, last_used_at, replaced_by, revision"
    typealias Row = (UUID, String, String, String, [String], Date, Date?, Date?, Date?, UUID?, Int)

    static func body(_ row: Row, now: Date = Date()) -> KeyBody {
        let status =
            if let revoked = row.7, revoked <= now {
                "revoked"
            } else if let expires = row.6, expires <= now {
                "expired"
            } else if row.7 != nil {
                "rotating"
            } else {
                "active"
            }
        return KeyBody(
            id: row.0.uuidString.lowercased(), keyId: row.1, name: row.2, environment: row.3, scopes: row.4,
            status: status,
            createdAt: row.5, expiresAt: row.6, revokedAt: row.7, lastUsedAt: row.8,
            replacedBy: row.9?.uuidString.lowercased(), revision: row.10
        )
    }

    static func etag(_ revision: Int) -> String { "\"r\(revision)\"" }

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
            return try StrictJSON.response(try await self.list(context: context, page: page, status: status))
        }
        keys.get(":id") { request, context in
            let key = try await self.fetch(try Self.id(context), context: context)
            return try StrictJSON.response(key, headers: [.eTag: Self.etag(key.revision)])
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
            let created = try await self.rotate(id, grace: grace, ifMatch: request.headers[.ifMatch], context: context)
            return try StrictJSON.response(
                created,
                status: .created,
                headers: [.location: "/admin/v1/keys/\(created.apiKey.id)"]
            )
        }
        keys.delete(":id") { request, context in
            try context.requireAdmin()
            try await self.revoke(try Self.id(context), ifMatch: request.headers[.ifMatch], context: context)
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
        if name.isEmpty || name.count > 200 { errors.append(FieldError("name", "must be 1 to 200 characters")) }
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

        return try await self.database.withTenant(context.tenantID, logger: context.logger) { connection in
            try await self.insert(
                name: name,
                scopes: scopes,
                environment: environment,
                expiresAt: body.expiresAt,
                context: context,
                connection: connection
            )
        }
    }

    private func insert(
        name: String,
        scopes: [String],
        environment: APIKey.Environment,
        expiresAt: Date?,
        context: TenantAdminContext,
        connection: PostgresConnection
    ) async throws -> CreatedKey {
        let key = APIKey.generate(environment: environment)
        let digest = ByteBuffer(bytes: self.digester.digest(key.secret))
        let rows = try await connection.query(
            """
            INSERT INTO api_keys (tenant_id, key_id, environment, secret_digest, name, scopes, expires_at, created_by)
            VALUES (\(context.tenantID), \(key.keyID), \(environment.rawValue), \(digest), \(name), \(scopes),
                    \(expiresAt), \(context.adminID))
            RETURNING \(unescaped: Self.columns)
            """,
            logger: context.logger
        )
        for try await row in rows.decode(Row.self) {
            context.logger.info("api key created", metadata: ["key_id": "\(key.keyID)"])
            return CreatedKey(key: key.text, apiKey: Self.body(row))
        }
        throw Problem.internalError
    }

    func list(context: TenantAdminContext, page: PageRequest, status: String) async throws -> Page {
        try await self.database.withTenant(context.tenantID, logger: context.logger) { connection in
            let filter =
                switch status {
                case "active":
                    "AND (revoked_at IS NULL OR revoked_at > now()) AND (expires_at IS NULL OR expires_at > now())"
                case "revoked": "AND revoked_at <= now()"
                default: ""
                }
            let rows = try await connection.query(
                """
                SELECT \(unescaped: Self.columns) FROM api_keys
                WHERE (\(page.after)::uuid IS NULL OR id > \(page.after)) \(unescaped: filter)
                ORDER BY id LIMIT \(page.limit + 1)
                """,
                logger: context.logger
            )
            var keys: [KeyBody] = []
            for try await row in rows.decode(Row.self) { keys.append(Self.body(row)) }
            let (items, next) = page.page(keys, id: \.id)
            return Page(items: items, nextCursor: next)
        }
    }

    func fetch(_ id: UUID, context: TenantAdminContext) async throws -> KeyBody {
        try await self.database.withTenant(context.tenantID, logger: context.logger) { connection in
            try await Self.fetch(id, connection: connection, logger: context.logger, lock: false)
        }
    }

    static func fetch(_ id: UUID, connection: PostgresConnection, logger: Logger, lock: Bool) async throws -> KeyBody {
        let rows = try await connection.query(
            "SELECT \(unescaped: Self.columns) FROM api_keys WHERE id = \(id) \(unescaped: lock ? "FOR UPDATE" : "")",
            logger: logger
        )
        for try await row in rows.decode(Row.self) { return Self.body(row) }
        throw Problem.notFound("No such API key.")
    }

    func rotate(_ id: UUID, grace: Int, ifMatch: String?, context: TenantAdminContext) async throws -> CreatedKey {
        try await self.database.withTenant(context.tenantID, logger: context.logger) { connection in
            let old = try await Self.fetch(id, connection: connection, logger: context.logger, lock: true)
            if let ifMatch, ifMatch != Self.etag(old.revision) { throw Problem.preconditionFailed }
            guard old.status == "active" else {
                throw Problem.conflict("Only an active key can be rotated; this one is \(old.status).")
            }
            let created = try await self.insert(
                name: old.name,
                scopes: old.scopes,
                environment: APIKey.Environment(rawValue: old.environment) ?? .live,
                expiresAt: old.expiresAt,
                context: context,
                connection: connection
            )
            try await connection.query(
                """
                UPDATE api_keys SET revoked_at = now() + make_interval(secs => \(grace)),
                       replaced_by = \(created.apiKey.id)::uuid, revision = revision + 1
                WHERE id = \(id)
                """,
                logger: context.logger
            )
            context.logger.info(
                "api key rotated",
                metadata: [
                    "key_id": "\(old.keyId)", "new_key_id": "\(created.apiKey.keyId)", "grace_seconds": "\(grace)",
                ]
            )
            return created
        }
    }

    /// Immediate; revoking a revoked key again changes nothing and succeeds.
    func revoke(_ id: UUID, ifMatch: String?, context: TenantAdminContext) async throws {
        try await self.database.withTenant(context.tenantID, logger: context.logger) { connection in
            let key = try await Self.fetch(id, connection: connection, logger: context.logger, lock: true)
            if let ifMatch, ifMatch != Self.etag(key.revision) { throw Problem.preconditionFailed }
            guard key.status != "revoked" else { return }
            try await connection.query(
                "UPDATE api_keys SET revoked_at = now(), revision = revision + 1 WHERE id = \(id)",
                logger: context.logger
            )
            context.logger.info("api key revoked", metadata: ["key_id": "\(key.keyId)"])
        }
    }
}
