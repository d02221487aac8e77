import Foundation
import Hummingbird
import Logging
import Shared

/// `GET /admin/v1/nodes` (operators): every node, the version it holds, how far it lags and
/// whether it has been seen lately. `POST /admin/v1/nodes/config-version` (operators) moves the
/// configuration version past a number: after a database restore, nodes hold a newer version
/// than the control plane and refuse its older snapshots as replays until it is moved past theirs.
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
        router.group("/admin/v1/nodes/config-version", context: OperatorContext.self).post { request, context in
            struct Advance: Decodable {
                let past: Int64?
            }
            let body = try await StrictJSON.decode(
                Advance.self, from: request, context: context, allowedFields: ["past"], maximumBytes: 1024)
            let limit = Int64.max / 2
            if let past = body.past, !(0..<limit).contains(past) {
                throw Problem.validation([FieldError("past", "must be from 0 to \(limit - 1)")])
            }
            // Past what every registered node holds, unless the operator names a larger number.
            let nodes = try await self.registry.list(logger: context.logger)
            let past = max(body.past ?? 0, nodes.map(\.configVersion).max() ?? 0)
            let version = try await self.source.advance(past: past, logger: context.logger)
            context.logger.notice(
                "configuration version advanced",
                metadata: ["version": "\(version)", "operator": "\(context.operatorID)"])
            struct Advanced: Encodable {
                let configVersion: Int64
            }
            return try StrictJSON.response(Advanced(configVersion: version))
        }
    }
}
