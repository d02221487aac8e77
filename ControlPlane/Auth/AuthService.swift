import Foundation
import HTTPTypes
import Logging
import PostgresNIO
import Shared

/// Signs admins and operators in and out, and resolves session tokens.
struct AuthService: Sendable {
    /// Failed sign-ins before the account is locked in the database (the backstop shared by every
    /// control-plane instance, behind the per-address and per-account `SignInThrottle`); each
    /// further failure doubles the lock, to at most 15 minutes.
    static let failuresBeforeLock = 20
    static let longestLockMinutes = 15

    let database: ScopedDatabase
    let hasher: GatedHasher
    let throttle: SignInThrottle
    /// Verified against when the email is unknown, so that case costs the same time as a wrong password.
    let dummyHash: String
    let sessionLifetime: Duration

    struct Session: Sendable {
        let token: SessionToken
        let expiresAt: Date
        let principal: Principal
    }

    /// Signs in from `address` (the client's IP, for throttling). Unknown emails, wrong passwords,
    /// disabled and locked accounts get the same 401 after the same Argon2 work; too many failures
    /// from the address or for the account get 429 before any.
    func signIn(email rawEmail: String, password: String, address: String, logger: Logger) async throws -> Session {
        let account = rawEmail.trimmingCharacters(in: .whitespaces).lowercased()
        try self.throttle.check(address: address, email: account)
        func refuse(_ candidate: Candidate? = nil) async throws -> Never {
            self.throttle.recordFailure(address: address, email: account)
            if let candidate { try await self.recordFailure(candidate, logger: logger) }
            throw Problem.invalidCredentials
        }
        guard let email = EmailAddress(rawEmail), password.utf8.count <= 1024 else {
            _ = try await self.verify(password, against: self.dummyHash)
            try await refuse()
        }
        let candidates = try await self.database.unscoped(logger: logger) { connection in
            let rows = try await connection.query(
                """
                SELECT kind, account_id, tenant_id, password_hash, role, account_status, tenant_status,
                       coalesce(locked_until > now(), false)
                FROM zaas_login_candidate(\(email.text))
                """,
                logger: logger
            )
            var found: [Candidate] = []
            for try await row in rows.decode((String, UUID, UUID?, String, String, String, String?, Bool).self) {
                found.append(
                    Candidate(
                        kind: row.0, accountID: row.1, tenantID: row.2, passwordHash: row.3, role: row.4,
                        accountStatus: row.5, tenantStatus: row.6, isLocked: row.7
                    ))
            }
            return found
        }
        // An address that names more than one account (possible only for rows older than the
        // registry of migration 10) signs nobody in: choosing one would let the other's owner in
        // or lock the other out.
        guard candidates.count == 1, let candidate = candidates.first else {
            if candidates.count > 1 {
                logger.error(
                    "sign-in refused: the email names more than one account; an operator must resolve it",
                    metadata: ["accounts": "\(candidates.map(\.accountID))"])
            }
            _ = try await self.verify(password, against: self.dummyHash)
            try await refuse()
        }
        let passwordMatches = try await self.verify(password, against: candidate.passwordHash)
        guard passwordMatches, !candidate.isLocked, candidate.accountStatus == "active" else {
            logger.notice("sign-in refused", metadata: ["account": "\(candidate.accountID)"])
            try await refuse(passwordMatches ? nil : candidate)
        }
        self.throttle.recordSuccess(email: account)
        if let status = candidate.tenantStatus, status != "active" {
            throw Problem.tenantNotActive(status)
        }

        let token = SessionToken.generate()
        let expiresAt = Date().addingTimeInterval(TimeInterval(self.sessionLifetime.components.seconds))
        let digest = token.digest
        let principal: Principal
        switch (candidate.kind, candidate.tenantID) {
        case ("admin", .some(let tenantID)):
            guard let role = AdminRole(rawValue: candidate.role) else { throw Problem.internalError }
            principal = .tenantAdmin(id: candidate.accountID, tenantID: tenantID, role: role)
            try await self.database.withTenant(tenantID, logger: logger) { connection in
                try await connection.query(
                    """
                    UPDATE admin_users SET failed_logins = 0, locked_until = NULL WHERE id = \(candidate.accountID)
                    """,
                    logger: logger
                )
                try await connection.query(
                    """
                    INSERT INTO admin_sessions (tenant_id, admin_user_id, token_digest, expires_at)
                    VALUES (\(tenantID), \(candidate.accountID), \(ByteBuffer(bytes: digest)), \(expiresAt))
                    """,
                    logger: logger
                )
            }
        default:
            principal = .platformOperator(id: candidate.accountID)
            try await self.database.withOperator(candidate.accountID, logger: logger) { connection in
                try await connection.query(
                    "UPDATE operators SET failed_logins = 0, locked_until = NULL WHERE id = \(candidate.accountID) AND failed_logins > 0",
                    logger: logger
                )
                try await connection.query(
                    """
                    INSERT INTO operator_sessions (operator_id, token_digest, expires_at)
                    VALUES (\(candidate.accountID), \(ByteBuffer(bytes: digest)), \(expiresAt))
                    """,
                    logger: logger
                )
            }
        }
        return Session(token: token, expiresAt: expiresAt, principal: principal)
    }

    /// An Argon2 verification; a malformed stored hash is a mismatch, while a refusal of the
    /// hashing gate (busy) goes to the caller rather than counting as a wrong password.
    private func verify(_ password: String, against hash: String) async throws -> Bool {
        do {
            return try await self.hasher.verify(password, against: hash)
        } catch let problem as Problem {
            throw problem
        } catch {
            return false
        }
    }

    /// Counts a failure; from the twentieth on, locks the account for 1, 2, 4 … up to 15 minutes.
    private func recordFailure(_ candidate: Candidate, logger: Logger) async throws {
        let lock = """
            failed_logins = least(failed_logins + 1, 1000000),
            locked_until = CASE WHEN failed_logins + 1 >= \(Self.failuresBeforeLock)
                THEN now() + make_interval(
                    mins => (least(\(Self.longestLockMinutes), power(2, least(failed_logins + 1 - \(Self.failuresBeforeLock), 4))))::int)
                ELSE locked_until END
            """
        if candidate.kind == "admin", let tenantID = candidate.tenantID {
            try await self.database.withTenant(tenantID, logger: logger) { connection in
                try await connection.query(
                    PostgresQuery(
                        unsafeSQL: "UPDATE admin_users SET \(lock) WHERE id = $1",
                        binds: Self.binds(candidate.accountID)),
                    logger: logger
                )
            }
        } else {
            try await self.database.withOperator(candidate.accountID, logger: logger) { connection in
                try await connection.query(
                    PostgresQuery(
                        unsafeSQL: "UPDATE operators SET \(lock) WHERE id = $1", binds: Self.binds(candidate.accountID)),
                    logger: logger
                )
            }
        }
    }

    private static func binds(_ id: UUID) -> PostgresBindings {
        var binds = PostgresBindings()
        binds.append(id)
        return binds
    }

    /// The principal behind a presented session token, or a problem saying why there is none.
    func resolve(token: SessionToken, logger: Logger) async throws -> (Principal, UUID) {
        let digest = ByteBuffer(bytes: token.digest)
        let resolved = try await self.database.unscoped(logger: logger) { connection in
            let rows = try await connection.query(
                """
                SELECT kind, session_id, account_id, tenant_id, role, expires_at > now() AND revoked_at IS NULL,
                       account_status, tenant_status
                FROM zaas_resolve_session(\(digest))
                """,
                logger: logger
            )
            var found: (String, UUID, UUID, UUID?, String, Bool, String, String?)?
            for try await row in rows.decode((String, UUID, UUID, UUID?, String, Bool, String, String?).self) {
                found = row
            }
            return found
        }
        guard let (kind, sessionID, accountID, tenantID, role, isCurrent, accountStatus, tenantStatus) = resolved,
            isCurrent, accountStatus == "active"
        else { throw Problem.unauthenticated }
        if kind == "admin", let tenantID, let role = AdminRole(rawValue: role) {
            if let tenantStatus, tenantStatus != "active" { throw Problem.tenantNotActive(tenantStatus) }
            return (.tenantAdmin(id: accountID, tenantID: tenantID, role: role), sessionID)
        }
        return (.platformOperator(id: accountID), sessionID)
    }

    func signOut(principal: Principal, sessionID: UUID, logger: Logger) async throws {
        switch principal {
        case .tenantAdmin(_, let tenantID, _):
            try await self.database.withTenant(tenantID, logger: logger) { connection in
                try await connection.query(
                    "UPDATE admin_sessions SET revoked_at = now() WHERE id = \(sessionID) AND revoked_at IS NULL",
                    logger: logger
                )
            }
        case .platformOperator(let id):
            try await self.database.withOperator(id, logger: logger) { connection in
                try await connection.query(
                    "UPDATE operator_sessions SET revoked_at = now() WHERE id = \(sessionID) AND revoked_at IS NULL",
                    logger: logger
                )
            }
        }
    }

    /// Creates the configured bootstrap operator unless that email already exists.
    func bootstrapOperator(email rawEmail: String, password: String, logger: Logger) async throws {
        guard let email = EmailAddress(rawEmail) else {
            throw ConfigurationError.invalid(
                key: "bootstrap.operator_email", value: rawEmail, expected: "an email address")
        }
        let problems = PasswordPolicy.problems(password: password, email: email.text)
        guard problems.isEmpty else {
            throw ConfigurationError.invalid(
                key: "bootstrap.operator_password",
                value: "(hidden)",
                expected: "a password that " + problems.joined(separator: ", ")
            )
        }
        let hash = try await self.hasher.hash(password)
        let created: Bool
        do {
            created = try await self.database.unscoped(logger: logger) { connection in
                var created = false
                for try await value in try await connection.query(
                    "SELECT zaas_bootstrap_operator(\(email.text), \(hash))",
                    logger: logger
                ).decode(Bool.self) {
                    created = value
                }
                return created
            }
        } catch let error as PSQLError where error.sqlState == "ZA001" {
            throw ConfigurationError.invalid(
                key: "bootstrap.operator_email", value: email.text,
                expected: "an address no tenant admin uses (one address names one account)")
        }
        if created { logger.notice("bootstrap operator created", metadata: ["operator_email": "\(email.text)"]) }
    }

    private struct Candidate {
        let kind: String
        let accountID: UUID
        let tenantID: UUID?
        let passwordHash: String
        let role: String
        let accountStatus: String
        let tenantStatus: String?
        let isLocked: Bool
    }
}

extension Problem {
    static func tenantNotActive(_ status: String) -> Problem {
        Problem(
            slug: "tenant-not-active",
            title: "Forbidden",
            status: .forbidden,
            detail: "The tenant is \(status); its admins cannot act until an operator reactivates it."
        )
    }
}
