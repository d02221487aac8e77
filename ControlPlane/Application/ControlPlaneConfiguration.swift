import Common
import Configuration

/// Everything the control plane reads from configuration, validated at start.
public struct ControlPlaneConfiguration: Sendable {
    public var server: ServerSettings
    public var database: DatabaseConfiguration
    /// Run migrations (as the owner role) before serving. Off when a deploy step migrates instead.
    public var migrateOnStart: Bool
    /// The server-side secret API key digests are keyed with (hex, at least 32 bytes).
    public var keyPepper: [UInt8]
    public var sessionLifetime: Duration
    /// Created at start when set and absent from the database.
    public var bootstrapOperator: (email: String, password: String)?

    public init(reader: ConfigReader) throws {
        self.server = try ServerSettings(reader: reader)
        self.database = try DatabaseConfiguration(reader: reader)
        self.migrateOnStart = try reader.flag("migrations.on_start")
        let pepper = try reader.setting("keys.pepper", isSecret: true)
        guard let bytes = Hex.decode(pepper), bytes.count >= 32 else {
            throw ConfigurationError.invalid(
                key: "keys.pepper", value: "(hidden)", expected: "at least 64 lower-case hex digits")
        }
        self.keyPepper = bytes
        self.sessionLifetime = .seconds(try reader.setting("sessions.lifetime_seconds", in: 300...604_800))
        switch (
            reader.optionalSetting("bootstrap.operator_email"),
            reader.optionalSetting("bootstrap.operator_password", isSecret: true)
        ) {
        case (let email?, let password?): self.bootstrapOperator = (email, password)
        case (nil, nil): self.bootstrapOperator = nil
        default:
            throw ConfigurationError.missing(
                key: "bootstrap.operator_email and bootstrap.operator_password (both or neither)")
        }
    }

    public static var defaults: [AbsoluteConfigKey: ConfigValue] {
        ServerSettings.defaults(port: 8400)
            .merging(DatabaseConfiguration.defaults) { $1 }
            .merging(["migrations.on_start": "true", "sessions.lifetime_seconds": "43200"]) { $1 }
    }
}
