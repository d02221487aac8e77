import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle
import Shared

/// The parts that take configuration from PostgreSQL to data-plane nodes, built once per process:
/// the routes use them, and the listener and compactor run as services beside the server.
public struct ConfigDistribution: Sendable {
    let source: ConfigSource
    let notifier: ConfigChangeNotifier
    let documents: ConfigDocumentCache
    let registry: NodeRegistry
    let credentials: NodeCredentialCache
    let settings: DistributionSettings
    let services: [any Service]

    public init(postgres: PostgresClient, settings: DistributionSettings, logger: Logger) {
        let source = ConfigSource(
            client: postgres, settings: settings.nodeSettings, validity: settings.documentValidity)
        let notifier = ConfigChangeNotifier()
        self.source = source
        self.notifier = notifier
        self.documents = ConfigDocumentCache(
            source: source, signingKey: settings.signingKey, refreshAfter: settings.documentValidity / 4)
        self.registry = NodeRegistry(client: postgres, staleAfter: settings.nodeStaleAfter)
        self.credentials = NodeCredentialCache(
            store: NodeCredentialStore(
                database: ScopedDatabase(client: postgres), maximumActive: settings.maximumNodeCredentials))
        self.settings = settings
        self.services = [
            ConfigChangeListener(
                client: postgres, source: source, notifier: notifier, pollInterval: .seconds(5), logger: logger),
            ChangeLogCompactor(client: postgres, retention: settings.changeLogRetention, logger: logger),
            FleetMetrics(registry: self.registry, source: source, logger: logger),
            EnrolledNodeRetirer(
                credentials: self.credentials, retireAfter: settings.enrolledRetireAfter, logger: logger),
        ]
    }

    /// The watch route of the internal API.
    var watchController: ConfigWatchController {
        ConfigWatchController(
            source: self.source, documents: self.documents, notifier: self.notifier, registry: self.registry,
            maximumWait: self.settings.maximumWait)
    }

    /// `/admin/v1/nodes`: the registry, node credentials, the configuration version.
    var nodeController: NodeController {
        NodeController(registry: self.registry, credentials: self.credentials, source: self.source)
    }
}
