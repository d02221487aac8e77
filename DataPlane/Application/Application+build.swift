import AsyncHTTPClient
import Common
import Configuration
import Embeddings
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// Builds a data-plane node from configuration: the one composition root.
public func buildApplication(reader: ConfigReader) async throws -> some ApplicationProtocol {
    try await buildApplication(configuration: DataPlaneConfiguration(reader: reader))
}

public func buildApplication(configuration: DataPlaneConfiguration) async throws -> some ApplicationProtocol {
    // Before any part of the node makes a metric.
    PrometheusMetrics.bootstrap()
    var logger = Logger(label: "zaas-data")
    logger.logLevel = configuration.server.logLevel
    logger[metadataKey: "node"] = .string(configuration.nodeID)

    let redis = RedisClient(configuration: configuration.redis, logger: logger)
    // Its own client: a refused connection fails at once (no retrying until the long poll's
    // deadline), so the node notices a control-plane outage in milliseconds.
    var clientConfiguration = HTTPClient.Configuration()
    clientConfiguration.connectionPool.retryConnectionEstablishment = false
    clientConfiguration.timeout.connect = .init(configuration.controlPlaneTimeout)
    let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
    let node = try DataPlaneNode(configuration: configuration, httpClient: httpClient, logger: logger)
    // Serve from the disk copy at once; the watcher catches up from there.
    node.watcher.loadFromDisk()
    let limiter = RateLimiter(
        redis: redis, settings: configuration.rateLimit, liveNodes: { [watcher = node.watcher] in watcher.liveNodes },
        logger: logger)
    let watcher = node.watcher
    let persistent = PersistentAnswerCache(
        settings: .init(
            controlPlaneURL: configuration.controlPlaneURL, nodeToken: configuration.nodeToken,
            timeout: configuration.controlPlaneTimeout),
        httpClient: httpClient, isReachable: { watcher.reachability == .up }, logger: logger)
    let semantic = configuration.semanticThreshold.map { SemanticCache(redis: redis, threshold: $0, logger: logger) }
    let cache = AnswerCache(redis: redis, persistent: persistent, semantic: semantic, logger: logger)
    let router = buildRouter(configuration: configuration, redis: redis, limiter: limiter, cache: cache, node: node)
    return Application(
        router: router,
        configuration: .init(
            address: .hostname(configuration.server.host, port: configuration.server.port),
            serverName: "zaas-data"
        ),
        // Stopped in reverse order: the usage recorder's last report still has its HTTP client.
        services: [
            HTTPClientService(client: httpClient), EmbedderService(embedder: node.embedder), redis, limiter,
            node.watcher, node.canon, node.usage, persistent,
            CacheSweeper(redis: redis, library: node.canon, store: node.watcher.store, logger: logger),
        ] + (semantic.map { [$0 as any Service] } ?? []),
        logger: logger
    )
}

/// The node's configuration-facing parts: the watcher that keeps config current, and the
/// verifier and usage recorder that use it on the request path.
public struct DataPlaneNode: Sendable {
    public let watcher: ConfigWatcher
    public let usage: KeyUsageRecorder
    public let verifier: KeyVerifier
    /// Sentence embeddings for retrieval and the semantic cache, loaded once at start.
    public let embedder: BatchingEmbedder
    /// The canon versions the configuration names, loaded.
    public let canon: CanonLibrary
    let httpClient: HTTPClient

    public init(configuration: DataPlaneConfiguration, httpClient: HTTPClient = .shared, logger: Logger) throws {
        let store = ConfigStore()
        self.httpClient = httpClient
        self.canon = CanonLibrary(
            settings: .init(
                controlPlaneURL: configuration.controlPlaneURL, nodeToken: configuration.nodeToken,
                directory: configuration.stateDirectory + "/artifacts", timeout: configuration.controlPlaneTimeout),
            configuration: store, httpClient: httpClient, logger: logger)
        self.watcher = ConfigWatcher(
            store: store,
            files: SnapshotFiles(directory: configuration.stateDirectory),
            settings: .init(
                controlPlaneURL: configuration.controlPlaneURL,
                nodeToken: configuration.nodeToken,
                verificationKey: configuration.verificationKey,
                nodeID: configuration.nodeID,
                advertisedAddress: configuration.advertisedAddress,
                wait: configuration.watchWait,
                connectTimeout: configuration.controlPlaneTimeout,
                maximumBackoff: configuration.maximumBackoff
            ),
            httpClient: httpClient,
            logger: logger
        )
        let url = configuration.controlPlaneURL + "/internal/v1/usage"
        let token = configuration.nodeToken
        let nodeID = configuration.nodeID
        let timeout = configuration.controlPlaneTimeout
        self.usage = KeyUsageRecorder(
            interval: {
                // Until the first configuration arrives no key can be used, so there is nothing to report.
                .milliseconds(Int(store.current?.settings.usageReportIntervalMilliseconds ?? 1000))
            },
            logger: logger
        ) { entries in
            try await Self.reportUsage(
                entries, url: url, token: token, nodeID: nodeID, timeout: timeout, httpClient: httpClient)
        }
        self.verifier = KeyVerifier(digester: try APIKeyDigester(pepper: configuration.keyPepper))
        let embeddings = configuration.embeddings
        do {
            self.embedder = BatchingEmbedder(
                model: try SentenceModel(directory: embeddings.modelDirectory), threads: embeddings.threads,
                batchWindow: embeddings.batchWindow, maximumBatch: embeddings.maximumBatch)
        } catch {
            throw ConfigurationError.invalid(
                key: "embeddings.model_dir", value: embeddings.modelDirectory,
                expected:
                    "the all-MiniLM-L6-v2 folder (fetch it with `bash infra/fetch-model.sh`, as make run does): \(error)"
            )
        }
    }

    static func reportUsage(
        _ entries: [(UUID, Date)], url: String, token: String, nodeID: String, timeout: Duration,
        httpClient: HTTPClient
    ) async throws {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        let body: [String: Any] = [
            "node_id": nodeID,
            "keys": entries.map { ["id": $0.0.uuidString.lowercased(), "last_used_at": formatter.string(from: $0.1)] },
        ]
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        let response = try await httpClient.execute(request, timeout: .init(timeout + .seconds(5)))
        _ = try? await response.body.collect(upTo: 64 * 1024)
        guard response.status == .noContent else { throw UsageReportError(status: response.status.code) }
    }
}

struct UsageReportError: Error, CustomStringConvertible {
    let status: UInt
    var description: String { "the control plane answered \(status) to a usage report" }
}

/// The node's routes and middleware, separate from the server so tests can drive it.
func buildRouter(
    configuration: DataPlaneConfiguration,
    redis: RedisClient,
    limiter: RateLimiter,
    cache: AnswerCache,
    node: DataPlaneNode
) -> Router<DataPlaneRequestContext> {
    let router = Router(context: DataPlaneRequestContext.self)
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: ProblemMiddleware())
    router.add(middleware: MetricsMiddleware())
    router.addMetricsRoute()
    HealthController(
        nodeID: configuration.nodeID, redis: redis, limiter: limiter, watcher: node.watcher, canon: node.canon
    )
    .addRoutes(to: router)
    let api = router.group("/api/v1")
        .add(
            middleware: APIKeyAuthenticator(
                verifier: node.verifier, store: node.watcher.store, usage: node.usage, requiredScopes: [])
        )
        .group(context: AuthenticatedRequestContext.self)
    KeyInfoController().addRoutes(to: api)
    let query = router.group("/api/v1/query")
        .add(
            middleware: APIKeyAuthenticator(
                verifier: node.verifier, store: node.watcher.store, usage: node.usage, requiredScopes: [.query])
        )
        .group(context: AuthenticatedRequestContext.self)
    QueryController(
        embedder: node.embedder, library: node.canon, store: node.watcher.store, limiter: limiter, cache: cache
    ).addRoutes(to: query)
    let canon = router.group("/api/v1/canon")
        .add(
            middleware: APIKeyAuthenticator(
                verifier: node.verifier, store: node.watcher.store, usage: node.usage, requiredScopes: [.canonWrite])
        )
        .group(context: AuthenticatedRequestContext.self)
    CanonUpdateController(
        controlPlaneURL: configuration.controlPlaneURL, nodeToken: configuration.nodeToken,
        timeout: configuration.controlPlaneTimeout, httpClient: node.httpClient
    ).addRoutes(to: canon)
    return router
}

/// Shuts an HTTP client down when the service group stops.
struct HTTPClientService: Service {
    let client: HTTPClient

    func run() async throws {
        try? await gracefulShutdown()
        try await self.client.shutdown()
    }
}

/// Stops the embedder's worker threads when the service group stops.
struct EmbedderService: Service {
    let embedder: BatchingEmbedder

    func run() async throws {
        try? await gracefulShutdown()
        self.embedder.shutdown()
    }
}
