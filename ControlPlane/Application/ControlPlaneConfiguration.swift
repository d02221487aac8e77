import Configuration
import Shared

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
    public var distribution: DistributionSettings
    public var canon: CanonSettings
    /// How often expired answers and answers of replaced canon versions leave the persistent cache.
    public var cacheSweepInterval: Duration
    /// The audit trail's partitions and retention (`audit.*`).
    var auditMaintenance: AuditMaintenance.Settings
    /// Closing billing periods by schedule (`billing.*`).
    var billingCloser: BillingCloser.Settings

    public init(reader: ConfigReader) throws {
        self.server = try ServerSettings(reader: reader)
        self.database = try DatabaseConfiguration(reader: reader)
        self.migrateOnStart = try reader.flag("migrations.on_start")
        self.keyPepper = try reader.hexSecret("keys.pepper", minimumBytes: 32)
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
        self.distribution = try DistributionSettings(reader: reader)
        self.canon = try CanonSettings(reader: reader)
        self.cacheSweepInterval = .seconds(try reader.setting("cache.sweep_interval_seconds", in: 1...86_400))
        self.auditMaintenance = try AuditMaintenance.Settings(reader: reader)
        self.billingCloser = try BillingCloser.Settings(reader: reader)
    }

    public static var defaults: [AbsoluteConfigKey: ConfigValue] {
        ServerSettings.defaults(port: 8400)
            .merging(DatabaseConfiguration.defaults) { $1 }
            .merging(AuditMaintenance.Settings.defaults) { $1 }
            .merging(BillingCloser.Settings.defaults) { $1 }
            .merging([
                "migrations.on_start": "true",
                "sessions.lifetime_seconds": "43200",
                "config.watch_max_wait_seconds": "30",
                "config.usage_report_interval_ms": "15000",
                "config.change_log_retention_hours": "168",
                "config.document_validity_seconds": "86400",
                "nodes.stale_after_seconds": "90",
                "nodes.max_credentials": "256",
                "nodes.enrolled_retire_after_seconds": "900",
                "embeddings.model_dir": ".zaas/models/all-MiniLM-L6-v2",
                "canon.build_threads": "2",
                "canon.max_upload_mib": "64",
                "canon.max_file_mib": "4",
                "canon.max_pending_builds_per_tenant": "2",
                "canon.max_versions_per_hour": "60",
                "canon.keep_unpublished_versions": "20",
                "canon.max_concurrent_uploads_per_tenant": "2",
                "cache.sweep_interval_seconds": "60",
            ]) { $1 }
    }
}
