import Common
import Configuration
import Hummingbird
import Logging
import ServiceLifecycle

/// Builds a data-plane node from configuration: the one composition root.
public func buildApplication(reader: ConfigReader) async throws -> some ApplicationProtocol {
    try await buildApplication(configuration: DataPlaneConfiguration(reader: reader))
}

public func buildApplication(configuration: DataPlaneConfiguration) async throws -> some ApplicationProtocol {
    var logger = Logger(label: "zaas-data")
    logger.logLevel = configuration.server.logLevel
    logger[metadataKey: "node"] = .string(configuration.nodeID)

    let redis = RedisClient(configuration: configuration.redis, logger: logger)
    let controlPlane = ControlPlaneMonitor(
        baseURL: configuration.controlPlaneURL,
        interval: configuration.controlPlaneCheckInterval,
        timeout: configuration.controlPlaneTimeout,
        logger: logger
    )
    let router = buildRouter(configuration: configuration, redis: redis, controlPlane: controlPlane)
    return Application(
        router: router,
        configuration: .init(
            address: .hostname(configuration.server.host, port: configuration.server.port),
            serverName: "zaas-data"
        ),
        services: [redis, controlPlane],
        logger: logger
    )
}

/// The node's routes and middleware, separate from the server so tests can drive it.
func buildRouter(
    configuration: DataPlaneConfiguration,
    redis: RedisClient,
    controlPlane: ControlPlaneMonitor
) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: ProblemMiddleware())
    router.add(middleware: MetricsMiddleware())
    router.addMetricsRoute()
    HealthController(nodeID: configuration.nodeID, redis: redis, controlPlane: controlPlane).addRoutes(to: router)
    return router
}
