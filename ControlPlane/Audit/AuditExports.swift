import Crypto
import Foundation
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import Shared

/// Compliance exports of a tenant's audit events for a period (docs/audit.md, "Export"): NDJSON
/// (gzip) and CSV, with a manifest (period, count, each file's size and SHA-256, the event
/// schema) signed with the control plane's Ed25519 key. Requested through the admin API, made
/// by this worker in the background (any control plane; a lease hands a crashed worker's job to
/// another), stored in PostgreSQL in 1 MiB parts.
struct AuditExportWorker: Service {
    static let files = ["events.ndjson.gz", "events.csv"]
    static let partBytes = 1 << 20
    static let pageSize = 5000
    static let leaseSeconds: Int32 = 300

    let database: ScopedDatabase
    let signingKey: ConfigSigningKey
    let pollInterval: Duration
    let logger: Logger
    let exported = Counter(label: "zaas_audit_exports_total", dimensions: [("status", "done")])
    let failed = Counter(label: "zaas_audit_exports_total", dimensions: [("status", "failed")])

    struct Job: Sendable {
        let id: UUID
        let tenant: UUID
        let from: Date
        let to: Date
    }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if await self.runOnce() == nil { try await Task.sleep(for: self.pollInterval) }
            }
        }
    }

    /// Claims and makes one waiting export; its id, nil when none waits (or the claim failed).
    @discardableResult
    func runOnce() async -> UUID? {
        let job: Job?
        do {
            job = try await self.database.unscoped(logger: self.logger) { connection in
                let rows = try await connection.query(
                    "SELECT id, tenant_id, period_from, period_to FROM zaas_audit_export_claim(\(Self.leaseSeconds))",
                    logger: self.logger)
                for try await (id, tenant, from, to) in rows.decode((UUID, UUID, Date, Date).self) {
                    return Job(id: id, tenant: tenant, from: from, to: to)
                }
                return nil
            }
        } catch {
            self.logger.warning("cannot claim an audit export", metadata: ["error": "\(String(reflecting: error))"])
            return nil
        }
        guard let job else { return nil }
        do {
            try await self.make(job)
            self.exported.increment()
        } catch {
            self.failed.increment()
            self.logger.error(
                "audit export failed", metadata: ["export": "\(job.id)", "error": "\(String(reflecting: error))"])
            _ = try? await self.database.withTenant(job.tenant, logger: self.logger) { connection in
                try await connection.query(
                    """
                    UPDATE audit_exports SET status = 'failed', error = 'the export could not be made; ask again',
                        finished_at = now() WHERE id = \(job.id)
                    """, logger: self.logger)
            }
        }
        return job.id
    }

    /// Writes both files part by part, then the signed manifest.
    func make(_ job: Job) async throws {
        try await self.database.withTenant(job.tenant, logger: self.logger) { connection in
            try await connection.query(
                "DELETE FROM audit_export_files WHERE export_id = \(job.id)", logger: self.logger)
        }
        var ndjson = FileWriter(name: Self.files[0])
        var csv = FileWriter(name: Self.files[1])
        let gzip = try GzipEncoder()
        try await csv.add(Array((AuditCSV.header + "\n").utf8), job: job, worker: self)
        var cursor: (Date, UUID)?
        var count: Int64 = 0
        while true {
            let page = try await self.database.withTenant(job.tenant, logger: self.logger) { connection in
                let rows = try await connection.query(
                    """
                    SELECT time, id, event::text FROM audit_events
                    WHERE tenant_id = \(job.tenant) AND time >= \(job.from) AND time < \(job.to)
                      AND (\(cursor?.0)::timestamptz IS NULL OR (time, id) > (\(cursor?.0), \(cursor?.1)))
                    ORDER BY time, id LIMIT \(Int32(Self.pageSize))
                    """, logger: self.logger)
                var page: [(Date, UUID, String)] = []
                for try await row in rows.decode((Date, UUID, String).self) { page.append(row) }
                return page
            }
            for (_, _, text) in page {
                try await ndjson.add(try gzip.compress(Array(text.utf8) + [0x0A]), job: job, worker: self)
                let event = try AuditEvent.decoder.decode(AuditEvent.self, from: Data(text.utf8))
                try await csv.add(Array((AuditCSV.row(event) + "\n").utf8), job: job, worker: self)
            }
            count += Int64(page.count)
            if let last = page.last { cursor = (last.0, last.1) }
            // Progress, and the lease renewed while the work goes on.
            try await self.database.withTenant(job.tenant, logger: self.logger) { connection in
                try await connection.query(
                    """
                    UPDATE audit_exports SET events = \(count),
                        lease_until = now() + make_interval(secs => \(Self.leaseSeconds)) WHERE id = \(job.id)
                    """, logger: self.logger)
            }
            if page.count < Self.pageSize { break }
        }
        try await ndjson.add(try gzip.compress([], finish: true), job: job, worker: self)
        try await ndjson.finish(job: job, worker: self)
        try await csv.finish(job: job, worker: self)
        let manifest = AuditExportManifest(
            exportID: job.id, tenantID: job.tenant, from: job.from, to: job.to, events: count, createdAt: Date(),
            files: [ndjson.entry, csv.entry], signingKey: self.signingKey.verificationKey.hex)
        let bytes = try manifest.encoded()
        let signature = Hex.encode(self.signingKey.signExportManifest(bytes))
        let text = String(decoding: bytes, as: UTF8.self)
        try await self.database.withTenant(job.tenant, logger: self.logger) { connection in
            try await connection.query(
                """
                UPDATE audit_exports SET status = 'done', events = \(count), manifest = \(text),
                    signature = \(signature), finished_at = now(), lease_until = NULL WHERE id = \(job.id)
                """, logger: self.logger)
        }
    }

    /// Stores one file in parts, counting and hashing what it stores.
    struct FileWriter {
        let name: String
        var pending: [UInt8] = []
        var part: Int32 = 0
        var bytes: Int64 = 0
        var hash = SHA256()

        init(name: String) { self.name = name }

        var entry: AuditExportManifest.File {
            AuditExportManifest.File(name: self.name, bytes: self.bytes, sha256: Hex.encode(self.hash.finalize()))
        }

        mutating func add(_ data: [UInt8], job: Job, worker: AuditExportWorker) async throws {
            self.pending += data
            self.bytes += Int64(data.count)
            self.hash.update(data: data)
            while self.pending.count >= AuditExportWorker.partBytes {
                let part = Array(self.pending.prefix(AuditExportWorker.partBytes))
                self.pending.removeFirst(AuditExportWorker.partBytes)
                try await self.store(part, job: job, worker: worker)
            }
        }

        mutating func finish(job: Job, worker: AuditExportWorker) async throws {
            if !self.pending.isEmpty || self.part == 0 {
                let part = self.pending
                self.pending = []
                try await self.store(part, job: job, worker: worker)
            }
        }

        private mutating func store(_ data: [UInt8], job: Job, worker: AuditExportWorker) async throws {
            let (name, part) = (self.name, self.part)
            try await worker.database.withTenant(job.tenant, logger: worker.logger) { connection in
                try await connection.query(
                    """
                    INSERT INTO audit_export_files (export_id, tenant_id, name, part, bytes)
                    VALUES (\(job.id), \(job.tenant), \(name), \(part), \(ByteBuffer(bytes: data)))
                    """, logger: worker.logger)
            }
            self.part += 1
        }
    }
}

/// The CSV form of events (RFC 4180): one row per event, the fields an auditor filters on.
enum AuditCSV {
    static let columns = [
        "id", "time", "tenant_id", "key_id", "query_id", "request_id", "node", "kind", "outcome", "status",
        "problem_type", "cache", "cache_similarity", "model_used", "route_class", "fallback_reason", "confidence",
        "canon_version", "citations", "question_text", "question_redacted", "question_fingerprint", "answer",
        "input_tokens", "output_tokens", "cost_nanodollars", "total_ms", "actor", "change",
    ]
    static let header = columns.joined(separator: ",")

    static func row(_ event: AuditEvent) -> String {
        let answer = event.answer
        let fields: [String?] = [
            event.id.lowercased, event.time.formatted(AuditEvent.timeFormat), event.tenantID?.lowercased,
            event.keyID?.lowercased, event.queryID?.lowercased, event.requestID, event.node, event.kind.rawValue,
            event.outcome, String(event.status), event.problemType, event.cache?.rawValue,
            event.cacheSimilarity.map { String($0) }, answer?.modelUsed, answer?.route?.modelClass,
            answer?.fallbackReason, answer?.confidence.map { String($0) }, answer?.canonVersion,
            answer.map { $0.citations.map { "\($0.id)@\($0.canonVersion)" }.joined(separator: " ") },
            event.question?.text, event.question.map { String($0.redacted) }, event.question?.fingerprint,
            answer?.text, event.inputTokens.map { String($0) }, event.outputTokens.map { String($0) },
            event.costNanoDollars.map { String($0) }, event.timingsMs["total"].map { String($0) }, event.actor,
            event.change.map { "\($0.entity) \($0.entityID) v\($0.configVersion)" },
        ]
        return fields.map { self.quote($0 ?? "") }.joined(separator: ",")
    }

    /// Quoted when it holds a comma, a quote or a line break (quotes doubled); a leading `=`, `+`,
    /// `-` or `@` is prefixed with `'` so a spreadsheet never runs it as a formula.
    static func quote(_ field: String) -> String {
        var field = field
        if let first = field.first, "=+-@".contains(first), Double(field) == nil { field = "'" + field }
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
