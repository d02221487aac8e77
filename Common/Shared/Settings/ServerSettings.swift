import Configuration
import Foundation
import Logging

/// Settings every server has: where it listens and how much it logs.
public struct ServerSettings: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var logLevel: Logger.Level
    /// Where `/metrics` is served: a listener of its own, on loopback unless configured
    /// otherwise, so the public port never shows operational detail (`metrics.host`,
    /// `metrics.port`; the port defaults to the HTTP port + 1000, or any free port when the HTTP
    /// port is 0).
    public var metricsHost: String
    public var metricsPort: Int
    /// A new connection's request head must arrive within this (`http.head_timeout_seconds`), a
    /// body within `bodyTimeout` of its head (`http.body_timeout_seconds`), the next head within
    /// `idleTimeout` of the previous response (`http.idle_timeout_seconds`). Slower clients are
    /// disconnected.
    public var headTimeout: Duration
    public var bodyTimeout: Duration
    /// Proxies whose `X-Forwarded-For` names the client (`http.trusted_proxies`: IP addresses or
    /// CIDR networks, comma-separated; none by default). `make run` trusts its nginx on loopback.
    public var trustedProxies: TrustedProxies
    public var idleTimeout: Duration
    /// Connections held at once (`http.max_connections`).
    public var maximumConnections: Int

    public init(reader: ConfigReader) throws {
        self.host = try reader.setting("http.host")
        self.port = try reader.setting("http.port", in: 0...65535)
        self.headTimeout = .seconds(try reader.setting("http.head_timeout_seconds", in: 1...3600))
        self.bodyTimeout = .seconds(try reader.setting("http.body_timeout_seconds", in: 1...3600))
        self.idleTimeout = .seconds(try reader.setting("http.idle_timeout_seconds", in: 1...3600))
        self.maximumConnections = try reader.setting("http.max_connections", in: 1...1_000_000)
        let proxies = (reader.optionalSetting("http.trusted_proxies") ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
        switch TrustedProxies.parse(proxies) {
        case .success(let trusted):
            self.trustedProxies = trusted
        case .failure(let invalid):
            throw ConfigurationError.invalid(
                key: "http.trusted_proxies", value: invalid.entry,
                expected: "IP addresses or CIDR networks (10.244.0.0/16) separated by commas")
        }
        self.metricsHost = try reader.setting("metrics.host")
        if reader.optionalSetting("metrics.port") != nil {
            self.metricsPort = try reader.setting("metrics.port", in: 0...65535)
        } else if self.port == 0 {
            self.metricsPort = 0
        } else {
            guard self.port + 1000 <= 65535 else {
                throw ConfigurationError.invalid(
                    key: "metrics.port", value: "", expected: "a port (http.port + 1000 is past 65535)")
            }
            self.metricsPort = self.port + 1000
        }
        guard self.metricsPort == 0 || self.metricsPort != self.port else {
            throw ConfigurationError.invalid(
                key: "metrics.port", value: String(self.metricsPort), expected: "a port other than http.port")
        }
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
            "metrics.host": "127.0.0.1",
            "http.head_timeout_seconds": "10",
            "http.body_timeout_seconds": "60",
            "http.idle_timeout_seconds": "75",
            "http.max_connections": "4096",
            "http.port": .init(stringLiteral: String(port)),
            "log.level": "info",
        ]
    }
}
