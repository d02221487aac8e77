import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Shared

/// `POST /internal/v1/audit`: a batch of audit events from a node's spool, one JSON object per
/// line (`application/x-ndjson`). Each event is checked on its own and stored once (its id and
/// time are the key), so a batch sent again changes nothing. The reply accounts for every line:
/// stored, held already (`duplicates`), or refused for good with the reason (malformed, a schema
/// this control plane does not know, a time more than a day ahead of its clock, a tenant that
/// does not exist). Only a failure to reach the database fails the whole batch (503), for the
/// node to send again later.
struct AuditIngestController: Sendable {
    /// How far ahead of this control plane's clock an event's time may be.
    static let maximumClockLead: TimeInterval = 86_400

    let store: AuditStore
    let ingested = Counter(label: "zaas_audit_ingest_events_total", dimensions: [("result", "stored")])
    let duplicates = Counter(label: "zaas_audit_ingest_events_total", dimensions: [("result", "duplicate")])
    let refusals = Counter(label: "zaas_audit_ingest_events_total", dimensions: [("result", "refused")])

    func addRoutes(to group: RouterGroup<NodeContext>) {
        group.post(RouterPath(InternalAPI.audit)) { request, context in
            if let type = request.headers[.contentType], !type.lowercased().hasPrefix("application/x-ndjson") {
                throw Problem.unsupportedMediaType("Send audit events as application/x-ndjson, one per line.")
            }
            let body = try await request.collectBody(upTo: AuditIngestReply.maximumBytes)
            var lines = body.readableBytesView.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            if lines.last?.isEmpty == true { lines.removeLast() }
            guard lines.count <= AuditIngestReply.maximumEvents else {
                throw Problem.validation([
                    FieldError("events", "at most \(AuditIngestReply.maximumEvents) per batch")
                ])
            }
            let reply = try await self.ingest(
                lines.map { Array($0) }, node: context.node.nodeID, logger: context.logger)
            return try StrictJSON.response(reply)
        }
    }

    func ingest(_ lines: [[UInt8]], node: String, logger: Logger, now: Date = Date()) async throws -> AuditIngestReply {
        var accepted: [(index: Int, tenant: UUID?, json: String)] = []
        var refused: [BatchRefusal] = []
        for (index, line) in lines.enumerated() {
            switch Self.check(line, now: now) {
            case .success(let event):
                let json = String(decoding: try AuditEvent.encoder.encode(event), as: UTF8.self)
                accepted.append((index, event.tenantID, json))
            case .failure(let refusal):
                refused.append(BatchRefusal(index: index, reason: refusal.reason))
            }
        }
        let outcome = try await self.store.ingest(node: node, events: accepted.map(\.json), logger: logger)
        var unknown = 0
        for entry in accepted {
            if let tenant = entry.tenant, outcome.unknownTenants.contains(tenant) {
                refused.append(BatchRefusal(index: entry.index, reason: "no tenant \(tenant.lowercased) exists"))
                unknown += 1
            }
        }
        refused.sort { $0.index < $1.index }
        let duplicates = accepted.count - unknown - outcome.stored
        self.ingested.increment(by: outcome.stored)
        self.duplicates.increment(by: duplicates)
        if !refused.isEmpty {
            self.refusals.increment(by: refused.count)
            logger.warning(
                "audit events refused",
                metadata: ["node": "\(node)", "count": "\(refused.count)", "first": "\(refused[0].reason)"])
        }
        return AuditIngestReply(stored: outcome.stored, duplicates: duplicates, refused: refused)
    }

    /// One line as an event this control plane stores, or why not.
    struct Refusal: Error, Equatable {
        let reason: String
    }

    static func check(_ line: [UInt8], now: Date) -> Result<AuditEvent, Refusal> {
        let event: AuditEvent
        do {
            event = try AuditEvent.decoder.decode(AuditEvent.self, from: Data(line))
        } catch {
            return .failure(Refusal(reason: "not an audit event: \(Self.describe(error))"))
        }
        guard (1...AuditEvent.schemaVersion).contains(event.schema) else {
            return .failure(
                Refusal(
                    reason: "schema \(event.schema) is not one this control plane reads (1–\(AuditEvent.schemaVersion))"
                ))
        }
        if event.kind == .query {
            guard AuditEvent.Outcome.queryOutcomes.contains(event.outcome) else {
                return .failure(Refusal(reason: "outcome \(event.outcome.prefix(64)) is not a query outcome"))
            }
        } else if event.outcome.isEmpty || event.outcome.count > 64
            || !event.outcome.allSatisfy({ $0.isASCII && ($0.isLowercase || $0 == "_") })
        {
            return .failure(Refusal(reason: "outcome must be 1–64 lower-case letters and underscores"))
        }
        guard (100...599).contains(event.status) else {
            return .failure(Refusal(reason: "status \(event.status) is not an HTTP status"))
        }
        guard event.time.timeIntervalSince(now) <= Self.maximumClockLead else {
            let hours = Int(event.time.timeIntervalSince(now) / 3600)
            return .failure(Refusal(reason: "time is \(hours) hours ahead of the control plane's clock"))
        }
        guard event.time.timeIntervalSince1970 >= 946_684_800 else {
            return .failure(Refusal(reason: "time is before 2000"))
        }
        let bounded: [(String, Int, Int)] = [
            ("node", event.node.utf8.count, 200), ("request_id", event.requestID?.utf8.count ?? 0, 200),
            ("problem_type", event.problemType?.utf8.count ?? 0, 300),
            ("question.text", event.question?.text.utf8.count ?? 0, 20_000),
            ("answer.answer", event.answer?.text.utf8.count ?? 0, 200_000),
            ("answer.citations", event.answer?.citations.count ?? 0, 100), ("timings_ms", event.timingsMs.count, 32),
        ]
        for (field, size, limit) in bounded where size > limit {
            return .failure(Refusal(reason: "\(field) is longer than \(limit)"))
        }
        if let fingerprint = event.question?.fingerprint, !Hex.isLowercase(fingerprint, count: 64) {
            return .failure(Refusal(reason: "question.fingerprint must be 64 lower-case hex digits"))
        }
        return .success(event)
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "\(key.stringValue) is missing"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
            DecodingError.dataCorrupted(let context):
            (context.codingPath.map(\.stringValue).joined(separator: ".") + " " + context.debugDescription)
                .trimmingCharacters(in: .whitespaces)
        default: "malformed JSON"
        }
    }
}
