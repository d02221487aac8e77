import Foundation
import Logging
import PostgresNIO

/// Brings the database schema up to what this binary expects.
///
/// Ordered, recorded in `zaas_schema_migrations`, idempotent (a second run does nothing), safe
/// when several control planes start at once (a session advisory lock serialises them), and it
/// refuses a database that is newer than the binary or whose applied migrations changed.
public struct Migrator: Sendable {
    public enum Failure: Error, CustomStringConvertible, Equatable {
        case databaseNewerThanBinary(database: Int, binary: Int)
        case checksumMismatch(version: Int, name: String)
        case unknownAppliedVersion(Int)
        case invalidRoleName(String)
        case migrationFailed(version: Int, name: String, reason: String)

        public var description: String {
            switch self {
            case .databaseNewerThanBinary(let database, let binary):
                "the database schema is at version \(database) but this binary knows only up to \(binary); "
                    + "run a newer zaas-control or restore a matching database"
            case .checksumMismatch(let version, let name):
                "migration \(version) (\(name)) was applied with different statements than this binary holds"
            case .unknownAppliedVersion(let version):
                "the database records migration \(version), which this binary does not know"
            case .invalidRoleName(let role):
                "application role name \(role) is not a plain identifier"
            case .migrationFailed(let version, let name, let reason):
                "migration \(version) (\(name)) failed and was rolled back: \(reason)"
            }
        }
    }

    /// What a run did.
    public struct Report: Sendable, Equatable {
        public var applied: [Int]
        public var currentVersion: Int
    }

    /// Any constant works; it only has to be the same for every control plane.
    static let advisoryLockKey: Int64 = 0x7A61_6173_6D69_6772  // "zaasmigr"

    public let migrations: [Migration]
    public let applicationRole: String
    public let logger: Logger

    public init(migrations: [Migration] = Migrations.all, applicationRole: String, logger: Logger) {
        self.migrations = migrations
        self.applicationRole = applicationRole
        self.logger = logger
    }

    public func migrate(client: PostgresClient) async throws -> Report {
        try await client.withOpenConnection { connection in
            try await self.migrate(connection: connection)
        }
    }

    public func migrate(connection: PostgresConnection) async throws -> Report {
        guard DatabaseConfiguration.isPlainIdentifier(self.applicationRole) else {
            throw Failure.invalidRoleName(self.applicationRole)
        }
        try await connection.query("SELECT pg_advisory_lock(\(Self.advisoryLockKey))", logger: self.logger)
        do {
            let report = try await self.migrateLocked(connection: connection)
            try await connection.query("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: self.logger)
            return report
        } catch {
            _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: self.logger)
            throw error
        }
    }

    private func migrateLocked(connection: PostgresConnection) async throws -> Report {
        try await connection.query(
            """
            CREATE TABLE IF NOT EXISTS zaas_schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                applied_by text NOT NULL DEFAULT current_user
            )
            """,
            logger: self.logger
        )
        var applied: [Int: String] = [:]
        let rows = try await connection.query(
            "SELECT version, checksum FROM zaas_schema_migrations ORDER BY version",
            logger: self.logger
        )
        for try await (version, checksum) in rows.decode((Int, String).self) {
            applied[version] = checksum
        }

        let binaryVersion = self.migrations.last?.version ?? 0
        if let databaseVersion = applied.keys.max(), databaseVersion > binaryVersion {
            throw Failure.databaseNewerThanBinary(database: databaseVersion, binary: binaryVersion)
        }
        let known = Dictionary(uniqueKeysWithValues: self.migrations.map { ($0.version, $0) })
        for (version, checksum) in applied {
            guard let migration = known[version] else { throw Failure.unknownAppliedVersion(version) }
            guard migration.checksum == checksum else {
                throw Failure.checksumMismatch(version: version, name: migration.name)
            }
        }

        var newlyApplied: [Int] = []
        for migration in self.migrations where applied[migration.version] == nil {
            let logger = self.logger
            let role = self.applicationRole
            do {
                try await connection.withTransaction(logger: logger) { transaction in
                    for statement in migration.statements {
                        let sql = statement.replacingOccurrences(of: "{{app_role}}", with: role)
                        try await transaction.query(PostgresQuery(unsafeSQL: sql), logger: logger)
                    }
                    try await transaction.query(
                        """
                        INSERT INTO zaas_schema_migrations (version, name, checksum)
                        VALUES (\(migration.version), \(migration.name), \(migration.checksum))
                        """,
                        logger: logger
                    )
                }
            } catch let error as PostgresTransactionError {
                let cause = (error.closureError ?? error.beginError ?? error.commitError) as? PSQLError
                let reason =
                    cause?.serverInfo.map { info in
                        "\(info[.sqlState] ?? "?"): \(info[.message] ?? "unknown error")"
                    } ?? "\(String(reflecting: error))"
                throw Failure.migrationFailed(version: migration.version, name: migration.name, reason: reason)
            }
            logger.info(
                "migration applied",
                metadata: ["migration_version": "\(migration.version)", "migration": "\(migration.name)"]
            )
            newlyApplied.append(migration.version)
        }
        return Report(applied: newlyApplied, currentVersion: binaryVersion)
    }
}
