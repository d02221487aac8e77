import Foundation
import Hummingbird
import Shared

/// `GET /admin/v1/nodes` (operators): every node, the version it holds, how far it lags and
/// whether it has been seen lately.
struct NodeController: Sendable {
    let registry: NodeRegistry
    let source: ConfigSource

    struct NodeBody: Encodable {
        let id: String
        let address: String
        let softwareVersion: String
        let configVersion: Int64
        let lag: Int64
        let status: String
        let firstSeenAt: Date
        let lastSeenAt: Date
    }

    struct NodeList: Encodable {
        let configVersion: Int64
        let items: [NodeBody]
    }

    func addRoutes(to router: Router<AdminRequestContext>) {
        router.group("/admin/v1/nodes", context: OperatorContext.self).get { _, context in
            let head = try await self.source.head(logger: context.logger)
            let items = try await self.registry.list(logger: context.logger).map { node in
                NodeBody(
                    id: node.id, address: node.address, softwareVersion: node.softwareVersion,
                    configVersion: node.configVersion, lag: max(0, head.version - node.configVersion),
                    status: node.isStale ? "stale" : "online", firstSeenAt: node.firstSeenAt,
                    lastSeenAt: node.lastSeenAt)
            }
            return try StrictJSON.response(NodeList(configVersion: head.version, items: items))
        }
    }
}
