import Common
import Configuration
import Foundation

/// Everything a data-plane node reads from configuration, validated at start.
public struct DataPlaneConfiguration: Sendable {
    public var server: ServerSettings
    /// This node's name in logs, metrics and (later) the node registry.
    public var nodeID: String
    public var redis: RedisConfiguration
    public var controlPlaneURL: String
    /// How often the node checks that the control plane answers.
    public var controlPlaneCheckInterval: Duration
    public var controlPlaneTimeout: Duration

    public init(reader: ConfigReader) throws {
        self.server = try ServerSettings(reader: reader)
        self.nodeID =
            reader.optionalSetting("node.id") ?? "\(ProcessInfo.processInfo.hostName):\(self.server.port)"
        self.redis = try RedisConfiguration(reader: reader)
        let url = try reader.setting("control.url")
        guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
            throw ConfigurationError.invalid(key: "control.url", value: url, expected: "an http(s) URL")
        }
        self.controlPlaneURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        self.controlPlaneCheckInterval = .milliseconds(try reader.setting("control.check_interval_ms", in: 50...60_000))
        self.controlPlaneTimeout = .milliseconds(try reader.setting("control.timeout_ms", in: 50...60_000))
    }

    public static var defaults: [AbsoluteConfigKey: ConfigValue] {
        ServerSettings.defaults(port: 8401)
            .merging(RedisConfiguration.defaults) { $1 }
            .merging([
                "control.url": "http://127.0.0.1:8400",
                "control.check_interval_ms": "1000",
                "control.timeout_ms": "1000",
            ]) { $1 }
    }
}
