import Foundation
import Logging
import PostgresNIO
import Shared

/// Tenant admin accounts in PostgreSQL: an operator creates a tenant's first admin; a tenant's
/// admins manage each other in the tenant's scope. The tenant always keeps one active admin.
struct AdminStore: Sendable {
    let database: ScopedDatabase

    struct AdminBody: Encodable {
        let id: String
        let email: String
        let role: String
        let status: String
        let createdAt: Date
        let revision: Int

        var etag: String { "\"r\(revision)\"" }
    }

    static let columns = "id, email, role, status, created_at, revision"
    typealias Row = (UUID, String, String, String, Date, Int)

    static func body(_ row: Row) -> AdminBody {
        AdminBody(
            id: row.0.uuidString.lowercased(), email: row.1, role: row.2, status: row.3, createdAt: row.4,
            revision: row.5
        )
    }

    /// The first (or another) admin of a tenant, by an operator; not for a deleted tenant.
    func create(
        email: EmailAddress, role: AdminRole, passwordHash: String, tenantID: UUID, operatorID: UUID, logger: Logger
    ) async throws -> AdminBody {
        try await self.database.withOperator(operatorID, logger: logger) { connection in
            let tenant = try await TenantBody.fetch(tenantID, connection: connection, logger: logger)
            guard tenant.status != "deleted" else { throw Problem.conflict("The tenant is deleted.") }
            return try await Self.insert(
                email: email, role: role, passwordHash: passwordHash, tenantID: tenantID, connection: connection,
                logger: logger)
        }
    }

    /// Another admin of the tenant, by one of its admins.
    func create(email: EmailAddress, role: AdminRole, passwordHash: String, tenantID: UUID, logger: Logger)
        async throws -> AdminBody
    {
        try await self.database.withTenant(tenantID, logger: logger) { connection in
            try await Self.insert(
                email: email, role: role, passwordHash: passwordHash, tenantID: tenantID, connection: connection,
                logger: logger)
        }
    }

    /// The tenant's admins by email.
    func list(tenantID: UUID, logger: Logger) async throws -> [AdminBody] {
        try await self.database.withTenant(tenantID, logger: logger) { connection in
            var items: [AdminBody] = []
            for try await row in try await connection.query(
                "SELECT \(unescaped: Self.columns) FROM admin_users ORDER BY email", logger: logger
            ).decode(Row.self) {
                items.append(Self.body(row))
            }
            return items
        }
    }

    /// Changes an admin's role or status (nil: unchanged). The tenant always keeps one active
    /// admin, and a disabled admin's sessions end at once.
    func update(
        _ id: UUID, role newRole: String?, status newStatus: String?, ifMatch: String?, tenantID: UUID, logger: Logger
    ) async throws -> AdminBody {
        try await self.database.withTenant(tenantID, logger: logger) { connection in
            // Lock the tenant's admin rows so two concurrent demotions cannot both pass the check.
            var admins: [Self.AdminBody] = []
            for try await row in try await connection.query(
                "SELECT \(unescaped: Self.columns) FROM admin_users ORDER BY id FOR UPDATE",
                logger: logger
            ).decode(Self.Row.self) {
                admins.append(Self.body(row))
            }
            guard let current = admins.first(where: { $0.id == id.uuidString.lowercased() }) else {
                throw Problem.notFound("No such admin.")
            }
            if let ifMatch, ifMatch != current.etag { throw Problem.preconditionFailed }
            let role = newRole ?? current.role
            let status = newStatus ?? current.status
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
                WHERE id = \(id) RETURNING \(unescaped: Self.columns)
                """,
                logger: logger
            )
            var updated: Self.AdminBody?
            for try await row in rows.decode(Self.Row.self) { updated = Self.body(row) }
            if status == "disabled" {
                try await connection.query(
                    "UPDATE admin_sessions SET revoked_at = now() WHERE admin_user_id = \(id) AND revoked_at IS NULL",
                    logger: logger
                )
            }
            guard let updated else { throw Problem.notFound("No such admin.") }
            return updated
        }
    }

    func delete(_ id: UUID, tenantID: UUID, logger: Logger) async throws {
        try await self.database.withTenant(tenantID, logger: logger) { connection in
            var removed = 0
            for try await _ in try await connection.query(
                "DELETE FROM admin_users WHERE id = \(id) RETURNING 1", logger: logger
            ) {
                removed += 1
            }
            guard removed == 1 else { throw Problem.notFound("No such admin.") }
        }
    }

    static func insert(
        email: EmailAddress,
        role: AdminRole,
        passwordHash: String,
        tenantID: UUID,
        connection: PostgresConnection,
        logger: Logger
    ) async throws -> AdminBody {
        do {
            let rows = try await connection.query(
                """
                INSERT INTO admin_users (tenant_id, email, password_hash, role)
                VALUES (\(tenantID), \(email.text), \(passwordHash), \(role.rawValue))
                RETURNING \(unescaped: Self.columns)
                """,
                logger: logger
            )
            for try await row in rows.decode(Row.self) { return Self.body(row) }
        } catch let error as PSQLError where error.sqlState == "23505" {
            throw Problem.conflict("An account with this email already exists.")
        }
        throw Problem.internalError
    }
}
