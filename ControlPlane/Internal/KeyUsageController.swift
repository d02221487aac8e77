import Hummingbird
import Shared

/// `POST /internal/v1/usage`: keys' last-used times, batched by a node (`KeyUsageReport`).
struct KeyUsageController: Sendable {
    let registry: NodeRegistry

    func addRoutes(to group: RouterGroup<NodeContext>) {
        group.post(RouterPath(InternalAPI.usage)) { request, context in
            let report = try await StrictJSON.decode(
                KeyUsageReport.self, from: request, context: context, allowedFields: ["node_id", "keys"])
            guard report.nodeId == context.node.nodeID else { throw Problem.nodeMismatch(report.nodeId, context.node) }
            guard report.keys.count <= KeyUsageReport.maximumKeys else {
                throw Problem.validation([FieldError("keys", "at most \(KeyUsageReport.maximumKeys) per report")])
            }
            try await self.registry.recordUsage(report.keys.map { ($0.id, $0.lastUsedAt) }, logger: context.logger)
            return Response(status: .noContent)
        }
    }
}
