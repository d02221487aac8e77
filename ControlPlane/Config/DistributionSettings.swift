import Configuration
import Crypto
import Shared

/// How configuration reaches data-plane nodes.
public struct DistributionSettings: Sendable {
    /// Signs every config document (Ed25519; `config.signing_key`, the 32-byte seed in hex).
    public var signingKey: ConfigSigningKey
    /// At most this many node credentials are active at once (`nodes.max_credentials`): each
    /// node presents its own (`zaasctl nodes issue`), so this bounds how many nodes can register.
    public var maximumNodeCredentials: Int
    /// The longest a watch request is held open when nothing changes.
    public var maximumWait: Duration
    /// Handed to nodes: how often they report last-used times.
    public var usageReportInterval: Duration
    /// Change-log entries older than this are compacted; nodes further behind get a full snapshot.
    public var changeLogRetention: Duration
    /// A node not seen for this long is listed as `stale`.
    public var nodeStaleAfter: Duration
    /// The SHA-256 of the fleet's enrollment secret (`nodes.enrollment_secret`, at least 32 bytes
    /// in hex): a node presenting it may obtain a credential of its own (`EnrollmentController`).
    /// Unset: nodes cannot enroll, operators issue every credential.
    public var enrollmentSecretDigest: [UInt8]?
    /// An enrolled credential whose node has not been seen for this long is revoked
    /// (`nodes.enrolled_retire_after_seconds`): the pod it was issued to is gone.
    public var enrolledRetireAfter: Duration
    /// How long nodes accept a signed document after it was built (`config.document_validity_seconds`):
    /// the window in which a captured document could be replayed. Documents are rebuilt well
    /// before it ends.
    public var documentValidity: Duration

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
        self.maximumNodeCredentials = try reader.setting("nodes.max_credentials", in: 1...100_000)
        self.maximumWait = .seconds(try reader.setting("config.watch_max_wait_seconds", in: 1...300))
        self.usageReportInterval = .milliseconds(
            try reader.setting("config.usage_report_interval_ms", in: 100...3_600_000))
        self.changeLogRetention = .seconds(
            3600 * (try reader.setting("config.change_log_retention_hours", in: 1...8760)))
        self.nodeStaleAfter = .seconds(try reader.setting("nodes.stale_after_seconds", in: 5...86_400))
        if reader.optionalSetting("nodes.enrollment_secret", isSecret: true) != nil {
            let secret = try reader.hexSecret("nodes.enrollment_secret", minimumBytes: 32)
            self.enrollmentSecretDigest = Array(SHA256.hash(data: Array(Hex.encode(secret).utf8)))
        } else {
            self.enrollmentSecretDigest = nil
        }
        self.enrolledRetireAfter = .seconds(
            try reader.setting("nodes.enrolled_retire_after_seconds", in: 5...604_800))
        // A live node reports at least once per watch; several missed reports before it is retired.
        guard self.enrolledRetireAfter >= self.maximumWait * 3 else {
            throw ConfigurationError.invalid(
                key: "nodes.enrolled_retire_after_seconds", value: "\(self.enrolledRetireAfter.components.seconds)",
                expected: "at least three times config.watch_max_wait_seconds")
        }
        self.documentValidity = .seconds(try reader.setting("config.document_validity_seconds", in: 300...604_800))
    }
}
