import AsyncHTTPClient
import Common
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// `POST /api/v1/canon/update` and `GET /api/v1/canon/versions/{id}`: Enterprise tenants change
/// their overlay through the public API. The node checks the key (`canon:write`) and the tenant's
/// policy, then hands the request to the control plane, which owns canon versions: it applies the
/// change to the published overlay as a new version, builds it and publishes it (unless
/// `"publish": false`). The answer (202) is the version; poll its `Location` until `published`.
struct CanonUpdateController: Sendable {
    static let maximumBody = 16 << 20

    let controlPlaneURL: String
    let nodeToken: String
    let timeout: Duration
    let httpClient: HTTPClient

    func addRoutes(to group: RouterGroup<AuthenticatedRequestContext>) {
        group.post("/update") { request, context in
            try Self.requireUpdates(context)
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: Self.maximumBody)
            } catch {
                throw Problem.payloadTooLarge("The update is larger than \(Self.maximumBody) bytes.")
            }
            if let type = request.headers[.contentType], !type.lowercased().hasPrefix("application/json") {
                throw Problem.unsupportedMediaType("Send the update as application/json.")
            }
            return try await self.forward(.POST, path: "/internal/v1/canon/update", body: body, context: context)
        }
        group.get("/versions/:id") { _, context in
            try Self.requireUpdates(context)
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
                throw Problem.notFound("No such canon version.")
            }
            return try await self.forward(
                .GET, path: "/internal/v1/canon/versions/\(id.uuidString.lowercased())", body: nil, context: context)
        }
    }

    static func requireUpdates(_ context: AuthenticatedRequestContext) throws {
        guard context.policy.canonUpdatesAllowed else { throw Problem.canonUpdatesNotAllowed }
    }

    func forward(
        _ method: NIOHTTP1.HTTPMethod, path: String, body: ByteBuffer?, context: AuthenticatedRequestContext
    ) async throws -> Response {
        let tenant = context.tenant.id.uuidString.lowercased()
        let key = context.key.id.uuidString.lowercased()
        var request = HTTPClientRequest(url: self.controlPlaneURL + path + "?tenant_id=\(tenant)&key_id=\(key)")
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(self.nodeToken)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(body)
        }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await self.httpClient.execute(request, timeout: .init(self.timeout + .seconds(30)))
            bytes = try await response.body.collect(upTo: 4 << 20)
        } catch {
            context.logger.warning("canon update could not reach the control plane", metadata: ["error": "\(error)"])
            throw Problem(
                slug: "control-plane-unavailable", title: "Service Unavailable", status: .serviceUnavailable,
                detail: "Canon updates need the control plane, which this node cannot reach now. Queries still work.",
                headers: [.retryAfter: "5"])
        }
        var headers: HTTPFields = [.cacheControl: "no-store"]
        headers[.contentType] = response.headers.first(name: "Content-Type") ?? "application/json"
        if response.status == .accepted,
            let object = try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any],
            let id = object["id"] as? String
        {
            headers[.location] = "/api/v1/canon/versions/\(id)"
        }
        return Response(
            status: HTTPResponse.Status(code: Int(response.status.code)), headers: headers,
            body: .init(byteBuffer: bytes))
    }
}
