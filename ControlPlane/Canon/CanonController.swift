import Canon
import Common
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresNIO

/// The canon admin API. Tenant admins manage their overlay under `/admin/v1/canon`; operators
/// manage the platform base canon under `/admin/v1/base-canon`. Both: upload (a new version,
/// queued for building), list, get (with build progress), diff, publish, rollback.
struct CanonController: Sendable {
    let store: CanonStore
    let builder: CanonBuilder
    let settings: ControlPlaneConfiguration.CanonSettings

    func addRoutes(to router: Router<AdminRequestContext>) {
        let own = router.group("/admin/v1/canon", context: TenantAdminContext.self)
        own.post("/versions") { request, context in
            try context.requireAdmin()
            try await self.requireCanonUpdates(tenantID: context.tenantID, logger: context.logger)
            return try await self.upload(
                request, owner: .admin(tenant: context.tenantID, admin: context.adminID), logger: context.logger)
        }
        own.get("/versions") { _, context in
            try StrictJSON.response(
                Versions(
                    items: try await self.store.list(
                        owner: .admin(tenant: context.tenantID, admin: context.adminID), logger: context.logger)))
        }
        own.get("/versions/:id") { _, context in
            try StrictJSON.response(
                try await self.store.version(
                    owner: .admin(tenant: context.tenantID, admin: context.adminID),
                    id: try Self.id(context.parameters),
                    logger: context.logger))
        }
        own.get("/versions/:id/diff") { request, context in
            try await self.diff(
                request, owner: .admin(tenant: context.tenantID, admin: context.adminID),
                id: try Self.id(context.parameters),
                logger: context.logger)
        }
        own.post("/versions/:id/publish") { _, context in
            try context.requireAdmin()
            try await self.requireCanonUpdates(tenantID: context.tenantID, logger: context.logger)
            return try StrictJSON.response(
                try await self.store.publish(
                    owner: .admin(tenant: context.tenantID, admin: context.adminID),
                    id: try Self.id(context.parameters),
                    action: "publish", logger: context.logger))
        }
        own.post("/rollback") { _, context in
            try context.requireAdmin()
            try await self.requireCanonUpdates(tenantID: context.tenantID, logger: context.logger)
            return try StrictJSON.response(
                try await self.store.rollback(
                    owner: .admin(tenant: context.tenantID, admin: context.adminID), logger: context.logger))
        }

        let base = router.group("/admin/v1/base-canon", context: OperatorContext.self)
        base.post("/versions") { request, context in
            try await self.upload(request, owner: .base(operatorID: context.operatorID), logger: context.logger)
        }
        base.get("/versions") { _, context in
            try StrictJSON.response(
                Versions(
                    items: try await self.store.list(
                        owner: .base(operatorID: context.operatorID), logger: context.logger)))
        }
        base.get("/versions/:id") { _, context in
            try StrictJSON.response(
                try await self.store.version(
                    owner: .base(operatorID: context.operatorID), id: try Self.id(context.parameters),
                    logger: context.logger))
        }
        base.get("/versions/:id/diff") { request, context in
            try await self.diff(
                request, owner: .base(operatorID: context.operatorID), id: try Self.id(context.parameters),
                logger: context.logger)
        }
        base.post("/versions/:id/publish") { _, context in
            try StrictJSON.response(
                try await self.store.publish(
                    owner: .base(operatorID: context.operatorID), id: try Self.id(context.parameters),
                    action: "publish",
                    logger: context.logger))
        }
        base.post("/rollback") { _, context in
            try StrictJSON.response(
                try await self.store.rollback(owner: .base(operatorID: context.operatorID), logger: context.logger))
        }
    }

    struct Versions: Encodable {
        let items: [CanonVersionBody]
    }

    /// The body is the upload itself; its media type says how to read it. `?publish=true`
    /// publishes the version as soon as it is built.
    func upload(_ request: Request, owner: CanonOwner, logger: Logger) async throws -> Response {
        let publish = try Self.flag(request, "publish")
        let contentType = (request.headers[.contentType] ?? "").split(separator: ";").first.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        }
        let name = request.uri.queryParameters["filename"].map(String.init)
        let format: UploadFormat
        switch contentType {
        case "application/json": format = .file(.json, name ?? "upload.json")
        case "application/x-ndjson", "application/jsonl", "application/ndjson":
            format = .file(.ndjson, name ?? "upload.ndjson")
        case "text/markdown": format = .file(.markdown, name ?? "upload.md")
        case "application/gzip", "application/x-gzip", "application/tar+gzip", "application/x-tar+gzip":
            format = .archive(name ?? "upload.tar.gz")
        default:
            throw Problem.unsupportedMediaType(
                "Send the canon as application/json, application/x-ndjson, text/markdown or application/gzip (a tar.gz)."
            )
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: self.settings.maximumUploadBytes)
        } catch {
            throw Problem.payloadTooLarge("The upload is larger than \(self.settings.maximumUploadBytes) bytes.")
        }
        let bytes = Array(buffer.readableBytesView)
        let parser = CanonParser(limits: .init(maximumFileBytes: self.settings.maximumFileBytes))
        let parsed: (entries: [LocatedEntry], problems: [CanonProblem])
        switch format {
        case .file(let kind, let file): parsed = parser.parse(file: file, bytes: bytes, format: kind)
        case .archive(let file): parsed = CanonArchive(parser: parser).parse(file: file, bytes: bytes)
        }
        let version = try await self.store.create(
            owner: owner, entries: parsed.entries, problems: parsed.problems,
            parentID: try await self.store.published(owner: owner, logger: logger),
            publishWhenReady: publish, logger: logger)
        self.builder.wake()
        let path = owner.tenantID == nil ? "/admin/v1/base-canon" : "/admin/v1/canon"
        return try StrictJSON.response(
            version, status: .accepted, headers: [.location: "\(path)/versions/\(version.id)"])
    }

    enum UploadFormat {
        case file(CanonParser.Format, String)
        case archive(String)
    }

    func diff(_ request: Request, owner: CanonOwner, id: UUID, logger: Logger) async throws -> Response {
        let against: UUID
        if let text = request.uri.queryParameters["against"] {
            guard let other = UUID(uuidString: String(text)) else {
                throw Problem.validation([FieldError("against", "must be a version id")])
            }
            against = other
        } else {
            let version = try await self.store.version(owner: owner, id: id, logger: logger)
            guard let parent = version.parentId.flatMap(UUID.init(uuidString:)) else {
                throw Problem.validation([FieldError("against", "is required: this version has no parent")])
            }
            against = parent
        }
        return try StrictJSON.response(try await self.store.diff(owner: owner, from: against, to: id, logger: logger))
    }

    /// Overlays are for tenants whose tier or quota policy allows canon updates (Enterprise).
    func requireCanonUpdates(tenantID: UUID, logger: Logger) async throws {
        let allowed = try await self.store.database.withTenant(tenantID, logger: logger) { connection in
            var allowed = false
            for try await value in try await connection.query(
                """
                SELECT coalesce(p.canon_updates_allowed, tr.canon_updates_allowed)
                FROM tenants t JOIN tiers tr ON tr.id = t.tier_id LEFT JOIN quota_policies p ON p.tenant_id = t.id
                WHERE t.id = \(tenantID)
                """,
                logger: logger
            ).decode(Bool.self) { allowed = value }
            return allowed
        }
        guard allowed else { throw Problem.canonUpdatesNotAllowed }
    }

    static func id(_ parameters: Parameters) throws -> UUID {
        guard let text = parameters.get("id"), let id = UUID(uuidString: text) else {
            throw Problem.notFound("No such canon version.")
        }
        return id
    }

    static func flag(_ request: Request, _ name: String) throws -> Bool {
        switch request.uri.queryParameters[Substring(name)].map(String.init) {
        case nil, "false": return false
        case "true": return true
        default: throw Problem.validation([FieldError(name, "must be true or false")])
        }
    }
}

/// What nodes use: artifacts by hash, and tenants' canon updates made through the public API.
///
/// - `GET /internal/v1/canon/artifacts/{sha256}`: the artifact bytes (`ZaaS-Artifact-SHA256` echoes
///   the hash; the node verifies it before using anything).
/// - `POST /internal/v1/canon/update?tenant_id=…&key_id=…`: the public request body (`upsert`,
///   `delete`, `publish`) applied to the tenant's published overlay, as a new version.
/// - `GET /internal/v1/canon/versions/{id}?tenant_id=…`: that version, for polling.
struct InternalCanonController: Sendable {
    static let shaHeader = HTTPField.Name("ZaaS-Artifact-SHA256")!

    let credential: NodeCredential
    let store: CanonStore
    let builder: CanonBuilder
    let settings: ControlPlaneConfiguration.CanonSettings

    struct UpdateRequest: Decodable {
        let publish: Bool?
        let delete: [String]?
    }

    func addRoutes(to router: Router<some RequestContext>) {
        let routes = router.group("/internal/v1/canon")
        routes.get("/artifacts/:sha256") { request, context in
            try self.credential.authenticate(request)
            guard let sha256 = context.parameters.get("sha256"), sha256.utf8.count == 64,
                sha256.utf8.allSatisfy({ Hex.value($0) != nil })
            else { throw Problem.notFound("No such artifact.") }
            let rows = try await self.store.database.client.query(
                "SELECT zaas_canon_artifact(\(sha256))", logger: context.logger)
            for try await bytes in rows.decode(ByteBuffer?.self) {
                guard let bytes else { break }
                return Response(
                    status: .ok,
                    headers: [
                        .contentType: "application/octet-stream", Self.shaHeader: sha256,
                        .cacheControl: "private, max-age=31536000, immutable",
                    ],
                    body: .init(byteBuffer: bytes))
            }
            throw Problem.notFound("No such artifact.")
        }
        routes.post("/update") { request, context in
            try self.credential.authenticate(request)
            let (tenantID, keyID) = try Self.caller(request)
            return try await self.update(request, tenantID: tenantID, keyID: keyID, logger: context.logger)
        }
        routes.get("/versions/:id") { request, context in
            try self.credential.authenticate(request)
            let (tenantID, keyID) = try Self.caller(request)
            return try StrictJSON.response(
                try await self.store.version(
                    owner: .key(tenant: tenantID, key: keyID), id: try CanonController.id(context.parameters),
                    logger: context.logger))
        }
    }

    /// The tenant and key a node acts for (the node has authenticated the key).
    static func caller(_ request: Request) throws -> (UUID, UUID) {
        let query = request.uri.queryParameters
        guard let tenant = query["tenant_id"].flatMap({ UUID(uuidString: String($0)) }),
            let key = query["key_id"].flatMap({ UUID(uuidString: String($0)) })
        else { throw Problem.validation([FieldError("tenant_id", "and key_id are required UUIDs")]) }
        return (tenant, key)
    }

    /// `{"upsert": [entries…], "delete": ["id", …], "publish": true}` applied to the tenant's
    /// published overlay (or an empty one): a new version, built and (unless `publish` is false)
    /// published when ready.
    func update(_ request: Request, tenantID: UUID, keyID: UUID, logger: Logger) async throws -> Response {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: self.settings.maximumUploadBytes)
        } catch {
            throw Problem.payloadTooLarge("The update is larger than \(self.settings.maximumUploadBytes) bytes.")
        }
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
