import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import ServiceLifecycle
import Shared

/// `GET /internal/v1/config?since=N&wait=S&node_id=…&address=…&software_version=…`: the signed
/// update from version N (absent: a full snapshot). Answers at once when something is newer,
/// otherwise holds the request until the change log moves or `wait` seconds pass (then 204).
/// Every call also registers the node with the version it holds; every answer says how many
/// nodes are live (`ZaaS-Live-Nodes`).
struct ConfigWatchController: Sendable {
    let source: ConfigSource
    let documents: ConfigDocumentCache
    let notifier: ConfigChangeNotifier
    let registry: NodeRegistry
    let maximumWait: Duration
    let documentBytes = Counter(label: "zaas_config_document_bytes_total")

    func addRoutes(to group: RouterGroup<NodeContext>) {
        group.get(RouterPath(InternalAPI.config)) { request, context in
            try await self.watch(request, node: context.node, logger: context.logger)
        }
    }

    struct WatchRequest {
        let since: Int64?
        let wait: Duration
        let node: NodeRegistry.Report

        /// `node_id` is the credential's node id (absent: that one; another: 403).
        init(_ request: Request, node: NodeIdentity, maximumWait: Duration) throws {
            let query = request.uri.queryParameters
            var errors: [FieldError] = []
            var since: Int64?
            if let text = query["since"] {
                since = Int64(String(text))
                if since == nil || since! < 0 { errors.append(FieldError("since", "must be a non-negative integer")) }
            }
            var wait = maximumWait
            if let text = query["wait"] {
                if let seconds = Int(String(text)), seconds >= 0, Duration.seconds(seconds) <= maximumWait {
                    wait = .seconds(seconds)
                } else {
                    errors.append(
                        FieldError("wait", "must be whole seconds from 0 to \(maximumWait.components.seconds)"))
                }
            }
            let nodeID = query["node_id"].map(String.init) ?? node.nodeID
            if !NodeRegistry.isValidNodeID(nodeID) {
                errors.append(FieldError("node_id", "1 to 200 characters of letters, digits and . _ : -"))
            } else if nodeID != node.nodeID {
                throw Problem.nodeMismatch(nodeID, node)
            }
            let address = query["address"].map(String.init) ?? ""
            if let error = FieldError("address", text: address, length: 0...500) { errors.append(error) }
            let software = query["software_version"].map(String.init) ?? ""
            if let error = FieldError("software_version", text: software, length: 0...100) { errors.append(error) }
            guard errors.isEmpty else { throw Problem.validation(errors) }
            self.since = since
            self.wait = wait
            self.node = .init(id: nodeID, address: address, softwareVersion: software, configVersion: since ?? 0)
        }
    }

    func watch(_ request: Request, node: NodeIdentity, logger: Logger) async throws -> Response {
        let watch = try WatchRequest(request, node: node, maximumWait: self.maximumWait)
        let liveNodes = try await self.registry.register(watch.node, logger: logger)
        var head = try await self.source.head(logger: logger)
        if let since = watch.since, since == head.version {
            // Shutdown ends a held request at once (as "unchanged"), so it never delays a stop.
            let notifier = self.notifier
            let changed = try? await cancelWhenGracefulShutdown {
                await notifier.waitForChange(after: since, timeout: watch.wait)
            }
            guard changed == true else { return Self.unchanged(version: since, liveNodes: liveNodes) }
            head = try await self.source.head(logger: logger)
        }
        guard let document = try await self.documents.document(since: watch.since, head: head.version, logger: logger)
        else {
            return Self.unchanged(version: head.version, liveNodes: liveNodes)
        }
        self.documentBytes.increment(by: document.bytes.count)
        return Response(
            status: .ok,
            headers: [
                .contentType: SignedConfigDocument.mediaType,
                .cacheControl: "no-store",
                .zaasConfigVersion: String(document.version),
                .zaasLiveNodes: String(liveNodes),
            ],
            body: .init(byteBuffer: ByteBuffer(bytes: document.bytes))
        )
    }

    static func unchanged(version: Int64, liveNodes: Int) -> Response {
        Response(
            status: .noContent,
            headers: [
                .cacheControl: "no-store", .zaasConfigVersion: String(version), .zaasLiveNodes: String(liveNodes),
            ])
    }
}
