import Configuration
import Embeddings
import Hummingbird
import Logging
import ServiceLifecycle
import Shared

/// Builds a data-plane node from configuration and serves it: the one composition root.
public func buildApplication(reader: ConfigReader) async throws -> some ApplicationProtocol {
    try await buildApplication(configuration: DataPlaneConfiguration(reader: reader))
}

public func buildApplication(configuration: DataPlaneConfiguration) async throws -> some ApplicationProtocol {
    // Once per process, before any part of the node makes a metric.
    PrometheusMetrics.bootstrap()
    var logger = Logger(label: "zaas-data")
    logger.logLevel = configuration.server.logLevel
    logger[metadataKey: "node"] = .string(configuration.nodeID)
    let node = try DataPlaneNode(configuration: configuration, logger: logger)
    // A node that enrolls for its credential does so before it serves.
    try await node.control.enroll()
    // Serve from the disk copy at once; the watcher catches up from there.
    node.watcher.loadFromDisk()
    return Application(
        router: buildRouter(node: node),
        server: configuration.server.serverBuilder,
        configuration: configuration.server.applicationConfiguration(serverName: "zaas-data"),
        services: node.services + [
            PrometheusMetrics.server(settings: configuration.server, serverName: "zaas-data-metrics", logger: logger),
            ProcessMetrics(),
        ],
        logger: logger
    )
}

/// Every long-lived part of a node, made from configuration in one place, and the order in which
/// they run as services.
public struct DataPlaneNode: Sendable {
    public let nodeID: String
    public let control: ControlPlaneClient
    public let redis: RedisClient
    public let watcher: ConfigWatcher
    public let verifier: KeyVerifier
    public let usage: KeyUsageRecorder
    /// Sentence embeddings for retrieval and the semantic cache, loaded once at start.
    public let embedder: BatchingEmbedder
    /// The canon versions the configuration names, loaded.
    public let canon: CanonLibrary
    let limiter: RateLimiter
    let persistentCache: PersistentAnswerCache
    let semanticCache: SemanticAnswerCache?
    let cache: AnswerCache
    let sweeper: CacheSweeper
    let pipeline: QueryPipeline
    /// Routes answers to model backends (and owns the HTTP client they are called with).
    let inference: InferenceEngine
    /// Queries in progress on this node, bounded: past the bound the node sheds load.
    let queriesInFlight: InFlightLimit
    /// Every query's audit event, in the spool before its response is sent, and its shipping.
    let audit: AuditRecorder
    let auditShipper: AuditShipper
    /// Asynchronous queries, kept in Redis, and this node's worker running them.
    let jobs: QueryJobs
    let jobWorker: QueryJobWorker
    /// Hands the credential back as the node stops, when the node enrolled for it.
    let enrollmentRelease: EnrollmentRelease?

    public init(configuration: DataPlaneConfiguration, logger: Logger) throws {
        self.verifier = KeyVerifier(digester: try APIKeyDigester(pepper: configuration.keyPepper))
        self.queriesInFlight = InFlightLimit(maximum: configuration.maximumQueriesInFlight)
        // The model before any client: a node without it cannot start, and nothing needs shutting down yet.
        let embeddings = configuration.embeddings
        do {
            self.embedder = BatchingEmbedder(
                model: try SentenceModel(directory: embeddings.modelDirectory), threads: embeddings.threads,
                batchWindow: embeddings.batchWindow, maximumBatch: embeddings.maximumBatch,
                maximumQueued: embeddings.maximumQueued, maximumWait: embeddings.maximumWait)
        } catch {
            throw ConfigurationError.invalid(
                key: "embeddings.model_dir", value: embeddings.modelDirectory,
                expected:
                    "the all-MiniLM-L6-v2 folder (fetch it with `bash infra/fetch-model.sh`, as make run does): \(error)"
            )
        }
        self.nodeID = configuration.nodeID
        let enroller = configuration.enrollmentSecret.map {
            NodeEnroller(configuration: configuration, secret: $0, logger: logger)
        }
        let control = ControlPlaneClient(settings: configuration.controlPlane, enroller: enroller)
        self.enrollmentRelease = enroller.map { EnrollmentRelease(control: control, enroller: $0) }
        let store = ConfigStore()
        let redis = RedisClient(configuration: configuration.redis, logger: logger)
        self.control = control
        self.redis = redis
        self.watcher = ConfigWatcher(
            store: store,
            files: SnapshotFiles(directory: configuration.stateDirectory),
            settings: .init(
                verificationKey: configuration.verificationKey, nodeID: configuration.nodeID,
                advertisedAddress: configuration.advertisedAddress, wait: configuration.watchWait,
                maximumBackoff: configuration.maximumBackoff),
            control: control,
            logger: logger
        )
        self.usage = KeyUsageRecorder(
            control: control, nodeID: configuration.nodeID, configuration: store, logger: logger)
        self.canon = CanonLibrary(
            directory: configuration.stateDirectory + "/artifacts", configuration: store, control: control,
            logger: logger)
        let watcher = self.watcher
        self.limiter = RateLimiter(
            redis: redis, settings: configuration.rateLimit, liveNodes: { watcher.liveNodes }, logger: logger)
        self.persistentCache = PersistentAnswerCache(
            control: control, isReachable: { watcher.reachability == .up }, logger: logger)
        self.semanticCache = configuration.semanticThreshold.map {
            SemanticAnswerCache(redis: redis, threshold: $0, logger: logger)
        }
        self.cache = AnswerCache(
            redis: redis, persistent: self.persistentCache, semantic: self.semanticCache, logger: logger)
        self.sweeper = CacheSweeper(redis: redis, library: self.canon, store: store, logger: logger)
        self.inference = InferenceEngine(
            settings: configuration.inference, embedder: self.embedder,
            catalog: { store.current?.settings.models ?? [] }, logger: logger)
        do {
            self.audit = try AuditRecorder(
                nodeID: configuration.nodeID, settings: configuration.audit,
                privacy: QuestionPrivacy(secret: configuration.audit.fingerprintSecret), logger: logger)
        } catch {
            throw ConfigurationError.invalid(
                key: "audit.spool_dir", value: configuration.audit.directory,
                expected: "a folder this node can write its audit spool in: \(error)")
        }
        self.auditShipper = AuditShipper(recorder: self.audit, control: control, logger: logger)
        self.pipeline = QueryPipeline(
            limiter: self.limiter, canon: self.canon, cache: self.cache, embedder: self.embedder,
            inference: self.inference, privacy: self.audit.privacy)
        self.jobs = QueryJobs(
            redis: redis, namespace: configuration.jobs.namespace, node: configuration.nodeID,
            lease: configuration.jobs.lease, maximumAttempts: configuration.jobs.maximumAttempts)
        self.jobWorker = QueryJobWorker(
            jobs: self.jobs, pipeline: self.pipeline, state: { store.current }, audit: self.audit,
            settings: configuration.jobs, logger: logger)
    }

    /// Started in this order and stopped in reverse: the clients first, so the last usage report
    /// and the last persistent-cache batch still have them.
    public var services: [any Service] {
        [self.control] + (self.enrollmentRelease.map { [$0 as any Service] } ?? []) + [
            EmbedderService(embedder: self.embedder), self.redis, self.limiter, self.watcher, self.canon,
            self.usage, self.auditShipper, self.persistentCache, self.sweeper, self.inference, self.jobWorker,
        ] + (self.semanticCache.map { [$0 as any Service] } ?? [])
    }
}

/// The node's routes and middleware, separate from the server so tests can drive it.
func buildRouter(node: DataPlaneNode) -> Router<DataPlaneRequestContext> {
    let router = Router(context: DataPlaneRequestContext.self)
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: ProblemMiddleware())
    router.add(middleware: MetricsMiddleware())
    HealthController(
        nodeID: node.nodeID, redis: node.redis, limiter: node.limiter, watcher: node.watcher, canon: node.canon,
        audit: node.audit, auditShipper: node.auditShipper
    )
    .addRoutes(to: router)
    func authenticated(
        _ path: String, scopes: KeyScopes, audit: AuditRecorder? = nil
    ) -> RouterGroup<AuthenticatedRequestContext> {
        router.group(RouterPath(path))
            .add(
                middleware: APIKeyAuthenticator(
                    verifier: node.verifier, store: node.watcher.store, usage: node.usage, requiredScopes: scopes,
                    audit: audit)
            )
            .group(context: AuthenticatedRequestContext.self)
    }
    KeyInfoController().addRoutes(to: authenticated("/api/v1", scopes: []))
    QueryController(pipeline: node.pipeline, inFlight: node.queriesInFlight, audit: node.audit, jobs: node.jobs)
        .addRoutes(to: authenticated("/api/v1/query", scopes: [.query], audit: node.audit))
    QueryStatusController(jobs: node.jobs).addRoutes(to: authenticated("/api/v1/queries", scopes: [.query]))
    CanonUpdateController(control: node.control).addRoutes(to: authenticated("/api/v1/canon", scopes: [.canonWrite]))
    StatsController(control: node.control, limiter: node.limiter).addRoutes(
        to: authenticated("/api/v1/stats", scopes: [.statsRead]))
    return router
}

/// Stops the embedder's worker threads when the service group stops.
struct EmbedderService: Service {
    let embedder: BatchingEmbedder

    func run() async throws {
        try? await gracefulShutdown()
        self.embedder.shutdown()
    }
}
