import Common
import Configuration

/// Everything the control plane reads from configuration, validated at start.
public struct ControlPlaneConfiguration: Sendable {
    public var server: ServerSettings
    public var database: DatabaseConfiguration
    /// Run migrations (as the owner role) before serving. Off when a deploy step migrates instead.
    public var migrateOnStart: Bool

    public init(reader: ConfigReader) throws {
        self.server = try ServerSettings(reader: reader)
        self.database = try DatabaseConfiguration(reader: reader)
        self.migrateOnStart = try reader.flag("migrations.on_start")
    }

    public static var defaults: [AbsoluteConfigKey: ConfigValue] {
        ServerSettings.defaults(port: 8400)
            .merging(DatabaseConfiguration.defaults) { $1 }
            .merging(["migrations.on_start": "true"]) { $1 }
    }
}
