import Configuration
import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle
import Shared

/// Builds the control plane from configuration: the one composition root.
public func buildApplication(reader: ConfigReader) async throws -> some ApplicationProtocol {
    let configuration = try ControlPlaneConfiguration(reader: reader)
    return try await buildApplication(configuration: configuration)
}

public func buildApplication(configuration: ControlPlaneConfiguration) async throws -> some ApplicationProtocol {
    // Once per process, before any part of the control plane makes a metric.
    PrometheusMetrics.bootstrap()
    var logger = Logger(label: "zaas-control")
    logger.logLevel = configuration.server.logLevel

    let postgres = PostgresClient(configuration: configuration.database.applicationClient, backgroundLogger: logger)
    let auth = try await makeAuthService(postgres: postgres, configuration: configuration)
    let distribution = ConfigDistribution(postgres: postgres, settings: configuration.distribution, logger: logger)
    let builder = CanonBuildWorker(
        postgres: postgres, modelDirectory: configuration.canon.modelDirectory,
        threads: configuration.canon.buildThreads, logger: logger)
    let probe = DatabaseProbe(configuration: configuration.database.probeClient, logger: logger)
    let router = try buildRouter(
        postgres: postgres, auth: auth, distribution: distribution, builder: builder, configuration: configuration,
        probe: probe)

    var app = Application(
        router: router,
        server: configuration.server.serverBuilder,
        configuration: configuration.server.applicationConfiguration(serverName: "zaas-control"),
        services: [postgres as any Service, probe] + distribution.services + [
            builder,
            AnswerCacheSweeper(client: postgres, interval: configuration.cacheSweepInterval, logger: logger),
            AuditMaintenance(
                store: AuditStore(client: postgres), settings: configuration.auditMaintenance, logger: logger),
            BillingCloser(
                database: ScopedDatabase(client: postgres), settings: configuration.billingCloser, logger: logger),
            AuditExportWorker(
                database: ScopedDatabase(client: postgres), signingKey: configuration.distribution.signingKey,
                pollInterval: .seconds(2), logger: logger),
            PrometheusMetrics.server(
                settings: configuration.server, serverName: "zaas-control-metrics", logger: logger),
            ProcessMetrics(),
        ],
        logger: logger
    )
    let startupLogger = logger
    app.beforeServerStarts {
        if configuration.migrateOnStart {
            try await runMigrations(configuration: configuration.database, logger: startupLogger)
        }
        try await ApplicationRoleCheck.verify(client: postgres, logger: startupLogger)
        if let bootstrap = configuration.bootstrapOperator {
            try await auth.bootstrapOperator(
                email: bootstrap.email, password: bootstrap.password, logger: startupLogger)
        }
    }
    return app
}

func makeAuthService(postgres: PostgresClient, configuration: ControlPlaneConfiguration) async throws -> AuthService {
    let hasher = GatedHasher(hasher: Argon2id(), gate: HashingGate())
    // A real hash with the same parameters, so an unknown email costs a full verification too.
    let dummyHash = try await hasher.hash(Hex.encode((0..<16).map { _ in UInt8.random(in: 0...255) }))
    return AuthService(
        database: ScopedDatabase(client: postgres),
        hasher: hasher,
        throttle: SignInThrottle(),
        dummyHash: dummyHash,
        sessionLifetime: configuration.sessionLifetime
    )
}

/// The control plane's routes and middleware, separate from the server so tests can drive it.
func buildRouter(
    postgres: PostgresClient,
    auth: AuthService,
    distribution: ConfigDistribution,
    builder: CanonBuildWorker,
    configuration: ControlPlaneConfiguration,
    probe: DatabaseProbe? = nil
) throws -> Router<AdminRequestContext> {
    let database = ScopedDatabase(client: postgres)
    let canonStore = CanonStore(database: database, limits: configuration.canon.limits)
    let uploads = UploadGate(maximumPerTenant: configuration.canon.limits.maximumConcurrentUploads)
    let router = Router(context: AdminRequestContext.self)
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: ProblemMiddleware(translate: Problem.databaseUnavailability))
    router.add(middleware: MetricsMiddleware())
    HealthController(postgres: postgres, timeout: .seconds(2), probe: probe).addRoutes(to: router)
    // Everything after health needs the database: 503 at once while it is out of reach.
    if let probe { router.add(middleware: DatabaseAvailabilityMiddleware(probe: probe)) }
    // Before the session authenticator: nodes authenticate with their own credential.
    InternalRoutes(
        credentials: distribution.credentials,
        distribution: distribution,
        canon: InternalCanonController(
            store: canonStore, builder: builder, settings: configuration.canon, uploads: uploads),
        cache: AnswerCacheController(store: AnswerCacheStore(client: postgres)),
        audit: AuditIngestController(store: AuditStore(client: postgres)),
        usage: UsageController(database: database)
    ).addRoutes(to: router)
    router.add(middleware: SessionAuthenticator(auth: auth))
    SessionController(auth: auth, trustedProxies: configuration.server.trustedProxies).addRoutes(to: router)
    TenantController(store: TenantStore(database: database)).addRoutes(to: router)
    AdminController(store: AdminStore(database: database), hasher: auth.hasher).addRoutes(to: router)
    KeyController(
        store: KeyStore(database: database, digester: try APIKeyDigester(pepper: configuration.keyPepper))
    ).addRoutes(to: router)
    distribution.nodeController.addRoutes(to: router)
    ModelController(store: ModelCatalogStore(database: database)).addRoutes(to: router)
    AuditController(database: database).addRoutes(to: router)
    UsageController(database: database).addRoutes(to: router)
    BillingController(database: database).addRoutes(to: router)
    CanonController(store: canonStore, builder: builder, settings: configuration.canon, uploads: uploads)
        .addRoutes(to: router)
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
