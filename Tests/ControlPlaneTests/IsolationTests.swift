import Foundation
import Logging
import PostgresNIO
import TestSupport
import Testing

@testable import ControlPlane

/// Row-level security as the wall between tenants, checked as the application role against the
/// real database.
@Suite("tenant isolation under row-level security")
struct IsolationTests {
    static let logger = Logger(label: "test.isolation")
    static let operatorID = UUID()
    static let tenantTables = TenancySchema.tenantTables

    struct Tenant {
        let id: UUID
        let adminID: UUID
        let keyID: UUID
    }

    /// A fresh, migrated database and the application role's client on it.
    static func withDatabase(
        maximumConnections: Int = 4,
        _ body: (ScopedDatabase, TestDatabase) async throws -> Void
    ) async throws {
        try await TestDatabase.withFresh { database in
            _ = try await withPostgresClient(database.owner) { owner in
                try await Migrator(applicationRole: TestEnvironment.shared.appUser, logger: logger).migrate(
                    client: owner)
            }
            var configuration = database.app
            configuration.options.maximumConnections = maximumConnections
            try await withPostgresClient(configuration) { client in
                try await body(ScopedDatabase(client: client), database)
            }
        }
    }

    /// Creates a tenant with one admin, one session, one key and a quota policy, on the operator path.
    static func seedTenant(_ db: ScopedDatabase, slug: String) async throws -> Tenant {
        try await db.withOperator(operatorID, logger: logger) { connection in
            let tenant = UUID()
            let admin = UUID()
            let key = UUID()
            let t = tenant.uuidString.lowercased()
            let a = admin.uuidString.lowercased()
            let k = key.uuidString.lowercased()
            let keyID =
                String(repeating: "k", count: 8)
                + String(slug.prefix(8)).padding(toLength: 8, withPad: "0", startingAt: 0)
            for sql in [
                "INSERT INTO tenants (id, name, slug, tier_id) VALUES ('\(t)', 'Tenant \(slug)', '\(slug)', 'pro')",
                """
                INSERT INTO admin_users (id, tenant_id, email, password_hash, role)
                VALUES ('\(a)', '\(t)', 'admin@\(slug).example', '$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$aGFzaA', 'admin')
                """,
                """
                INSERT INTO admin_sessions (tenant_id, admin_user_id, token_digest, expires_at)
                VALUES ('\(t)', '\(a)', decode(md5('\(slug)') || md5('\(slug)x'), 'hex'), now() + interval '1 hour')
                """,
                """
                INSERT INTO api_keys (id, tenant_id, key_id, environment, secret_digest, name, scopes)
                VALUES ('\(k)', '\(t)', '\(keyID)', 'live', decode(md5('\(slug)') || md5('\(slug)k'), 'hex'), 'main', ARRAY['query'])
                """,
                "INSERT INTO quota_policies (tenant_id, max_citations) VALUES ('\(t)', 7)",
            ] {
                try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
            }
            return Tenant(id: tenant, adminID: admin, keyID: key)
        }
    }

    static func literal(_ id: UUID) -> String { "'\(id.uuidString.lowercased())'" }

    static func count(_ connection: PostgresConnection, _ sql: String) async throws -> Int {
        var rows = 0
        for try await _ in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger) { rows += 1 }
        return rows
    }

    static func expectCount(
        _ connection: PostgresConnection,
        _ sql: String,
        _ expected: Int,
        _ comment: Comment? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let actual = try await count(connection, sql)
        #expect(actual == expected, comment, sourceLocation: sourceLocation)
    }

    static func sqlState(_ error: any Error) -> String? {
        if let error = error as? PSQLError { return error.serverInfo?[.sqlState] }
        if let error = error as? PostgresTransactionError {
            return (error.closureError as? PSQLError)?.serverInfo?[.sqlState]
        }
        return nil
    }

    /// The column that names a row's tenant.
    static func tenantColumn(_ table: String) -> String { table == "tenants" ? "id" : "tenant_id" }

    @Test("tenant A reads none of B's rows in any tenant table, and exactly its own")
    func readsAreIsolated() async throws {
        try await Self.withDatabase { db, _ in
            let a = try await Self.seedTenant(db, slug: "alpha")
            let b = try await Self.seedTenant(db, slug: "beta")
            try await db.withTenant(a.id, logger: Self.logger) { connection in
                for table in Self.tenantTables + ["tenants"] {
                    let column = Self.tenantColumn(table)
                    let ofB = try await Self.count(
                        connection,
                        "SELECT 1 FROM \(table) WHERE \(column) = '\(b.id.uuidString.lowercased())'"
                    )
                    #expect(ofB == 0, "\(table) shows B's rows to A")
                    let visible = try await Self.count(connection, "SELECT 1 FROM \(table)")
                    let own = try await Self.count(
                        connection,
                        "SELECT 1 FROM \(table) WHERE \(column) = '\(a.id.uuidString.lowercased())'"
                    )
                    #expect(visible == 1 && own == 1, "\(table): \(visible) visible, \(own) of A")
                }
            }
        }
    }

    @Test("updates and deletes of B's rows from A's scope affect zero rows and change nothing")
    func writesAreIsolated() async throws {
        try await Self.withDatabase { db, _ in
            let a = try await Self.seedTenant(db, slug: "alpha")
            let b = try await Self.seedTenant(db, slug: "beta")
            let bID = b.id.uuidString.lowercased()
            let updates: [String: String] = [
                "admin_users": "UPDATE admin_users SET role = 'viewer' WHERE tenant_id = '\(bID)' RETURNING 1",
                "admin_sessions": "UPDATE admin_sessions SET revoked_at = now() WHERE tenant_id = '\(bID)' RETURNING 1",
                "api_keys": "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = '\(bID)' RETURNING 1",
                "quota_policies": "UPDATE quota_policies SET max_citations = 1 WHERE tenant_id = '\(bID)' RETURNING 1",
                "tenants": "UPDATE tenants SET status = 'suspended' WHERE id = '\(bID)' RETURNING 1",
            ]
            try await db.withTenant(a.id, logger: Self.logger) { connection in
                for table in Self.tenantTables + ["tenants"] {
                    #expect(try await Self.count(connection, updates[table]!) == 0, "update of B in \(table)")
                    let column = Self.tenantColumn(table)
                    let deleted = try await Self.count(
                        connection,
                        "DELETE FROM \(table) WHERE \(column) = '\(bID)' RETURNING 1"
                    )
                    #expect(deleted == 0, "delete of B in \(table)")
                }
            }
            // B's rows are as they were.
            try await db.withTenant(b.id, logger: Self.logger) { connection in
                try await Self.expectCount(connection, "SELECT 1 FROM admin_users WHERE role = 'admin'", 1)
                try await Self.expectCount(connection, "SELECT 1 FROM api_keys WHERE revoked_at IS NULL", 1)
                try await Self.expectCount(connection, "SELECT 1 FROM admin_sessions WHERE revoked_at IS NULL", 1)
                try await Self.expectCount(connection, "SELECT 1 FROM quota_policies WHERE max_citations = 7", 1)
                try await Self.expectCount(connection, "SELECT 1 FROM tenants WHERE status = 'active'", 1)
            }
        }
    }

    @Test("an insert carrying B's tenant id from A's scope fails with SQLSTATE 42501")
    func insertsIntoOtherTenantFail() async throws {
        try await Self.withDatabase { db, _ in
            let a = try await Self.seedTenant(db, slug: "alpha")
            let b = try await Self.seedTenant(db, slug: "beta")
            let bID = b.id.uuidString.lowercased()
            let inserts: [String: String] = [
                "admin_users": """
                INSERT INTO admin_users (tenant_id, email, password_hash, role)
                VALUES ('\(bID)', 'intruder@alpha.example', '$argon2id$x', 'admin')
                """,
                "admin_sessions": """
                INSERT INTO admin_sessions (tenant_id, admin_user_id, token_digest, expires_at)
                VALUES ('\(bID)', '\(b.adminID.uuidString.lowercased())', decode(repeat('ab', 32), 'hex'), now())
                """,
                "api_keys": """
                INSERT INTO api_keys (tenant_id, key_id, environment, secret_digest, name, scopes)
                VALUES ('\(bID)', 'intruderintruder', 'live', decode(repeat('cd', 32), 'hex'), 'x', ARRAY['query'])
                """,
                "quota_policies": "INSERT INTO quota_policies (tenant_id, max_citations) VALUES ('\(bID)', 1)",
                "tenants": "INSERT INTO tenants (name, slug, tier_id) VALUES ('Intruder', 'intruder', 'free')",
            ]
            for table in Self.tenantTables + ["tenants"] {
                do {
                    try await db.withTenant(a.id, logger: Self.logger) { connection in
                        try await connection.query(PostgresQuery(unsafeSQL: inserts[table]!), logger: Self.logger)
                    }
                    Issue.record("insert into \(table) with B's tenant id succeeded")
                } catch {
                    #expect(Self.sqlState(error) == "42501", "\(table): \(String(reflecting: error))")
                }
            }
        }
    }

    @Test("with no scope set, every table with tenant data reads empty")
    func noScopeReadsNothing() async throws {
        try await Self.withDatabase { db, _ in
            _ = try await Self.seedTenant(db, slug: "alpha")
            try await db.unscoped(logger: Self.logger) { connection in
                for table in Self.tenantTables + [
                    "tenants", "operators", "operator_sessions", "config_changes", "operator_audit",
                ] {
                    try await Self.expectCount(connection, "SELECT 1 FROM \(table)", 0, "\(table)")
                }
                // Tiers are platform-wide and readable without a scope.
                try await Self.expectCount(connection, "SELECT 1 FROM tiers", 4)
            }
        }
    }

    @Test("one pooled connection serving A, then B, then nobody carries no scope over")
    func pooledConnectionCarriesNothing() async throws {
        try await Self.withDatabase(maximumConnections: 1) { db, _ in
            let a = try await Self.seedTenant(db, slug: "alpha")
            let b = try await Self.seedTenant(db, slug: "beta")
            func visibleTenants() async throws -> [UUID] {
                var ids: [UUID] = []
                try await db.unscoped(logger: Self.logger) { connection in
                    for try await id in try await connection.query("SELECT id FROM tenants", logger: Self.logger)
                        .decode(UUID.self)
                    {
                        ids.append(id)
                    }
                }
                return ids
            }
            var pids: Set<Int> = []
            for tenant in [a, b] {
                let (pid, seen) = try await db.withTenant(tenant.id, logger: Self.logger) { connection in
                    var pid = 0
                    for try await value in try await connection.query(
                        "SELECT pg_backend_pid()", logger: Self.logger
                    )
                    .decode(Int.self) {
                        pid = value
                    }
                    var seen: [UUID] = []
                    for try await id in try await connection.query("SELECT id FROM tenants", logger: Self.logger)
                        .decode(UUID.self)
                    {
                        seen.append(id)
                    }
                    return (pid, seen)
                }
                #expect(seen == [tenant.id])
                pids.insert(pid)
            }
            #expect(pids.count == 1, "the test must reuse one connection")
            #expect(try await visibleTenants().isEmpty)
            try await db.unscoped(logger: Self.logger) { connection in
                for try await (tenant, op) in try await connection.query(
                    "SELECT current_setting('app.tenant_id', true), current_setting('app.operator_id', true)",
                    logger: Self.logger
                ).decode((String?, String?).self) {
                    #expect((tenant ?? "").isEmpty)
                    #expect((op ?? "").isEmpty)
                }
            }
        }
    }

    @Test("catalog: every table with tenant_id has RLS enabled and forced, with USING and WITH CHECK")
    func catalogCheck() async throws {
        try await Self.withDatabase { db, database in
            try await db.unscoped(logger: Self.logger) { connection in
                let tables = try await connection.query(
                    """
                    SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'public' AND c.relkind = 'r'
                      AND EXISTS (SELECT 1 FROM pg_attribute a
                                  WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
                    """,
                    logger: Self.logger
                )
                var seen: [String] = []
                for try await (name, enabled, forced) in tables.decode((String, Bool, Bool).self) {
                    seen.append(name)
                    #expect(enabled && forced, "\(name): enabled \(enabled), forced \(forced)")
                }
                #expect(Set(Self.tenantTables).isSubset(of: Set(seen)))

                for table in Self.tenantTables {
                    let policies = try await connection.query(
                        """
                        SELECT policyname, qual, with_check FROM pg_policies
                        WHERE schemaname = 'public' AND tablename = \(table) AND permissive = 'PERMISSIVE'
                          AND roles = '{public}'
                        """,
                        logger: Self.logger
                    )
                    var count = 0
                    for try await (name, using, check) in policies.decode((String, String?, String?).self) {
                        count += 1
                        #expect(
                            using?.contains("current_setting('app.tenant_id'::text, true)") == true, "\(table).\(name)")
                        #expect(
                            check?.contains("current_setting('app.tenant_id'::text, true)") == true, "\(table).\(name)")
                    }
                    #expect(count == 1, "\(table) has \(count) permissive policies")
                }
            }
            try await ApplicationRoleCheck.verify(client: db.client, logger: Self.logger)
        }
    }

    @Test("canon artifacts and the account email registry are not readable by the application role in any scope")
    func definerOnlyTables() async throws {
        try await Self.withDatabase { db, _ in
            let tenant = try await Self.seedTenant(db, slug: "artifacts")
            for table in ["canon_artifacts", "account_emails"] {
                let scopes: [(String, (String) async throws -> Void)] = [
                    (
                        "tenant",
                        { sql in
                            try await db.withTenant(tenant.id, logger: Self.logger) {
                                _ = try await Self.count($0, sql)
                            }
                        }
                    ),
                    (
                        "operator",
                        { sql in
                            try await db.withOperator(Self.operatorID, logger: Self.logger) {
                                _ = try await Self.count($0, sql)
                            }
                        }
                    ),
                    (
                        "none",
                        { sql in try await db.unscoped(logger: Self.logger) { _ = try await Self.count($0, sql) } }
                    ),
                ]
                for (scope, run) in scopes {
                    do {
                        try await run("SELECT count(*) FROM \(table)")
                        Issue.record("the application role read \(table) in scope \(scope)")
                    } catch {
                        #expect(
                            Self.sqlState(error) == "42501", "\(table) in scope \(scope): \(String(reflecting: error))")
                    }
                }
            }
        }
    }

    @Test("every config change appends to the change log in its own transaction, versions in order without gaps")
    func changeLog() async throws {
        try await Self.withDatabase { db, _ in
            func versions() async throws -> [Int64] {
                try await db.withOperator(Self.operatorID, logger: Self.logger) { connection in
                    var versions: [Int64] = []
                    for try await version in try await connection.query(
                        "SELECT version FROM config_changes ORDER BY version",
                        logger: Self.logger
                    ).decode(Int64.self) {
                        versions.append(version)
                    }
                    return versions
                }
            }
            // Migrations may have logged changes of their own (migration 11 updates the tiers).
            let migrated = Int64(try await versions().count)
            let a = try await Self.seedTenant(db, slug: "alpha")
            // The seed made a tenant, a key and a policy: three changes.
            #expect(try await versions() == Array(1...(migrated + 3)))

            // A rolled-back change leaves no entry and does not use up a version.
            struct Abort: Error {}
            await #expect(throws: Abort.self) {
                try await db.withTenant(a.id, logger: Self.logger) { connection in
                    try await connection.query(
                        "UPDATE api_keys SET revoked_at = now() WHERE id = \(a.keyID)",
                        logger: Self.logger
                    )
                    throw Abort()
                }
            }
            #expect(try await versions() == Array(1...(migrated + 3)))

            // Concurrent writers get consecutive versions.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<10 {
                    group.addTask {
                        try await db.withTenant(a.id, logger: Self.logger) { connection in
                            _ = try await connection.query(
                                "UPDATE api_keys SET name = \("name \(index)") WHERE id = \(a.keyID)",
                                logger: Self.logger
                            )
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await versions() == Array(1...(migrated + 13)))

            // The tenant cannot read or write the change log itself.
            try await db.withTenant(a.id, logger: Self.logger) { connection in
                try await Self.expectCount(connection, "SELECT 1 FROM config_changes", 0)
            }
            await #expect(throws: (any Error).self) {
                try await db.withTenant(a.id, logger: Self.logger) { connection in
                    try await connection.query(
                        "INSERT INTO config_changes (version, entity, entity_id, operation) VALUES (99, 'x', 'x', 'insert')",
                        logger: Self.logger
                    )
                }
            }
        }
    }

    @Test("a tenant reads but cannot change its tenant row or quota policy; the operator can, audited")
    func operatorOnlyWrites() async throws {
        try await Self.withDatabase { db, _ in
            let a = try await Self.seedTenant(db, slug: "alpha")
            // Inserting is refused outright; updates and deletes find no row they may touch.
            do {
                try await db.withTenant(a.id, logger: Self.logger) { connection in
                    _ = try await Self.count(
                        connection, "INSERT INTO quota_policies (tenant_id) VALUES (\(Self.literal(a.id)))")
                }
                Issue.record("tenant scope inserted a quota policy")
            } catch {
                #expect(Self.sqlState(error) == "42501")
            }
            try await db.withTenant(a.id, logger: Self.logger) { connection in
                try await Self.expectCount(connection, "UPDATE tenants SET tier_id = 'enterprise' RETURNING 1", 0)
                try await Self.expectCount(connection, "UPDATE quota_policies SET max_citations = 50 RETURNING 1", 0)
                try await Self.expectCount(connection, "DELETE FROM quota_policies RETURNING 1", 0)
                try await Self.expectCount(connection, "SELECT 1 FROM tenants WHERE tier_id = 'pro'", 1)
                try await Self.expectCount(connection, "SELECT 1 FROM quota_policies WHERE max_citations = 7", 1)
            }
            try await db.withOperator(Self.operatorID, logger: Self.logger) { connection in
                #expect(
                    try await Self.count(
                        connection,
                        "UPDATE tenants SET tier_id = 'team' WHERE id = '\(a.id.uuidString.lowercased())' RETURNING 1"
                    ) == 1
                )
                let audit = try await connection.query(
                    "SELECT operator_id, table_name, operation FROM operator_audit WHERE tenant_id = \(a.id) ORDER BY id",
                    logger: Self.logger
                )
                var entries: [String] = []
                for try await (operatorID, table, operation) in audit.decode((UUID, String, String).self) {
                    #expect(operatorID == Self.operatorID)
                    entries.append("\(operation) \(table)")
                }
                #expect(
                    entries == [
                        "insert tenants", "insert admin_users", "insert api_keys", "insert quota_policies",
                        "update tenants",
                    ]
                )
            }
        }
    }

    @Test("tiers are seeded with the published limits and the application role cannot change them")
    func tiers() async throws {
        try await Self.withDatabase { db, _ in
            try await db.unscoped(logger: Self.logger) { connection in
                var limits: [String: Int] = [:]
                for try await (id, perHour, canonUpdates) in try await connection.query(
                    "SELECT id, queries_per_hour, canon_updates_allowed FROM tiers",
                    logger: Self.logger
                ).decode((String, Int, Bool).self) {
                    limits[id] = perHour
                    #expect(canonUpdates == (id == "enterprise"), "\(id)")
                }
                #expect(limits["free"] == 10)
                #expect(limits["pro"] == 100)
                #expect(limits["team"] == 1000)
                #expect(limits["enterprise"] != nil)
            }
            do {
                try await db.withOperator(Self.operatorID, logger: Self.logger) { connection in
                    try await connection.query("UPDATE tiers SET queries_per_hour = 1", logger: Self.logger)
                }
                Issue.record("the application role changed a tier")
            } catch {
                #expect(Self.sqlState(error) == "42501")
            }
        }
    }

    @Test("out-of-range quota values are refused by the database with a check violation")
    func quotaValidation() async throws {
        try await Self.withDatabase { db, _ in
            let a = try await Self.seedTenant(db, slug: "alpha")
            for assignment in [
                "max_citations = 0", "queries_per_hour = -5", "cache_ttl_seconds = 99999999",
                "model_classes = ARRAY['gpu']",
            ] {
                do {
                    try await db.withOperator(Self.operatorID, logger: Self.logger) { connection in
                        try await connection.query(
                            PostgresQuery(
                                unsafeSQL:
                                    "UPDATE quota_policies SET \(assignment) WHERE tenant_id = '\(a.id.uuidString.lowercased())'"
                            ),
                            logger: Self.logger
                        )
                    }
                    Issue.record("accepted \(assignment)")
                } catch {
                    #expect(Self.sqlState(error) == "23514", "\(assignment)")
                }
            }
        }
    }
}
