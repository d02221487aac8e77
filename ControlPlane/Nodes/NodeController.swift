import Foundation
import Hummingbird
import Logging
import Shared

/// `GET /admin/v1/nodes` (operators): every node, the version it holds, how far it lags and
/// whether it has been seen lately (`revoked`: it holds no active credential any more).
/// `/admin/v1/nodes/credentials` (operators): each node's own credential for the internal API,
/// issued (`POST`, the token shown once), listed (`GET`) and revoked (`DELETE …/{id}`). `POST /admin/v1/nodes/config-version` (operators) moves the
/// configuration version past a number: after a database restore, nodes hold a newer version
/// than the control plane and refuse its older snapshots as replays until it is moved past theirs.
struct NodeController: Sendable {
    let registry: NodeRegistry
    let credentials: NodeCredentialCache
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
                    status: node.isRevoked ? "revoked" : node.isStale ? "stale" : "online",
                    firstSeenAt: node.firstSeenAt,
                    lastSeenAt: node.lastSeenAt)
            }
            return try StrictJSON.response(NodeList(configVersion: head.version, items: items))
        }
        self.addCredentialRoutes(to: router.group("/admin/v1/nodes/credentials", context: OperatorContext.self))
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

    func addCredentialRoutes(to group: RouterGroup<OperatorContext>) {
        let store = self.credentials.store
        group.post { request, context in
            struct Issue: Decodable {
                let nodeId: String
                let replace: Bool?
            }
            let body = try await StrictJSON.decode(
                Issue.self, from: request, context: context, allowedFields: ["node_id", "replace"], maximumBytes: 1024)
            guard NodeRegistry.isValidNodeID(body.nodeId) else {
                throw Problem.validation([FieldError("node_id", "1 to 200 characters of letters, digits and . _ : -")])
            }
            let (credential, token) = try await store.issue(
                nodeID: body.nodeId, operatorID: context.operatorID, replace: body.replace ?? false,
                logger: context.logger)
            context.logger.notice(
                "node credential issued",
                metadata: [
                    "credential": "\(credential.id)", "node": "\(credential.nodeId)",
                    "operator": "\(context.operatorID)",
                ])
            struct Issued: Encodable {
                let credential: NodeCredentialStore.Credential
                /// Shown once: only its digest is kept.
                let token: String
            }
            return try StrictJSON.response(Issued(credential: credential, token: token.text), status: .created)
        }
        group.get { _, context in
            struct Listed: Encodable {
                let items: [NodeCredentialStore.Credential]
            }
            return try StrictJSON.response(Listed(items: try await store.list(logger: context.logger)))
        }
        group.delete(":id") { _, context in
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)),
                let credential = try await store.revoke(id: id, logger: context.logger)
            else { throw Problem.notFound("No such node credential.") }
            self.credentials.forget(credentialID: id)
            context.logger.notice(
                "node credential revoked",
                metadata: ["credential": "\(id)", "node": "\(credential.nodeId)", "operator": "\(context.operatorID)"])
            return try StrictJSON.response(credential)
        }
    }
}
