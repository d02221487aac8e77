import Logging
import PostgresNIO
import TestSupport
import Testing

@testable import ControlPlane

@Suite("PostgreSQL migrations and the two roles")
struct MigrationTests {
    let logger = Logger(label: "test.migrations")

    func migrator(_ migrations: [Migration] = Migrations.all) -> Migrator {
        Migrator(migrations: migrations, applicationRole: TestEnvironment.shared.appUser, logger: logger)
    }

    @Test("migrations apply in order once; a second run applies nothing")
    func idempotent() async throws {
        try await TestDatabase.withFresh { database in
            try await withPostgresClient(database.owner) { owner in
                let first = try await migrator().migrate(client: owner)
                #expect(first.applied == Migrations.all.map(\.version))
                let second = try await migrator().migrate(client: owner)
                #expect(second.applied == [])
                let rows = try await owner.query("SELECT version, name FROM zaas_schema_migrations ORDER BY version")
                var recorded: [Int] = []
                for try await (version, _) in rows.decode((Int, String).self) { recorded.append(version) }
                #expect(recorded == Migrations.all.map(\.version))
            }
        }
    }

    @Test("concurrent control planes migrating the same database apply each migration exactly once")
    func concurrentMigrators() async throws {
        try await TestDatabase.withFresh { database in
            try await withPostgresClient(database.owner) { owner in
                let reports = try await withThrowingTaskGroup(of: Migrator.Report.self) { group in
                    for _ in 0..<3 { group.addTask { try await self.migrator().migrate(client: owner) } }
                    var reports: [Migrator.Report] = []
                    for try await report in group { reports.append(report) }
                    return reports
                }
                #expect(reports.flatMap(\.applied).sorted() == Migrations.all.map(\.version))
            }
        }
    }

    @Test("a database newer than the binary is refused")
    func refusesNewerDatabase() async throws {
        try await TestDatabase.withFresh { database in
            try await withPostgresClient(database.owner) { owner in
                _ = try await migrator().migrate(client: owner)
                let future = Migrations.latestVersion + 1
                try await owner.query(
                    "INSERT INTO zaas_schema_migrations (version, name, checksum) VALUES (\(future), 'from_the_future', 'x')"
                )
                await #expect(
                    throws: Migrator.Failure.databaseNewerThanBinary(database: future, binary: Migrations.latestVersion)
                ) {
                    try await self.migrator().migrate(client: owner)
                }
            }
        }
    }

    @Test("an applied migration whose statements changed is refused; a failing migration leaves no trace")
    func checksumAndAtomicity() async throws {
        try await TestDatabase.withFresh { database in
            try await withPostgresClient(database.owner) { owner in
                _ = try await migrator().migrate(client: owner)
                var edited = Migrations.all
                let first = edited[0]
                edited[0] = Migration(
                    version: first.version, name: first.name, statements: first.statements + ["SELECT 1"])
                await #expect(throws: Migrator.Failure.checksumMismatch(version: first.version, name: first.name)) {
                    try await self.migrator(edited).migrate(client: owner)
                }

                let broken =
                    Migrations.all + [
                        Migration(
                            version: Migrations.latestVersion + 1,
                            name: "broken",
                            statements: ["CREATE TABLE half_done (id int)", "SELECT * FROM no_such_table"]
                        )
                    ]
                await #expect(
                    throws: Migrator.Failure.migrationFailed(
                        version: Migrations.latestVersion + 1,
                        name: "broken",
                        reason: "42P01: relation \"no_such_table\" does not exist"
                    )
                ) { try await self.migrator(broken).migrate(client: owner) }
                let rows = try await owner.query(
                    "SELECT count(*)::int FROM pg_tables WHERE tablename = 'half_done'"
                )
                for try await count in rows.decode(Int.self) { #expect(count == 0) }
                let versions = try await owner.query("SELECT max(version) FROM zaas_schema_migrations")
                for try await version in versions.decode(Int.self) { #expect(version == Migrations.latestVersion) }
            }
        }
    }

    @Test("the application role can read the migration record but not change it, and passes the role check")
    func applicationRole() async throws {
        try await TestDatabase.withFresh { database in
            try await withPostgresClient(database.owner) { owner in
                _ = try await migrator().migrate(client: owner)
                // The owner owns the tables, so it must never serve requests.
                await #expect(throws: ApplicationRoleCheck.Violation.self) {
                    try await ApplicationRoleCheck.verify(client: owner, logger: self.logger)
                }
            }
            try await withPostgresClient(database.app) { app in
                try await ApplicationRoleCheck.verify(client: app, logger: logger)
                let rows = try await app.query("SELECT count(*)::int FROM zaas_schema_migrations")
                for try await count in rows.decode(Int.self) { #expect(count == Migrations.all.count) }
                await #expect(throws: PSQLError.self) {
                    try await app.query("DELETE FROM zaas_schema_migrations")
                }
                await #expect(throws: PSQLError.self) {
                    try await app.query("CREATE TABLE sneaky (id int)")
                }
                let flags = try await app.query(
                    "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
                )
                for try await (isSuperuser, bypassesRLS) in flags.decode((Bool, Bool).self) {
                    #expect(!isSuperuser)
                    #expect(!bypassesRLS)
                }
            }
        }
    }
}
