import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Shared

/// `POST /api/v1/canon/update` and `GET /api/v1/canon/versions/{id}`: Enterprise tenants change
/// their overlay through the public API. The node checks the key (`canon:write`) and the tenant's
/// policy, then hands the request to the control plane, which owns canon versions: it applies the
/// change to the published overlay as a new version, builds it and publishes it (unless
/// `"publish": false`). The answer (202) is the version; poll its `Location` until `published`.
struct CanonUpdateController: Sendable {
    static let maximumBody = 16 << 20

    let control: ControlPlaneClient

    func addRoutes(to group: RouterGroup<AuthenticatedRequestContext>) {
        group.post("/update") { request, context in
            try Self.requireUpdates(context)
            let body = try await request.collectBody(upTo: Self.maximumBody, what: "update")
            if let type = request.headers[.contentType], !type.lowercased().hasPrefix("application/json") {
                throw Problem.unsupportedMediaType("Send the update as application/json.")
            }
            return try await self.forward(.POST, InternalAPI.canonUpdate, body: body, context: context)
        }
        group.get("/versions/:id") { _, context in
            try Self.requireUpdates(context)
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
                throw Problem.notFound("No such canon version.")
            }
            return try await self.forward(.GET, InternalAPI.canonVersion(id), context: context)
        }
    }

    static func requireUpdates(_ context: AuthenticatedRequestContext) throws {
        guard context.policy.canonUpdatesAllowed else { throw Problem.canonUpdatesNotAllowed }
    }

    /// The control plane's answer, passed on as it is (a 202 gains the public `Location` to poll).
    func forward(
        _ method: NIOHTTP1.HTTPMethod, _ path: String, body: ByteBuffer? = nil, context: AuthenticatedRequestContext
    ) async throws -> Response {
        let reply: ControlPlaneClient.Reply
        do {
            reply = try await self.control.canon(
                method, path, tenant: context.tenant.id, key: context.key.id, body: body)
        } catch {
            context.logger.warning("canon update could not reach the control plane", metadata: ["error": "\(error)"])
            throw Problem(
                slug: "control-plane-unavailable", title: "Service Unavailable", status: .serviceUnavailable,
                detail: "Canon updates need the control plane, which this node cannot reach now. Queries still work.",
                headers: [.retryAfter: "5"])
        }
        let bytes = reply.body
        var headers: HTTPFields = [.cacheControl: "no-store"]
        headers[.contentType] = reply.headers.first(name: "Content-Type") ?? "application/json"
        if reply.status == 202,
            let object = try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any],
            let id = object["id"] as? String
        {
            headers[.location] = "/api/v1/canon/versions/\(id)"
        }
        return Response(
            status: HTTPResponse.Status(code: Int(reply.status)), headers: headers,
            body: .init(byteBuffer: bytes))
    }
}
