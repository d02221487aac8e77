import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import Shared
import Synchronization

/// Records one audit event per query, whatever its outcome, in the node's spool before the
/// response is sent (docs/audit.md). The record is JSON written by hand: a cached answer's stored
/// bytes go in without what the audit does not keep, copied in one pass, so a cache hit pays
/// for no decoding and no encoder.
///
/// When the spool cannot take an event (full while the control plane is long away, or its disk
/// failing), `audit.when_full` decides: `refuse` (the default) answers the query with 503
/// `audit-unavailable` rather than answer it unrecorded; `answer` answers and counts the event
/// lost in `zaas_audit_events_dropped_total`. Refusals of unknown keys, which anyone can cause,
/// are never worth refusing a query for: they are dropped once the spool is half full.
final class AuditRecorder: Sendable {
    enum WhenFull: String, Sendable {
        case refuse, answer
    }

    struct Settings: Sendable {
        var directory: String
        var spool = AuditSpool.Settings()
        /// How often what was appended is made durable (fsync).
        var syncInterval = Duration.milliseconds(100)
        /// How often the shipper seals the current segment and sends what is sealed.
        var shipInterval = Duration.seconds(1)
        var whenFull = WhenFull.refuse
        /// `audit.enabled`: false records nothing (for measurements and throwaway stacks; health
        /// says `off`). Never in production: queries are then answered unaccounted for.
        var enabled = true
        /// The deployment's fingerprint secret; each tenant's key is derived from it.
        var fingerprintSecret: SymmetricKey
    }

    /// What happened to a query, for its event.
    struct Outcome: Sendable {
        var outcome: String
        var status: Int
        var problemType: String? = nil

        init(outcome: String, status: Int, problemType: String? = nil) {
            self.outcome = outcome
            self.status = status
            self.problemType = problemType
        }

        /// The outcome of a request that failed with `error`, as its problem response shows it.
        init(error: any Error) {
            let problem: Problem =
                switch error {
                case let problem as Problem: problem
                case let error as any HTTPResponseError: .forStatus(error.status)
                case is DecodingError: .badRequest("")
                default: .internalError
                }
            let status = Int(problem.status.code)
            self.init(outcome: AuditEvent.Outcome.of(status: status), status: status, problemType: problem.type)
        }
    }

    let nodeID: String
    let spool: AuditSpool
    let settings: Settings
    let privacy: QuestionPrivacy
    private let logger: Logger
    private let dropped = Counter(label: "zaas_audit_events_dropped_total")
    private let lastFailure = Mutex<(ContinuousClock.Instant, String)?>(nil)

    init(nodeID: String, settings: Settings, privacy: QuestionPrivacy, logger: Logger) throws {
        self.nodeID = nodeID
        self.settings = settings
        self.privacy = privacy
        self.spool = try AuditSpool(directory: settings.directory, settings: settings.spool)
        self.logger = logger
    }

    /// Whether the last append failed within the last minute, and why (health reports it).
    var recentFailure: String? {
        self.lastFailure.withLock { failure in
            guard let (when, why) = failure, ContinuousClock.now - when < .seconds(60) else { return nil }
            return why
        }
    }

    // MARK: Events of queries

    /// What of a stored answer the audit does not keep (`AuditEvent.Answer` has the rest): the
    /// passages' text, titles, kinds and scores, and the filter's report. Left out on the node,
    /// an exact hit's event is a fifth of the answer's size.
    static let answerDetail: Set<String> = ["snippet", "title", "kind", "score", "filter"]

    /// A query answered (by a cache or computed): recorded before its response is written.
    func answered(
        _ answer: QueryPipeline.Answer, question: String, caller: Caller, queryID: UUID, requestID: String?,
        total: Duration
    ) throws {
        guard self.settings.enabled else { return }
        let outcome: String
        let cache: AuditEvent.CacheKind
        switch answer.outcome {
        case .exact:
            (outcome, cache) =
                answer.persistent
                ? (AuditEvent.Outcome.cachePersistent, .persistent) : (AuditEvent.Outcome.cacheExact, .exact)
        case .semantic: (outcome, cache) = (AuditEvent.Outcome.cacheSemantic, .semantic)
        case .miss: (outcome, cache) = (AuditEvent.Outcome.answered, .miss)
        }
        var record = self.header(
            outcome: .init(outcome: outcome, status: 200), tenant: caller.tenant.id, key: caller.key.id,
            queryID: queryID, requestID: requestID)
        self.appendQuestion(question, caller: caller, to: &record)
        JSONText.appendKey("answer", to: &record)
        record += JSONText.removingMembers(named: Self.answerDetail, from: answer.stored.json)
        JSONText.appendKey("cache", to: &record)
        JSONText.appendString(cache.rawValue, to: &record)
        if let similarity = answer.similarity {
            JSONText.appendKey("cache_similarity", to: &record)
            record += Array(String(format: "%.4f", Double(similarity)).utf8)
        }
        if let usage = answer.usage {
            JSONText.appendKey("input_tokens", to: &record)
            record += Array(String(usage.inputTokens).utf8)
            JSONText.appendKey("output_tokens", to: &record)
            record += Array(String(usage.outputTokens).utf8)
            JSONText.appendKey("cost_nanodollars", to: &record)
            record += Array(String(usage.costNanoDollars).utf8)
        }
        JSONText.appendKey("timings_ms", to: &record)
        record += Array(answer.timings.json(total: total).utf8)
        record.append(UInt8(ascii: "}"))
        try self.append(record, attributed: true)
    }

    /// A query that got no answer: refused, invalid, failed, or left by its caller. `caller` is
    /// nil when no key checked out; `owner` then names the key's tenant and key when the key was
    /// valid but not for this request (403).
    func unanswered(
        _ outcome: Outcome, caller: Caller?, owner: (tenant: UUID, key: UUID)? = nil, question: String? = nil,
        queryID: UUID? = nil, requestID: String?, total: Duration
    ) throws {
        guard self.settings.enabled else { return }
        let tenant = caller?.tenant.id ?? owner?.tenant
        var record = self.header(
            outcome: outcome, tenant: tenant, key: caller?.key.id ?? owner?.key, queryID: queryID,
            requestID: requestID)
        if let question, let caller { self.appendQuestion(question, caller: caller, to: &record) }
        JSONText.appendKey("timings_ms", to: &record)
        record += Array(#"{"total":\#(total.milliseconds)}"#.utf8)
        record.append(UInt8(ascii: "}"))
        try self.append(record, attributed: tenant != nil)
    }

    /// `{"schema":1,"id":…,"time":…,"kind":"query","node":…,"outcome":…,"status":…` and the
    /// identifiers known (the object is left open).
    private func header(
        outcome: Outcome, tenant: UUID?, key: UUID?, queryID: UUID?, requestID: String?
    ) -> [UInt8] {
        let now = Date()
        var record = [UInt8]()
        record.reserveCapacity(2048)
        record += Array(#"{"schema":\#(AuditEvent.schemaVersion)"#.utf8)
        JSONText.appendKey("id", to: &record)
        JSONText.appendString(UUID.timeOrdered(at: now).lowercased, to: &record)
        JSONText.appendKey("time", to: &record)
        JSONText.appendTime(milliseconds: Int64((now.timeIntervalSince1970 * 1000).rounded(.down)), to: &record)
        JSONText.appendKey("kind", to: &record)
        JSONText.appendString(AuditEvent.Kind.query.rawValue, to: &record)
        JSONText.appendKey("node", to: &record)
        JSONText.appendString(self.nodeID, to: &record)
        JSONText.appendKey("outcome", to: &record)
        JSONText.appendString(outcome.outcome, to: &record)
        JSONText.appendKey("status", to: &record)
        record += Array(String(outcome.status).utf8)
        let identifiers: [(StaticString, String?)] = [
            ("tenant_id", tenant?.lowercased), ("key_id", key?.lowercased), ("query_id", queryID?.lowercased),
            ("request_id", requestID), ("problem_type", outcome.problemType),
        ]
        for case (let name, let value?) in identifiers {
            JSONText.appendKey(name, to: &record)
            JSONText.appendString(value, to: &record)
        }
        return record
    }

    /// `"question":{"text":…,"redacted":…,"fingerprint":…}`: redacted unless the tenant opted in
    /// to raw questions.
    private func appendQuestion(_ question: String, caller: Caller, to record: inout [UInt8]) {
        let kept = self.privacy.forAudit(question, tenant: caller.tenant.id)
        let raw = caller.policy.storeRawQuestions
        JSONText.appendKey("question", to: &record)
        record.append(UInt8(ascii: "{"))
        JSONText.appendKey("text", to: &record, first: true)
        JSONText.appendString(raw ? question : kept.redacted, to: &record)
        JSONText.appendKey("redacted", to: &record)
        record += Array((raw ? "false" : "true").utf8)
        JSONText.appendKey("fingerprint", to: &record)
        JSONText.appendString(kept.fingerprint, to: &record)
        record.append(UInt8(ascii: "}"))
    }

    // MARK: The spool

    private func append(_ record: [UInt8], attributed: Bool) throws {
        // Anyone can send unknown keys: their refusals never crowd out a tenant's events.
        if !attributed, self.spool.totalBytes > self.settings.spool.maximumBytes / 2 {
            self.dropped.increment()
            return
        }
        do {
            try self.spool.append(record)
        } catch {
            self.lastFailure.withLock { $0 = (.now, error.description) }
            self.dropped.increment()
            if case .invalidRecord = error {
                self.logger.error(
                    "an audit event too large for the spool was dropped", metadata: ["size": "\(record.count)"])
                return
            }
            guard self.settings.whenFull == .refuse, attributed else {
                self.logger.warning("audit event not recorded", metadata: ["error": "\(error)"])
                return
            }
            throw Problem.auditUnavailable
        }
    }
}

extension Problem {
    /// The node cannot record the query in its audit trail and `audit.when_full` is `refuse`.
    static var auditUnavailable: Problem {
        Problem(
            slug: "audit-unavailable",
            title: "Service Unavailable",
            status: .serviceUnavailable,
            detail:
                "This node cannot record queries in its audit trail right now, and does not answer unrecorded. Retry shortly or on another node.",
            headers: [.retryAfter: "5"]
        )
    }
}
