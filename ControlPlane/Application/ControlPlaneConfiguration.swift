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
    public var distribution: DistributionSettings
    public var canon: CanonSettings
    /// How often expired answers and answers of replaced canon versions leave the persistent cache.
    public var cacheSweepInterval: Duration

    /// Canon uploads and builds.
    public struct CanonSettings: Sendable {
        /// The sentence-transformers model the builder embeds chunks with (the nodes' model).
        public var modelDirectory: String
        /// Embedding threads of one build.
        public var buildThreads: Int
        /// Largest upload body.
        public var maximumUploadBytes: Int
        /// Largest single file in an upload (Markdown, JSON, NDJSON, or inside an archive).
        public var maximumFileBytes: Int

        init(reader: ConfigReader) throws {
            self.modelDirectory = try reader.setting("embeddings.model_dir")
            self.buildThreads = try reader.setting("canon.build_threads", in: 1...64)
            self.maximumUploadBytes = (try reader.setting("canon.max_upload_mib", in: 1...1024)) << 20
            self.maximumFileBytes = (try reader.setting("canon.max_file_mib", in: 1...256)) << 20
        }
    }

    /// How configuration reaches data-plane nodes.
    public struct DistributionSettings: Sendable {
        /// Signs every config document (Ed25519; `config.signing_key`, the 32-byte seed in hex).
        public var signingKey: ConfigSigningKey
        /// The credential nodes present on the internal API (`nodes.token`, at least 32 characters).
        public var nodeToken: String
        /// The longest a watch request is held open when nothing changes.
        public var maximumWait: Duration
        /// Handed to nodes: how often they report last-used times.
        public var usageReportInterval: Duration
        /// Change-log entries older than this are compacted; nodes further behind get a full snapshot.
        public var changeLogRetention: Duration
        /// A node not seen for this long is listed as `stale`.
        public var nodeStaleAfter: Duration

        public var nodeSettings: DataPlaneSettings {
            DataPlaneSettings(
                usageReportIntervalMilliseconds: UInt32(
                    clamping: self.usageReportInterval.components.seconds * 1000
                        + self.usageReportInterval.components.attoseconds / 1_000_000_000_000_000))
        }

        init(reader: ConfigReader) throws {
            do {
                self.signingKey = try ConfigSigningKey(
                    hexSeed: try reader.setting("config.signing_key", isSecret: true))
            } catch let error as ConfigKeyError {
                throw ConfigurationError.invalid(key: "config.signing_key", value: "(hidden)", expected: "\(error)")
            }
            self.nodeToken = try reader.setting("nodes.token", isSecret: true)
            guard self.nodeToken.utf8.count >= 32 else {
                throw ConfigurationError.invalid(
                    key: "nodes.token", value: "(hidden)", expected: "at least 32 characters")
            }
            self.maximumWait = .seconds(try reader.setting("config.watch_max_wait_seconds", in: 1...300))
            self.usageReportInterval = .milliseconds(
                try reader.setting("config.usage_report_interval_ms", in: 100...3_600_000))
            self.changeLogRetention = .seconds(
                3600 * (try reader.setting("config.change_log_retention_hours", in: 1...8760)))
            self.nodeStaleAfter = .seconds(try reader.setting("nodes.stale_after_seconds", in: 5...86_400))
        }
    }

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
    }

    public static var defaults: [AbsoluteConfigKey: ConfigValue] {
        ServerSettings.defaults(port: 8400)
            .merging(DatabaseConfiguration.defaults) { $1 }
            .merging([
                "migrations.on_start": "true",
                "sessions.lifetime_seconds": "43200",
                "config.watch_max_wait_seconds": "30",
                "config.usage_report_interval_ms": "15000",
                "config.change_log_retention_hours": "168",
                "nodes.stale_after_seconds": "90",
                "embeddings.model_dir": ".zaas/models/all-MiniLM-L6-v2",
                "canon.build_threads": "2",
                "canon.max_upload_mib": "64",
                "canon.max_file_mib": "4",
                "cache.sweep_interval_seconds": "60",
            ]) { $1 }
    }
}
