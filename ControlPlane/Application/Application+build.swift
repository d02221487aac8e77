import Common
import Configuration
import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle

/// Builds the control plane from configuration: the one composition root.
public func buildApplication(reader: ConfigReader) async throws -> some ApplicationProtocol {
    let configuration = try ControlPlaneConfiguration(reader: reader)
    return try await buildApplication(configuration: configuration)
}

public func buildApplication(configuration: ControlPlaneConfiguration) async throws -> some ApplicationProtocol {
    var logger = Logger(label: "zaas-control")
    logger.logLevel = configuration.server.logLevel

    let postgres = PostgresClient(configuration: configuration.database.applicationClient, backgroundLogger: logger)
    let router = buildRouter(postgres: postgres, configuration: configuration)

    var app = Application(
        router: router,
        configuration: .init(
            address: .hostname(configuration.server.host, port: configuration.server.port),
            serverName: "zaas-control"
        ),
        services: [postgres],
        logger: logger
    )
    let startupLogger = logger
    app.beforeServerStarts {
        if configuration.migrateOnStart {
            try await runMigrations(configuration: configuration.database, logger: startupLogger)
        }
        try await ApplicationRoleCheck.verify(client: postgres, logger: startupLogger)
    }
    return app
}

/// The control plane's routes and middleware, separate from the server so tests can drive it.
func buildRouter(postgres: PostgresClient, configuration: ControlPlaneConfiguration) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: ProblemMiddleware())
    router.add(middleware: MetricsMiddleware())
    router.addMetricsRoute()
    HealthController(postgres: postgres, timeout: .seconds(2)).addRoutes(to: router)
    return router
}

/// Connects as the owner role just long enough to migrate, then lets the connection go.
public func runMigrations(configuration: DatabaseConfiguration, logger: Logger) async throws {
    let owner = PostgresClient(configuration: try configuration.ownerClient(), backgroundLogger: logger)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await owner.run() }
        defer { group.cancelAll() }
        let report = try await Migrator(applicationRole: configuration.user, logger: logger).migrate(client: owner)
        logger.info(
            "schema is current",
            metadata: ["schema_version": "\(report.currentVersion)", "applied_now": "\(report.applied)"]
        )
    }
}
