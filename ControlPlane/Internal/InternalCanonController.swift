import Canon
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import Shared

/// What nodes use: artifacts by hash, and tenants' canon updates made through the public API.
///
/// - `GET /internal/v1/canon/artifacts/{sha256}`: the artifact bytes (`ZaaS-Artifact-SHA256` echoes
///   the hash; the node verifies it before using anything).
/// - `POST /internal/v1/canon/update?tenant_id=…&key_id=…`: the public request body (`upsert`,
///   `delete`, `publish`) applied to the tenant's published overlay, as a new version.
/// - `GET /internal/v1/canon/versions/{id}?tenant_id=…`: that version, for polling.
struct InternalCanonController: Sendable {
    let store: CanonStore
    let builder: CanonBuildWorker
    let settings: CanonSettings
    let uploads: UploadGate

    struct UpdateRequest: Decodable {
        let publish: Bool?
        let delete: [String]?
    }

    func addRoutes(to group: RouterGroup<NodeContext>) {
        group.get(RouterPath(InternalAPI.canonArtifacts + "/:sha256")) { request, context in
            guard let sha256 = context.parameters.get("sha256"), Hex.isLowercase(sha256, count: 64)
            else { throw Problem.notFound("No such artifact.") }
            guard let bytes = try await self.store.artifact(sha256: sha256, logger: context.logger) else {
                throw Problem.notFound("No such artifact.")
            }
            return Response(
                status: .ok,
                headers: [
                    .contentType: "application/octet-stream", .zaasArtifactSHA256: sha256,
                    .cacheControl: "private, max-age=31536000, immutable",
                ],
                body: .init(byteBuffer: bytes))
        }
        group.post(RouterPath(InternalAPI.canonUpdate)) { request, context in
            let (tenantID, keyID) = try await self.caller(request, logger: context.logger)
            return try await self.uploads.withPlace(tenant: tenantID) {
                try await self.update(request, tenantID: tenantID, keyID: keyID, logger: context.logger)
            }
        }
        group.get(RouterPath(InternalAPI.canonVersions + "/:id")) { request, context in
            let (tenantID, keyID) = try await self.caller(request, logger: context.logger)
            return try StrictJSON.response(
                try await self.store.version(
                    owner: .key(tenant: tenantID, key: keyID), id: try CanonController.id(context.parameters),
                    logger: context.logger))
        }
    }

    /// The tenant and key a node acts for. The node has authenticated the key, but a node is not
    /// trusted to have done so: the key must be the tenant's, active and hold `canon:write`, the
    /// tenant active and its tier or policy must allow canon updates, as of now in the database.
    func caller(_ request: Request, logger: Logger) async throws -> (UUID, UUID) {
        let query = request.uri.queryParameters
        guard let tenant = query["tenant_id"].flatMap({ UUID(uuidString: String($0)) }),
            let key = query["key_id"].flatMap({ UUID(uuidString: String($0)) })
        else { throw Problem.validation([FieldError("tenant_id", "and key_id are required UUIDs")]) }
        switch try await self.store.keyMayAct(tenant: tenant, key: key, scope: "canon:write", logger: logger) {
        case .ok: break
        case .missingScope: throw Problem.forbidden("This key does not hold the canon:write scope.")
        case .inactiveTenant: throw Problem.forbidden("This tenant is suspended.")
        case .inactiveKey: throw Problem.forbidden("This key is revoked or expired.")
        case .unknown: throw Problem.notFound("No such key for this tenant.")
        }
        guard try await self.store.canonUpdatesAllowed(tenantID: tenant, logger: logger) else {
            throw Problem.canonUpdatesNotAllowed
        }
        return (tenant, key)
    }

    /// `{"upsert": [entries…], "delete": ["id", …], "publish": true}` applied to the tenant's
    /// published overlay (or an empty one): a new version, built and (unless `publish` is false)
    /// published when ready.
    func update(_ request: Request, tenantID: UUID, keyID: UUID, logger: Logger) async throws -> Response {
        let buffer = try await request.collectBody(upTo: self.settings.maximumUploadBytes, what: "update")
        let object = try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))
        guard let fields = object as? [String: Any] else { throw Problem.badRequest("The body must be a JSON object.") }
        let unknown = Set(fields.keys).subtracting(["upsert", "delete", "publish"]).sorted()
        guard unknown.isEmpty else { throw Problem.validation(unknown.map { FieldError($0, "unknown field") }) }
        let typed: UpdateRequest
        do {
            typed = try JSONDecoder().decode(UpdateRequest.self, from: Data(buffer.readableBytesView))
        } catch {
            throw Problem.validation([FieldError("publish", "must be true or false; delete an array of entry ids")])
        }
        let publish = typed.publish ?? true
        let deletions = typed.delete ?? []
        var upserts: [LocatedEntry] = []
        if let value = fields["upsert"] {
            guard value is [Any] else {
                throw Problem.validation([FieldError("upsert", "must be an array of entries")])
            }
            let bytes = try JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys])
            let parser = CanonParser(limits: .init(maximumFileBytes: self.settings.maximumUploadBytes))
            let parsed = parser.parse(file: "upsert", bytes: Array(bytes), format: .json)
            guard parsed.problems.isEmpty else { throw Problem.canonInvalid(parsed.problems) }
            upserts = parsed.entries
        }
        guard !upserts.isEmpty || !deletions.isEmpty else {
            throw Problem.validation([FieldError("upsert", "or delete must name at least one entry")])
        }
        let owner = CanonOwner.key(tenant: tenantID, key: keyID)
        let parent = try await self.store.published(owner: owner, logger: logger)
        var entries: [LocatedEntry] = []
        if let parent { entries = try await self.store.entries(owner: owner, version: parent, logger: logger) }
        let present = Set(entries.map(\.entry.id))
        let missing = deletions.filter { !present.contains($0) }
        guard missing.isEmpty else {
            throw Problem.canonInvalid(
                missing.map { CanonProblem(file: "delete", line: nil, message: "entry \($0) is not in the overlay") })
        }
        let deleted = Set(deletions)
        entries.removeAll { deleted.contains($0.entry.id) }
        var positions: [String: Int] = [:]
        for (index, entry) in entries.enumerated() { positions[entry.entry.id] = index }
        for upsert in upserts {
            if let index = positions[upsert.entry.id] {
                entries[index] = upsert
            } else {
                positions[upsert.entry.id] = entries.count
                entries.append(upsert)
            }
        }
        let version = try await self.store.create(
            owner: owner, entries: entries, parentID: parent, publishWhenReady: publish, logger: logger)
        self.builder.wake()
        return try StrictJSON.response(version, status: .accepted)
    }
}
