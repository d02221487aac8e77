import Foundation
import HTTPTypes
import Logging
import NIOCore
import PostgresNIO
import Shared

/// API keys in PostgreSQL. Every call runs in the tenant's scope (row-level security), so another
/// tenant's key ids are "no such key". Only the keys' digests are stored (HMAC-SHA-256 with the pepper).
struct KeyStore: Sendable {
    typealias KeyBody = KeyController.KeyBody
    typealias CreatedKey = KeyController.CreatedKey
    typealias Page = KeyController.Page

    let database: ScopedDatabase
    let digester: APIKeyDigester

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

    /// A new key for the tenant; its secret is in the result, and nowhere else ever again.
    func create(
        name: String, scopes: [String], environment: APIKey.Environment, expiresAt: Date?, tenantID: UUID,
        adminID: UUID, logger: Logger
    ) async throws -> CreatedKey {
        try await self.database.withTenant(tenantID, logger: logger) { connection in
            try await Self.requireRoomForKey(tenantID: tenantID, connection: connection, logger: logger)
            return try await self.insert(
                name: name, scopes: scopes, environment: environment, expiresAt: expiresAt, tenantID: tenantID,
                adminID: adminID, connection: connection, logger: logger)
        }
    }

    /// Refuses a new key when the tenant already holds its tier's (or policy's) number of active
    /// keys. Creations of one tenant queue on a transaction lock, so two at once cannot both
    /// take the last place.
    static func requireRoomForKey(tenantID: UUID, connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query(
            "SELECT pg_advisory_xact_lock(hashtextextended('zaas.api_keys:' || \(tenantID.lowercased), 0))",
            logger: logger)
        let rows = try await connection.query(
            """
            SELECT coalesce(p.max_active_keys, r.max_active_keys),
                   (SELECT count(*)::int FROM api_keys k
                    WHERE (k.revoked_at IS NULL OR k.revoked_at > now()) AND (k.expires_at IS NULL OR k.expires_at > now()))
            FROM tenants t JOIN tiers r ON r.id = t.tier_id LEFT JOIN quota_policies p ON p.tenant_id = t.id
            WHERE t.id = \(tenantID)
            """,
            logger: logger)
        for try await (maximum, active) in rows.decode((Int, Int).self) where active >= maximum {
            throw Problem.keyLimitReached(maximum)
        }
    }

    private func insert(
        name: String, scopes: [String], environment: APIKey.Environment, expiresAt: Date?, tenantID: UUID,
        adminID: UUID, connection: PostgresConnection, logger: Logger
    ) async throws -> CreatedKey {
        let key = APIKey.generate(environment: environment)
        let digest = ByteBuffer(bytes: self.digester.digest(key.secret))
        let rows = try await connection.query(
            """
            INSERT INTO api_keys (tenant_id, key_id, environment, secret_digest, name, scopes, expires_at, created_by)
            VALUES (\(tenantID), \(key.keyID), \(environment.rawValue), \(digest), \(name), \(scopes),
                    \(expiresAt), \(adminID))
            RETURNING \(unescaped: Self.columns)
            """,
            logger: logger
        )
        for try await row in rows.decode(Row.self) {
            logger.info("api key created", metadata: ["key_id": "\(key.keyID)"])
            return CreatedKey(key: key.text, apiKey: Self.body(row))
        }
        throw Problem.internalError
    }

    /// One page of the tenant's keys by id; `status` is all, active or revoked.
    func list(tenantID: UUID, page: PageRequest, status: String, logger: Logger) async throws -> Page {
        try await self.database.withTenant(tenantID, logger: logger) { connection in
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
                logger: logger
            )
            var keys: [KeyBody] = []
            for try await row in rows.decode(Row.self) { keys.append(Self.body(row)) }
            let (items, next) = page.page(keys, id: \.id)
            return Page(items: items, nextCursor: next)
        }
    }

    func fetch(_ id: UUID, tenantID: UUID, logger: Logger) async throws -> KeyBody {
        try await self.database.withTenant(tenantID, logger: logger) { connection in
            try await Self.fetch(id, connection: connection, logger: logger, lock: false)
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

    /// A new key with the old one's name, scopes and expiry; the old one stays valid for `grace` seconds.
    func rotate(_ id: UUID, grace: Int, ifMatch: String?, tenantID: UUID, adminID: UUID, logger: Logger)
        async throws -> CreatedKey
    {
        try await self.database.withTenant(tenantID, logger: logger) { connection in
            let old = try await Self.fetch(id, connection: connection, logger: logger, lock: true)
            if let ifMatch, ifMatch != Self.etag(old.revision) { throw Problem.preconditionFailed }
            guard old.status == "active" else {
                throw Problem.conflict("Only an active key can be rotated; this one is \(old.status).")
            }
            let created = try await self.insert(
                name: old.name,
                scopes: old.scopes,
                environment: APIKey.Environment(rawValue: old.environment) ?? .live,
                expiresAt: old.expiresAt,
                tenantID: tenantID,
                adminID: adminID,
                connection: connection,
                logger: logger
            )
            try await connection.query(
                """
                UPDATE api_keys SET revoked_at = now() + make_interval(secs => \(grace)),
                       replaced_by = \(created.apiKey.id)::uuid, revision = revision + 1
                WHERE id = \(id)
                """,
                logger: logger
            )
            logger.info(
                "api key rotated",
                metadata: [
                    "key_id": "\(old.keyId)", "new_key_id": "\(created.apiKey.keyId)", "grace_seconds": "\(grace)",
                ]
            )
            return created
        }
    }

    /// Immediate; revoking a revoked key again changes nothing and succeeds.
    func revoke(_ id: UUID, ifMatch: String?, tenantID: UUID, logger: Logger) async throws {
        try await self.database.withTenant(tenantID, logger: logger) { connection in
            let key = try await Self.fetch(id, connection: connection, logger: logger, lock: true)
            if let ifMatch, ifMatch != Self.etag(key.revision) { throw Problem.preconditionFailed }
            guard key.status != "revoked" else { return }
            try await connection.query(
                "UPDATE api_keys SET revoked_at = now(), revision = revision + 1 WHERE id = \(id)",
                logger: logger
            )
            logger.info("api key revoked", metadata: ["key_id": "\(key.keyId)"])
        }
    }
}

extension Problem {
    static func keyLimitReached(_ maximum: Int) -> Problem {
        Problem(
            slug: "key-limit-reached", title: "Conflict", status: .conflict,
            detail: "The tenant already has \(maximum) active keys, as many as its tier allows. Revoke one first.")
    }
}
