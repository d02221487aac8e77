import Foundation
import Logging
import Metrics
import ServiceLifecycle

/// The control plane's view of its nodes as gauges, for the alerts on stale nodes and lagging
/// configuration (infra/prometheus/rules): every `interval`, each node holding an active credential
/// gets `zaas_node_last_seen_seconds{node}` (since its last watch request) and
/// `zaas_node_config_lag_versions{node}` (versions behind the control plane's). A node whose
/// credentials are all revoked is gone on purpose: its gauges are removed.
struct FleetMetrics: Service {
    let registry: NodeRegistry
    let source: ConfigSource
    let interval: Duration
    let logger: Logger

    init(registry: NodeRegistry, source: ConfigSource, interval: Duration = .seconds(15), logger: Logger) {
        self.registry = registry
        self.source = source
        self.interval = interval
        self.logger = logger
    }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var reported: Set<String> = []
            while !Task.isCancelled {
                reported = await self.record(replacing: reported)
                try await Task.sleep(for: self.interval)
            }
        }
    }

    /// One round; the nodes it reported. `previous` are those of the round before, whose gauges go
    /// when a node is no longer listed.
    func record(replacing previous: Set<String>) async -> Set<String> {
        do {
            let head = try await self.source.head(logger: self.logger)
            let nodes = try await self.registry.list(logger: self.logger).filter { !$0.isRevoked }
            for node in nodes {
                Gauge(label: "zaas_node_last_seen_seconds", dimensions: [("node", node.id)])
                    .record(max(0, node.lastSeenAt.distance(to: .now)))
                Gauge(label: "zaas_node_config_lag_versions", dimensions: [("node", node.id)])
                    .record(max(0, head.version - node.configVersion))
            }
            let current = Set(nodes.map(\.id))
            for node in previous.subtracting(current) {
                Gauge(label: "zaas_node_last_seen_seconds", dimensions: [("node", node)]).destroy()
                Gauge(label: "zaas_node_config_lag_versions", dimensions: [("node", node)]).destroy()
            }
            return current
        } catch {
            // The database is away: the gauges keep their last values, and the database alert says why.
            self.logger.debug("node gauges not refreshed", metadata: ["error": "\(error)"])
            return previous
        }
    }
}
