import Configuration
import NIOCore

/// Where Redis is and how patient to be with it.
public struct RedisConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public var database: Int
    /// Connections kept open; commands are pipelined over them.
    public var poolSize: Int
    public var connectTimeout: TimeAmount
    public var commandTimeout: TimeAmount
    /// After a failed connect, calls fail fast for this long instead of each waiting for a timeout.
    public var reconnectBackoff: TimeAmount

    public init(
        host: String = "127.0.0.1",
        port: Int = 6379,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        poolSize: Int = 4,
        connectTimeout: TimeAmount = .seconds(1),
        commandTimeout: TimeAmount = .milliseconds(500),
        reconnectBackoff: TimeAmount = .milliseconds(200)
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.poolSize = poolSize
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.reconnectBackoff = reconnectBackoff
    }

    /// Reads `redis.*` settings.
    public init(reader: ConfigReader) throws {
        self.init(
            host: try reader.setting("redis.host"),
            port: try reader.setting("redis.port", in: 1...65535),
            username: reader.optionalSetting("redis.username"),
            password: reader.optionalSetting("redis.password", isSecret: true),
            database: try reader.setting("redis.database", in: 0...15),
            poolSize: try reader.setting("redis.pool_size", in: 1...256),
            connectTimeout: .milliseconds(Int64(try reader.setting("redis.connect_timeout_ms", in: 10...60_000))),
            commandTimeout: .milliseconds(Int64(try reader.setting("redis.command_timeout_ms", in: 10...60_000))),
            reconnectBackoff: .milliseconds(Int64(try reader.setting("redis.reconnect_backoff_ms", in: 0...60_000)))
        )
    }

    public static let defaults: [AbsoluteConfigKey: ConfigValue] = [
        "redis.host": "127.0.0.1",
        "redis.port": "63790",
        "redis.database": "0",
        "redis.pool_size": "4",
        "redis.connect_timeout_ms": "1000",
        "redis.command_timeout_ms": "500",
        "redis.reconnect_backoff_ms": "200",
    ]
}
