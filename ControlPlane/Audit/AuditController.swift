import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import Shared

/// `GET /admin/v1/audit/events`: a page of audit events, newest first (docs/audit.md). A tenant
/// admin reads its own tenant's; an operator any tenant's (`tenant_id` narrows to one). Filters:
/// `from`, `to` (ISO 8601; the last 7 days by default, at most 366 days), `outcome`, `key_id`,
/// `model`, `cache`, `kind`; `limit` (1–500, 100) and `cursor` (the previous page's
/// `next_cursor`).
struct AuditController: Sendable {
    static let maximumRange: TimeInterval = 366 * 86_400
    static let defaultRange: TimeInterval = 7 * 86_400

    let database: ScopedDatabase

    struct ExportRequest: Decodable {
        let from: Date
        let to: Date
        let tenantId: UUID?
    }

    func addRoutes(to router: Router<AdminRequestContext>) {
        let audit = router.group("/admin/v1/audit", context: AuthenticatedContext.self)
        audit.post("exports") { request, context in
            let body = try await StrictJSON.decode(
                ExportRequest.self, from: request, context: context, allowedFields: ["from", "to", "tenant_id"])
            var errors: [FieldError] = []
            if body.from >= body.to {
                errors.append(FieldError("from", "must be before to"))
            } else if body.to.timeIntervalSince(body.from) > Self.maximumRange {
                errors.append(FieldError("from", "the period may span at most 366 days"))
            }
            let tenant: UUID
            let actor: String
            switch context.principal {
            case .platformOperator(let id):
                guard let asked = body.tenantId else {
                    throw Problem.validation([FieldError("tenant_id", "is required")])
                }
                (tenant, actor) = (asked, "operator:\(id.lowercased)")
            case .tenantAdmin(let id, let tenantID, let role):
                guard role == .admin else { throw Problem.forbidden("Viewers cannot start exports.") }
                if let asked = body.tenantId, asked != tenantID {
                    throw Problem.forbidden("A tenant admin exports its own tenant's events.")
                }
                (tenant, actor) = (tenantID, "admin:\(id.lowercased)")
            }
            guard errors.isEmpty else { throw Problem.validation(errors) }
            let export = try await self.scoped(context) { connection in
                guard
                    try await connection.query("SELECT 1 FROM tenants WHERE id = \(tenant)", logger: context.logger)
                        .decode(Int32.self).first(where: { _ in true }) != nil
                else { throw Problem.notFound("No such tenant.") }
                let rows = try await connection.query(
                    """
                    INSERT INTO audit_exports (tenant_id, requested_by, period_from, period_to)
                    VALUES (\(tenant), \(actor), \(body.from), \(body.to)) RETURNING \(unescaped: Self.exportColumns)
                    """, logger: context.logger)
                for try await row in rows.decode(ExportColumns.self) { return ExportRow(columns: row) }
                throw Problem.internalError
            }.json
            // Exports are themselves audited.
            let event = AuditEvent(
                kind: .admin, tenantID: tenant, requestID: request.headers[.requestID], actor: actor,
                node: "control-plane", outcome: "audit_export_requested", status: 202)
            _ = try await AuditStore(client: self.database.client).ingest(
                node: "control-plane", events: [String(decoding: try AuditEvent.encoder.encode(event), as: UTF8.self)],
                logger: context.logger)
            let id = (export["id"] as? String) ?? ""
            return try Self.response(export, status: .accepted, location: "/admin/v1/audit/exports/\(id)")
        }
        audit.get("exports/:id") { _, context in
            let id = try Self.exportID(context)
            let export = try await self.scoped(context) { connection in
                let rows = try await connection.query(
                    "SELECT \(unescaped: Self.exportColumns) FROM audit_exports WHERE id = \(id)",
                    logger: context.logger)
                for try await row in rows.decode(ExportColumns.self) { return ExportRow(columns: row) }
                throw Problem.notFound("No such export.")
            }.json
            return try Self.response(export)
        }
        audit.get("exports/:id/files/:name") { _, context in
            let id = try Self.exportID(context)
            guard let name = context.parameters.get("name"), AuditExportWorker.files.contains(name) else {
                throw Problem.notFound("An export has events.ndjson.gz and events.csv.")
            }
            let parts = try await self.scoped(context) { connection in
                var status: String?
                for try await value in try await connection.query(
                    "SELECT status FROM audit_exports WHERE id = \(id)", logger: context.logger
                ).decode(String.self) {
                    status = value
                }
                guard let status else { throw Problem.notFound("No such export.") }
                guard status == "done" else { throw Problem.conflict("The export is \(status), not done yet.") }
                var count: Int32 = 0
                for try await value in try await connection.query(
                    "SELECT count(*)::integer FROM audit_export_files WHERE export_id = \(id) AND name = \(name)",
                    logger: context.logger
                ).decode(Int32.self) {
                    count = value
                }
                return count
            }
            let database = self.database
            let principal = context.principal
            let logger = context.logger
            return Response(
                status: .ok,
                headers: [
                    .contentType: name.hasSuffix(".gz") ? "application/gzip" : "text/csv; charset=utf-8",
                    .contentDisposition: "attachment; filename=\"\(name)\"", .cacheControl: "no-store",
                ],
                body: ResponseBody { writer in
                    for part in 0..<parts {
                        let bytes = try await database.within(principal, logger: logger) { connection in
                            var bytes = ByteBuffer()
                            for try await value in try await connection.query(
                                """
                                SELECT bytes FROM audit_export_files
                                WHERE export_id = \(id) AND name = \(name) AND part = \(part)
                                """, logger: logger
                            ).decode(ByteBuffer.self) {
                                bytes = value
                            }
                            return bytes
                        }
                        try await writer.write(bytes)
                    }
                    try await writer.finish(nil)
                })
        }
        // An operator erases a tenant's events of a period (recorded in the operator audit).
        router.group("/admin/v1/tenants", context: OperatorContext.self).delete(":id/audit/events") {
            request, context in
            guard let text = context.parameters.get("id"), let tenant = UUID(uuidString: text) else {
                throw Problem.notFound("No such tenant.")
            }
            let query = request.uri.queryParameters
            var errors: [FieldError] = []
            func time(_ name: String) -> Date? {
                guard let date = query[Substring(name)].flatMap(Self.time) else {
                    errors.append(FieldError(name, "is required, an ISO 8601 time"))
                    return nil
                }
                return date
            }
            let (from, to) = (time("from"), time("to"))
            if let from, let to, from >= to { errors.append(FieldError("from", "must be before to")) }
            guard errors.isEmpty, let from, let to else { throw Problem.validation(errors) }
            let erased = try await self.database.withOperator(context.operatorID, logger: context.logger) {
                connection in
                var exists = false
                for try await _ in try await connection.query(
                    "SELECT 1 FROM tenants WHERE id = \(tenant)", logger: context.logger
                ).decode(Int32.self) {
                    exists = true
                }
                guard exists else { throw Problem.notFound("No such tenant.") }
                var erased: Int64 = 0
                for try await count in try await connection.query(
                    "SELECT zaas_audit_erase(\(tenant), \(from), \(to))", logger: context.logger
                ).decode(Int64.self) {
                    erased = count
                }
                return erased
            }
            context.logger.notice(
                "audit events erased",
                metadata: ["tenant": "\(tenant)", "erased": "\(erased)", "from": "\(from)", "to": "\(to)"])
            return try Self.response(["erased": erased])
        }
        audit.get("events") { request, context in
            let (filter, cursor, limit) = try Self.parse(request)
            let (events, next): ([String], AuditStore.Cursor?)
            switch context.principal {
            case .platformOperator(let id):
                (events, next) = try await self.database.withOperator(id, logger: context.logger) { connection in
                    try await AuditStore.list(
                        filter, after: cursor, limit: limit, connection: connection, logger: context.logger)
                }
            case .tenantAdmin(_, let tenantID, _):
                if let asked = filter.tenant, asked != tenantID {
                    throw Problem.forbidden("A tenant admin reads its own tenant's events.")
                }
                (events, next) = try await self.database.withTenant(tenantID, logger: context.logger) { connection in
                    try await AuditStore.list(
                        filter, after: cursor, limit: limit, connection: connection, logger: context.logger)
                }
            }
            var body = ByteBuffer(string: #"{"items":["#)
            for (index, event) in events.enumerated() {
                if index > 0 { body.writeString(",") }
                body.writeString(event)
            }
            body.writeString("],\"next_cursor\":")
            body.writeString(next.map { "\"\($0.text)\"" } ?? "null")
            body.writeString("}")
            return Response(
                status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: .init(byteBuffer: body))
        }
    }

    typealias ExportColumns = (UUID, UUID, String, Date, Date, String, Int64, String?, String?, String?, Date, Date?)

    /// An export as the API shows it.
    struct ExportRow: Sendable {
        let columns: ExportColumns
        var json: [String: Any] { AuditController.exportJSON(self.columns) }
    }
    static let exportColumns =
        "id, tenant_id, requested_by, period_from, period_to, status, events, manifest, signature, error, created_at, finished_at"

    static func exportJSON(_ row: ExportColumns) -> [String: Any] {
        var object: [String: Any] = [
            "id": row.0.lowercased, "tenant_id": row.1.lowercased, "requested_by": row.2,
            "from": row.3.formatted(.iso8601), "to": row.4.formatted(.iso8601), "status": row.5, "events": row.6,
            "created_at": row.10.formatted(.iso8601),
        ]
        if let manifest = row.7 { object["manifest"] = manifest }
        if let signature = row.8 { object["signature"] = signature }
        if let error = row.9 { object["error"] = error }
        if let finished = row.11 { object["finished_at"] = finished.formatted(.iso8601) }
        if row.5 == "done" {
            object["files"] = AuditExportWorker.files.map { "/admin/v1/audit/exports/\(row.0.lowercased)/files/\($0)" }
        }
        return object
    }

    static func response(_ object: [String: Any], status: HTTPResponse.Status = .ok, location: String? = nil) throws
        -> Response
    {
        var headers: HTTPFields = [.contentType: "application/json", .cacheControl: "no-store"]
        if let location { headers[.location] = location }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func exportID(_ context: AuthenticatedContext) throws -> UUID {
        guard let text = context.parameters.get("id"), let id = UUID(uuidString: text) else {
            throw Problem.notFound("No such export.")
        }
        return id
    }

    /// Runs `body` in the caller's scope: an operator's (every tenant) or a tenant admin's own.
    private func scoped<Result: Sendable>(
        _ context: AuthenticatedContext, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await self.database.within(context.principal, logger: context.logger, body)
    }

    /// An ISO 8601 time, with or without fractional seconds, or a date (midnight UTC).
    static func time(_ text: Substring) -> Date? { ISO8601Time.parse(text) }

    static func parse(_ request: Request) throws -> (AuditStore.Filter, AuditStore.Cursor?, Int) {
        let query = request.uri.queryParameters
        var errors: [FieldError] = []
        func time(_ name: String) -> Date? {
            guard let text = query[Substring(name)] else { return nil }
            if let date = Self.time(text) { return date }
            errors.append(FieldError(name, "must be an ISO 8601 time, e.g. 2026-12-01T00:00:00Z"))
            return nil
        }
        func text(_ name: String, allowed: Set<String>? = nil) -> String? {
            guard let value = query[Substring(name)].map(String.init) else { return nil }
            if let allowed, !allowed.contains(value) {
                errors.append(FieldError(name, "must be one of \(allowed.sorted().joined(separator: ", "))"))
                return nil
            }
            guard (1...200).contains(value.count) else {
                errors.append(FieldError(name, "must be 1 to 200 characters"))
                return nil
            }
            return value
        }
        func uuid(_ name: String) -> UUID? {
            guard let value = query[Substring(name)] else { return nil }
            guard let id = UUID(uuidString: String(value)) else {
                errors.append(FieldError(name, "must be a UUID"))
                return nil
            }
            return id
        }
        let to = time("to") ?? Date()
        let from = time("from") ?? to.addingTimeInterval(-Self.defaultRange)
        if from >= to {
            errors.append(FieldError("from", "must be before to"))
        } else if to.timeIntervalSince(from) > Self.maximumRange {
            errors.append(FieldError("from", "the range may span at most 366 days"))
        }
        var limit = 100
        if let value = query["limit"] {
            if let parsed = Int(String(value)), (1...500).contains(parsed) {
                limit = parsed
            } else {
                errors.append(FieldError("limit", "must be an integer from 1 to 500"))
            }
        }
        var cursor: AuditStore.Cursor?
        if let value = query["cursor"] {
            cursor = AuditStore.Cursor(text: String(value))
            if cursor == nil { errors.append(FieldError("cursor", "is not a cursor this API returned")) }
        }
        let filter = AuditStore.Filter(
            from: from, to: to, tenant: uuid("tenant_id"),
            outcome: text("outcome", allowed: AuditEvent.Outcome.queryOutcomes), key: uuid("key_id"),
            model: text("model"), cache: text("cache", allowed: Set(AuditEvent.CacheKind.allCases.map(\.rawValue))),
            kind: text("kind", allowed: ["query", "canon_update", "admin"]))
        guard errors.isEmpty else { throw Problem.validation(errors) }
        return (filter, cursor, limit)
    }
}
