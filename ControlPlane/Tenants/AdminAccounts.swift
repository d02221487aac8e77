import Common
import Foundation
import Logging
import PostgresNIO

/// Creating tenant admin accounts, shared by operators (a tenant's first admin) and tenant admins.
struct AdminAccounts: Sendable {
    let hasher: Argon2id

    struct CreateAdmin: Decodable {
        let email: String
        let password: String
        let role: String
    }

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

    /// Checks the request, then hashes the password (off the event loop) before any database work.
    func validate(_ body: CreateAdmin) async throws -> (EmailAddress, AdminRole, String) {
        var errors: [FieldError] = []
        let email = EmailAddress(body.email)
        if email == nil { errors.append(FieldError("email", "is not a valid email address")) }
        let role = AdminRole(rawValue: body.role)
        if role == nil { errors.append(FieldError("role", "must be admin or viewer")) }
        for problem in PasswordPolicy.problems(password: body.password, email: body.email) {
            errors.append(FieldError("password", problem))
        }
        guard errors.isEmpty, let email, let role else { throw Problem.validation(errors) }
        return (email, role, try await self.hasher.hash(body.password))
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
