import Common
import Foundation
import Logging
import NIOCore
import PostgresNIO

/// Where the local stack's PostgreSQL and Redis are, and their credentials.
///
/// `make test` starts the stack and exports `ZAAS_*`; a bare `swift test` after `make test` (or
/// `make services`) reads the same values from `.zaas/secrets.env`. Missing services are a test
/// failure, never a skip.
public struct TestEnvironment: Sendable {
    public var postgresHost = "127.0.0.1"
    public var postgresPort: Int
    public var ownerUser: String
    public var ownerPassword: String
    public var appUser: String
    public var appPassword: String
    public var adminDatabase: String
    public var redisHost = "127.0.0.1"
    public var redisPort: Int
    public var redisPassword: String?

    public static let shared: TestEnvironment = {
        do { return try TestEnvironment.load() } catch { fatalError("\(error)") }
    }()

    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    static func load() throws -> TestEnvironment {
        var values = ProcessInfo.processInfo.environment
        let secrets = repositoryRoot.appendingPathComponent(".zaas/secrets.env")
        if let text = try? String(contentsOf: secrets, encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else { continue }
                let key = String(parts[0])
                if values[key] == nil { values[key] = String(parts[1]) }
            }
        }
        func required(_ key: String) throws -> String {
            guard let value = values[key], !value.isEmpty else {
                throw SetupError(
                    message: "\(key) is not set and \(secrets.path) does not have it: run `make test` "
                        + "(or `make services`) so PostgreSQL and Redis are running"
                )
            }
            return value
        }
        return TestEnvironment(
            postgresPort: Int(values["ZAAS_PG_PORT"] ?? "54320") ?? 54320,
            ownerUser: values["ZAAS_DB_OWNER"] ?? "zaas_owner",
            ownerPassword: try required("ZAAS_DB_OWNER_PASSWORD"),
            appUser: values["ZAAS_DB_APP"] ?? "zaas_app",
            appPassword: try required("ZAAS_DB_APP_PASSWORD"),
            adminDatabase: values["ZAAS_DB_NAME"] ?? "zaas",
            redisPort: Int(values["ZAAS_REDIS_PORT"] ?? "63790") ?? 63790,
            redisPassword: try required("ZAAS_REDIS_PASSWORD")
        )
    }

    public struct SetupError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    public var redis: RedisConfiguration {
        // Tests share two cores with Argon2 and PostgreSQL work, so allow more than production's 500 ms.
        RedisConfiguration(
            host: redisHost, port: redisPort, password: redisPassword, poolSize: 2, commandTimeout: .seconds(3))
    }

    public func postgres(user: String, password: String, database: String) -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: postgresHost,
            port: postgresPort,
            username: user,
            password: password,
            database: database,
            tls: .disable
        )
        configuration.options.maximumConnections = 4
        configuration.options.connectTimeout = .seconds(5)
        return configuration
    }

    /// Settings in the form the servers read them (`ZAAS_*` without the prefix, dotted).
    public func controlPlaneSettings(database: String) -> [String: String] {
        [
            "postgres.host": postgresHost,
            "postgres.port": String(postgresPort),
            "postgres.database": database,
            "postgres.user": appUser,
            "postgres.password": appPassword,
            "postgres.owner_user": ownerUser,
            "postgres.owner_password": ownerPassword,
            "keys.pepper": String(repeating: "5a", count: 32),
        ]
    }
}

/// Runs `body` with a PostgreSQL client, running the client for the duration.
public func withPostgresClient<Result: Sendable>(
    _ configuration: PostgresClient.Configuration,
    _ body: (PostgresClient) async throws -> Result
) async throws -> Result {
    let client = PostgresClient(configuration: configuration, backgroundLogger: Logger(label: "test.postgres"))
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await client.run() }
        defer { group.cancelAll() }
        return try await body(client)
    }
}

/// A throwaway database on the local stack, created by the owner role and dropped afterwards,
/// so tests never see each other's data.
public struct TestDatabase: Sendable {
    public let name: String
    public let environment: TestEnvironment

    public static func withFresh<Result: Sendable>(
        _ body: (TestDatabase) async throws -> Result
    ) async throws -> Result {
        let environment = TestEnvironment.shared
        let name = "zaas_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let admin = environment.postgres(
            user: environment.ownerUser,
            password: environment.ownerPassword,
            database: environment.adminDatabase
        )
        do {
            _ = try await withPostgresClient(admin) { client in
                try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
            }
        } catch {
            throw SetupFailure(step: "CREATE DATABASE \(name)", error: error)
        }
        let database = TestDatabase(name: name, environment: environment)
        do {
            let result = try await body(database)
            try await database.drop(admin: admin)
            return result
        } catch {
            try? await database.drop(admin: admin)
            throw error
        }
    }

    private func drop(admin: PostgresClient.Configuration) async throws {
        // The application role's pooled connections close a moment after their client stops, and
        // the owner may not terminate them (FORCE would need pg_signal_backend): wait for them.
        var lastError: (any Error)?
        for _ in 0..<100 {
            do {
                _ = try await withPostgresClient(admin) { client in
                    try await client.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name)"))
                }
                return
            } catch let error as PSQLError where error.serverInfo?[.sqlState] == "55006" {
                lastError = error
                try await Task.sleep(for: .milliseconds(100))
            } catch {
                throw SetupFailure(step: "DROP DATABASE \(name)", error: error)
            }
        }
        throw SetupFailure(step: "DROP DATABASE \(name)", error: lastError!)
    }

    public var owner: PostgresClient.Configuration {
        environment.postgres(user: environment.ownerUser, password: environment.ownerPassword, database: name)
    }

    public var app: PostgresClient.Configuration {
        environment.postgres(user: environment.appUser, password: environment.appPassword, database: name)
    }
}

/// A database error in test set-up, with the server's full message (PSQLError hides it by default).
public struct SetupFailure: Error, CustomStringConvertible {
    public let step: String
    public let error: any Error
    public var description: String { "\(step) failed: \(String(reflecting: error))" }
}
