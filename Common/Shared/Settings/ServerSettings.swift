import Configuration
import Logging

/// Settings every server has: where it listens and how much it logs.
public struct ServerSettings: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var logLevel: Logger.Level

    public init(reader: ConfigReader) throws {
        self.host = try reader.setting("http.host")
        self.port = try reader.setting("http.port", in: 0...65535)
        let level = try reader.setting("log.level")
        guard let parsed = Logger.Level(rawValue: level.lowercased()) else {
            throw ConfigurationError.invalid(
                key: "log.level",
                value: level,
                expected: "trace, debug, info, notice, warning, error or critical"
            )
        }
        self.logLevel = parsed
    }

    public static func defaults(port: Int) -> [AbsoluteConfigKey: ConfigValue] {
        [
            "http.host": "127.0.0.1",
            "http.port": .init(stringLiteral: String(port)),
            "log.level": "info",
        ]
    }
}
