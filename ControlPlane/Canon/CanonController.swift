import Canon
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import Shared

/// The canon admin API. Tenant admins manage their overlay under `/admin/v1/canon`; operators
/// manage the platform base canon under `/admin/v1/base-canon`. Both: upload (a new version,
/// queued for building), list, get (with build progress), diff, publish, rollback.
struct CanonController: Sendable {
    let store: CanonStore
    let builder: CanonBuildWorker
    let settings: CanonSettings
    let uploads: UploadGate

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
        try await self.uploads.withPlace(tenant: owner.tenantID) {
            try await self.readUpload(request, owner: owner, logger: logger)
        }
    }

    private func readUpload(_ request: Request, owner: CanonOwner, logger: Logger) async throws -> Response {
        let publish = try Self.flag(request, "publish")
        let contentType = (request.headers[.contentType] ?? "").split(separator: ";").first.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        }
        let name = request.uri.queryParameters["filename"].map(String.init)
        if let name, let error = FieldError("filename", text: name, length: 1...255) {
            throw Problem.validation([error])
        }
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
        let buffer = try await request.collectBody(upTo: self.settings.maximumUploadBytes, what: "upload")
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
        let allowed = try await self.store.canonUpdatesAllowed(tenantID: tenantID, logger: logger)
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
