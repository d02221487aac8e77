import Configuration
import PostgresNIO
import Shared

/// How the control plane reaches PostgreSQL: as the application role for requests, and as the
/// owner role only to run migrations at start.
public struct DatabaseConfiguration: Sendable {
    public enum TLSMode: String, Sendable { case disable, prefer, require }

    public var host: String
    public var port: Int
    public var database: String
    public var user: String
    public var password: String
    public var ownerUser: String
    public var ownerPassword: String?
    public var poolSize: Int
    public var connectTimeout: Duration
    public var tls: TLSMode

    public init(reader: ConfigReader) throws {
        self.host = try reader.setting("postgres.host")
        self.port = try reader.setting("postgres.port", in: 1...65535)
        self.database = try reader.setting("postgres.database")
        self.user = try reader.setting("postgres.user")
        self.password = try reader.setting("postgres.password", isSecret: true)
        self.ownerUser = try reader.setting("postgres.owner_user")
        self.ownerPassword = reader.optionalSetting("postgres.owner_password", isSecret: true)
        self.poolSize = try reader.setting("postgres.pool_size", in: 1...500)
        self.connectTimeout = .milliseconds(try reader.setting("postgres.connect_timeout_ms", in: 100...120_000))
        let tls = try reader.setting("postgres.tls")
        guard let mode = TLSMode(rawValue: tls) else {
            throw ConfigurationError.invalid(key: "postgres.tls", value: tls, expected: "disable, prefer or require")
        }
        self.tls = mode
        guard Self.isPlainIdentifier(self.user), Self.isPlainIdentifier(self.ownerUser) else {
            throw ConfigurationError.invalid(
                key: "postgres.user",
                value: "\(self.user)/\(self.ownerUser)",
                expected: "role names of lower-case letters, digits and underscores"
            )
        }
    }

    public static let defaults: [AbsoluteConfigKey: ConfigValue] = [
        "postgres.host": "127.0.0.1",
        "postgres.port": "54320",
        "postgres.database": "zaas",
        "postgres.user": "zaas_app",
        "postgres.owner_user": "zaas_owner",
        "postgres.pool_size": "20",
        "postgres.connect_timeout_ms": "5000",
        "postgres.tls": "disable",
    ]

    /// The pool the server uses for requests: the application role, which owns nothing and
    /// cannot bypass row-level security.
    public var applicationClient: PostgresClient.Configuration {
        self.clientConfiguration(user: self.user, password: self.password, poolSize: self.poolSize)
    }

    /// The owner role, for migrations only.
    public func ownerClient() throws -> PostgresClient.Configuration {
        guard let ownerPassword else { throw ConfigurationError.missing(key: "postgres.owner_password") }
        return self.clientConfiguration(user: self.ownerUser, password: ownerPassword, poolSize: 2)
    }

    private func clientConfiguration(user: String, password: String, poolSize: Int) -> PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS =
            switch self.tls {
            case .disable: .disable
            case .prefer: .prefer(.makeClientConfiguration())
            case .require: .require(.makeClientConfiguration())
            }
        var configuration = PostgresClient.Configuration(
            host: self.host,
            port: self.port,
            username: user,
            password: password,
            database: self.database,
            tls: tls
        )
        configuration.options.maximumConnections = poolSize
        configuration.options.connectTimeout = self.connectTimeout
        return configuration
    }

    /// A pool of one connection as the application role, for the availability probe.
    public var probeClient: PostgresClient.Configuration {
        var configuration = self.clientConfiguration(user: self.user, password: self.password, poolSize: 1)
        configuration.options.connectTimeout = .seconds(2)
        return configuration
    }

    static func isPlainIdentifier(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 63, first >= 0x61 && first <= 0x7A || first == 0x5F else {
            return false
        }
        return name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }
}
