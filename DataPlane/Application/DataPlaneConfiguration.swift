import Configuration
import Crypto
import Foundation
import Shared

/// Everything a data-plane node reads from configuration, validated at start.
public struct DataPlaneConfiguration: Sendable {
    public var server: ServerSettings
    /// This node's name in logs, metrics and (later) the node registry.
    public var nodeID: String
    public var redis: RedisConfiguration
    /// The control plane's internal API: URL, this node's credential, connect timeout.
    public var controlPlane: ControlPlaneClient.Settings
    /// The fleet's enrollment secret (`nodes.enrollment_secret`), when the node obtains its
    /// credential by enrolling at start instead of being given one (`nodes.token`): `NodeEnroller`.
    public var enrollmentSecret: String?
    /// How long the control plane may hold a watch request open.
    public var watchWait: Duration
    /// The longest pause between retries while the control plane is unreachable.
    public var maximumBackoff: Duration
    /// The control plane's Ed25519 public key: configuration signed by anything else is refused.
    public var verificationKey: ConfigVerificationKey
    /// The pepper API key digests are keyed with (the control plane's `keys.pepper`).
    public var keyPepper: [UInt8]
    /// Where the node keeps its configuration snapshot and journal.
    public var stateDirectory: String
    /// How operators reach this node, as listed in the node registry.
    public var advertisedAddress: String
    public var embeddings: EmbeddingSettings
    /// What the query rate limits do while Redis is unreachable (`rate_limit.redis_fallback`).
    var rateLimit: RateLimiter.Settings
    /// The cosine similarity a cached question must reach to be served for another
    /// (`cache.semantic_threshold`); nil when the semantic cache is off.
    public var semanticThreshold: Float?
    /// Queries this node works on at once (`query.max_in_flight`); past it, 503 with Retry-After.
    public var maximumQueriesInFlight: Int
    /// Calling model backends (`models.*`): where their credentials are, how long a call waits
    /// for a free slot, how long an answer may be.
    var inference: InferenceEngine.Settings
    /// The audit spool and its shipping (`audit.*`, docs/audit.md).
    var audit: AuditRecorder.Settings
    /// Asynchronous queries run on this node (`jobs.*`, docs/airllm.md).
    var jobs: QueryJobWorker.Settings

    /// The in-process sentence-embedding model.
    public struct EmbeddingSettings: Sendable {
        /// A sentence-transformers folder (`bash infra/fetch-model.sh` makes one).
        public var modelDirectory: String
        /// Worker threads running forward passes.
        public var threads: Int
        /// How long a worker waits to fill a batch once a request is queued.
        public var batchWindow: Duration
        public var maximumBatch: Int
        /// Sentences that may wait for a worker (`embeddings.max_queued`); past it queries are shed (503).
        public var maximumQueued: Int
        /// The longest a sentence waits before it is refused rather than embedded late
        /// (`embeddings.max_wait_ms`).
        public var maximumWait: Duration

        init(reader: ConfigReader) throws {
            self.modelDirectory = try reader.setting("embeddings.model_dir")
            self.threads = try reader.setting("embeddings.threads", in: 1...64)
            self.batchWindow = .microseconds(try reader.setting("embeddings.batch_window_us", in: 0...100_000))
            self.maximumBatch = try reader.setting("embeddings.max_batch", in: 1...256)
            self.maximumQueued = try reader.setting("embeddings.max_queued", in: 1...1_000_000)
            self.maximumWait = .milliseconds(try reader.setting("embeddings.max_wait_ms", in: 10...600_000))
        }
    }

    public init(reader: ConfigReader) throws {
        self.server = try ServerSettings(reader: reader)
        self.nodeID =
            reader.optionalSetting("node.id") ?? "\(ProcessInfo.processInfo.hostName):\(self.server.port)"
        self.redis = try RedisConfiguration(reader: reader)
        let url = try reader.setting("control.url")
        guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), let host = parsed.host
        else {
            throw ConfigurationError.invalid(key: "control.url", value: url, expected: "an http(s) URL")
        }
        // The node credential and every tenant's key digests travel on this connection: in the
        // clear only on this machine, unless an operator says the network is protected otherwise.
        if parsed.scheme == "http", !Self.isLoopback(host), !(try reader.flag("control.allow_insecure_http")) {
            throw ConfigurationError.invalid(
                key: "control.url", value: url,
                expected: "an https URL, or http on loopback (set control.allow_insecure_http=true to allow plain HTTP)"
            )
        }
        // This node's own credential (`zaasctl nodes issue --node-id …`), or the fleet's enrollment
        // secret to obtain one with at start: checked for their form here, so a pasted shared secret
        // or a truncated token stops the node at start, not in a 401 loop.
        let token: String
        switch (
            reader.optionalSetting("nodes.token", isSecret: true),
            reader.optionalSetting("nodes.enrollment_secret", isSecret: true)
        ) {
        case (let given?, nil):
            guard given.hasPrefix("znode_"), Hex.isLowercase(String(given.dropFirst(6)), count: 64) else {
                throw ConfigurationError.invalid(
                    key: "nodes.token", value: "(hidden)",
                    expected: "this node's credential from `zaasctl nodes issue` (znode_ and 64 hex digits)")
            }
            token = given
        case (nil, .some):
            _ = try reader.hexSecret("nodes.enrollment_secret", minimumBytes: 32)
            self.enrollmentSecret = reader.optionalSetting("nodes.enrollment_secret", isSecret: true)
            token = ""
        case (.some, .some):
            throw ConfigurationError.invalid(
                key: "nodes.enrollment_secret", value: "(hidden)",
                expected: "unset when nodes.token is set: a node either is given its credential or enrolls for one")
        case (nil, nil):
            throw ConfigurationError.invalid(
                key: "nodes.token", value: "",
                expected:
                    "this node's credential from `zaasctl nodes issue`, or nodes.enrollment_secret to enroll for one")
        }
        self.controlPlane = ControlPlaneClient.Settings(
            url: url, nodeToken: token,
            timeout: .milliseconds(try reader.setting("control.timeout_ms", in: 50...60_000)))
        self.watchWait = .seconds(try reader.setting("control.watch_wait_seconds", in: 1...300))
        self.maximumBackoff = .milliseconds(try reader.setting("control.max_backoff_ms", in: 100...60_000))
        do {
            self.verificationKey = try ConfigVerificationKey(hex: try reader.setting("config.public_key"))
        } catch let error as ConfigKeyError {
            throw ConfigurationError.invalid(
                key: "config.public_key", value: reader.optionalSetting("config.public_key") ?? "", expected: "\(error)"
            )
        }
        self.keyPepper = try reader.hexSecret("keys.pepper", minimumBytes: 32)
        let safeID = String(self.nodeID.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" })
        self.stateDirectory = reader.optionalSetting("node.state_dir") ?? ".zaas/node-state/\(safeID)"
        self.advertisedAddress =
            reader.optionalSetting("node.advertise_address") ?? "http://\(self.server.host):\(self.server.port)"
        self.embeddings = try EmbeddingSettings(reader: reader)
        let fallback = try reader.setting("rate_limit.redis_fallback")
        guard let parsed = RateLimiter.Fallback(rawValue: fallback) else {
            throw ConfigurationError.invalid(
                key: "rate_limit.redis_fallback", value: fallback, expected: "local or refuse")
        }
        let threshold = try reader.setting("cache.semantic_threshold")
        switch threshold.lowercased() {
        case "off": self.semanticThreshold = nil
        default:
            guard let value = Float(threshold), (0.8...1).contains(value) else {
                throw ConfigurationError.invalid(
                    key: "cache.semantic_threshold", value: threshold, expected: "a cosine from 0.8 to 1, or off")
            }
            self.semanticThreshold = value
        }
        self.maximumQueriesInFlight = try reader.setting("query.max_in_flight", in: 1...1_000_000)
        self.inference = InferenceEngine.Settings(
            credentialsDirectory: reader.optionalSetting("models.credentials_dir"),
            maximumWait: .milliseconds(try reader.setting("models.max_wait_ms", in: 0...60_000)),
            answerTokens: try reader.setting("models.max_answer_tokens", in: 16...8192),
            monitorInterval: .milliseconds(try reader.setting("models.monitor_interval_ms", in: 100...600_000)))
        self.rateLimit = RateLimiter.Settings(
            fallback: parsed,
            probeInterval: .milliseconds(try reader.setting("rate_limit.probe_interval_ms", in: 50...60_000)))
        self.audit = try Self.auditSettings(reader: reader, stateDirectory: self.stateDirectory, pepper: self.keyPepper)
        self.jobs = QueryJobWorker.Settings(
            workers: try reader.setting("jobs.workers", in: 0...64),
            lease: .milliseconds(try reader.setting("jobs.lease_ms", in: 500...600_000)),
            poll: .milliseconds(try reader.setting("jobs.poll_ms", in: 10...60_000)),
            maximumAttempts: try reader.setting("jobs.max_attempts", in: 1...10),
            minimumKeep: try reader.setting("jobs.min_keep_seconds", in: 1...86_400),
            namespace: try Self.jobsNamespace(reader))
    }

    /// `jobs.namespace`: 1 to 64 letters, digits, `-` and `_` (it names Redis keys).
    static func jobsNamespace(_ reader: ConfigReader) throws -> String {
        let namespace: String = try reader.setting("jobs.namespace")
        guard namespace.wholeMatch(of: /[A-Za-z0-9_-]{1,64}/) != nil else {
            throw ConfigurationError.invalid(
                key: "jobs.namespace", value: namespace, expected: "1 to 64 letters, digits, - and _")
        }
        return namespace
    }

    static func auditSettings(
        reader: ConfigReader, stateDirectory: String, pepper: [UInt8]
    ) throws -> AuditRecorder.Settings {
        let whenFull = try reader.setting("audit.when_full")
        guard let policy = AuditRecorder.WhenFull(rawValue: whenFull) else {
            throw ConfigurationError.invalid(key: "audit.when_full", value: whenFull, expected: "refuse or answer")
        }
        // Shared by every node of a deployment, so repeats group across nodes; derived from the
        // key pepper unless set.
        let secret =
            reader.optionalSetting("audit.fingerprint_secret", isSecret: true) == nil
            ? QuestionPrivacy.secret(pepper: pepper)
            : SymmetricKey(data: try reader.hexSecret("audit.fingerprint_secret", minimumBytes: 32))
        let segmentBytes = try reader.setting("audit.segment_kb", in: 64...65_536) * 1024
        let maximumBytes = try reader.setting("audit.max_spool_mb", in: 1...10_000_000) << 20
        guard maximumBytes >= 2 * segmentBytes else {
            throw ConfigurationError.invalid(
                key: "audit.max_spool_mb", value: "\(maximumBytes >> 20)",
                expected: "at least two segments (audit.segment_kb × 2)")
        }
        return AuditRecorder.Settings(
            directory: reader.optionalSetting("audit.spool_dir") ?? stateDirectory + "/audit",
            spool: .init(segmentBytes: segmentBytes, maximumBytes: maximumBytes),
            syncInterval: .milliseconds(try reader.setting("audit.sync_interval_ms", in: 1...10_000)),
            shipInterval: .milliseconds(try reader.setting("audit.ship_interval_ms", in: 10...60_000)),
            whenFull: policy, enabled: try reader.flag("audit.enabled"), fingerprintSecret: secret)
    }

    /// 127.0.0.0/8, ::1 or localhost.
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if bare == "localhost" || bare == "::1" { return true }
        let octets = bare.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    public static var defaults: [AbsoluteConfigKey: ConfigValue] {
        ServerSettings.defaults(port: 8401)
            .merging(RedisConfiguration.defaults) { $1 }
            .merging([
                "control.url": "http://127.0.0.1:8400",
                "control.allow_insecure_http": "false",
                "control.timeout_ms": "1000",
                "control.watch_wait_seconds": "25",
                "control.max_backoff_ms": "2000",
                "embeddings.model_dir": ".zaas/models/all-MiniLM-L6-v2",
                // One worker per core: under load each takes its own batch, and the uncached
                // query rate rose by a fifth to a third from one worker to two on 2 cores
                // (docs/benchmarks.md, issue 20).
                "embeddings.threads": .init(
                    stringLiteral: String(min(64, max(1, ProcessInfo.processInfo.activeProcessorCount)))),
                "embeddings.batch_window_us": "500",
                "embeddings.max_batch": "32",
                "embeddings.max_queued": "1024",
                "embeddings.max_wait_ms": "5000",
                "query.max_in_flight": "256",
                "models.max_wait_ms": "250",
                "models.max_answer_tokens": "320",
                "models.monitor_interval_ms": "2000",
                "jobs.workers": "2",
                "jobs.lease_ms": "30000",
                "jobs.poll_ms": "250",
                "jobs.max_attempts": "3",
                "jobs.min_keep_seconds": "300",
                "jobs.namespace": "default",
                "rate_limit.redis_fallback": "local",
                "cache.semantic_threshold": "0.95",
                "rate_limit.probe_interval_ms": "500",
                "audit.segment_kb": "4096",
                "audit.max_spool_mb": "4096",
                "audit.sync_interval_ms": "100",
                "audit.ship_interval_ms": "1000",
                "audit.when_full": "refuse",
                "audit.enabled": "true",
            ]) { $1 }
    }
}
