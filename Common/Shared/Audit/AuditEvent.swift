import Foundation

/// One audit event: a query, whatever its outcome, or a change to what a tenant is served (a
/// canon update, an admin action). The shape is versioned (`schema`); docs/audit.md describes
/// every field. Encoded as JSON with snake_case keys, one event per spool record and per line
/// of an export.
public struct AuditEvent: Codable, Sendable, Equatable {
    /// Bumped when a field changes meaning or goes; adding an optional field does not bump it.
    public static let schemaVersion = 1

    public enum Kind: String, Codable, Sendable {
        case query
        case canonUpdate = "canon_update"
        case admin
    }

    /// The question as kept: redacted text (unless the tenant opted in to raw questions) and the
    /// keyed fingerprint that groups repeats.
    public struct Question: Codable, Sendable, Equatable {
        public var text: String
        public var redacted: Bool
        public var fingerprint: String

        public init(text: String, redacted: Bool, fingerprint: String) {
            self.text = text
            self.redacted = redacted
            self.fingerprint = fingerprint
        }
    }

    /// What answered: the answer as the response gave it. Nodes write the answer's stored JSON
    /// here without the passages' text, titles, kinds and scores and the filter's report
    /// (`AuditRecorder.answerDetail`); any other field beyond these is dropped when the control
    /// plane ingests the event.
    public struct Answer: Codable, Sendable, Equatable {
        public var text: String
        public var citations: [Citation]
        public var confidence: Double?
        public var modelUsed: String?
        public var canonVersion: String?
        /// Whether the canon covered the question.
        public var covered: Bool?
        public var route: Route?
        public var fallbackReason: String?

        public init(
            text: String, citations: [Citation], confidence: Double?, modelUsed: String?, canonVersion: String?,
            covered: Bool? = nil, route: Route? = nil, fallbackReason: String? = nil
        ) {
            self.text = text
            self.citations = citations
            self.confidence = confidence
            self.modelUsed = modelUsed
            self.canonVersion = canonVersion
            self.covered = covered
            self.route = route
            self.fallbackReason = fallbackReason
        }

        enum CodingKeys: String, CodingKey {
            case citations, confidence, covered, route
            case text = "answer"
            case modelUsed = "model_used"
            case canonVersion = "canon_version"
            case fallbackReason = "fallback_reason"
        }
    }

    public struct Citation: Codable, Sendable, Equatable {
        public var id: String
        public var canonVersion: String
        public var status: String

        public init(id: String, canonVersion: String, status: String) {
            self.id = id
            self.canonVersion = canonVersion
            self.status = status
        }

        enum CodingKeys: String, CodingKey {
            case id, status
            case canonVersion = "canon_version"
        }
    }

    public struct Route: Codable, Sendable, Equatable {
        public var modelClass: String
        public var complexity: Double?
        public var reason: String

        public init(modelClass: String, complexity: Double?, reason: String) {
            self.modelClass = modelClass
            self.complexity = complexity
            self.reason = reason
        }

        enum CodingKeys: String, CodingKey {
            case modelClass = "class"
            case complexity, reason
        }
    }

    /// What a change event changed: the entity (a table: `tenants`, `api_keys`,
    /// `quota_policies`, `canon_publications`, `model_backends`, …), its id, and the
    /// configuration version that carried it to the nodes.
    public struct Change: Codable, Sendable, Equatable {
        public var entity: String
        public var entityID: String
        public var configVersion: Int64

        public init(entity: String, entityID: String, configVersion: Int64) {
            self.entity = entity
            self.entityID = entityID
            self.configVersion = configVersion
        }

        enum CodingKeys: String, CodingKey {
            case entity
            case entityID = "entity_id"
            case configVersion = "config_version"
        }
    }

    /// Which cache gave a query's answer.
    public enum CacheKind: String, Codable, Sendable, CaseIterable {
        /// Redis's exact tier.
        case exact
        /// PostgreSQL's copy of an exact answer Redis had lost.
        case persistent
        case semantic
        /// No cache: the answer was computed.
        case miss
    }

    /// A query's outcome (`outcome`); changes use their own words (`canon_published`, …).
    public enum Outcome {
        public static let answered = "answered"
        public static let cacheExact = "cache_exact"
        public static let cachePersistent = "cache_persistent"
        public static let cacheSemantic = "cache_semantic"
        /// 401, 403 or 429: the caller may not ask (now).
        public static let refused = "refused"
        /// 400, 413, 415, 422: the request itself is wrong.
        public static let invalid = "invalid"
        /// 5xx: the node could not answer (overloaded, a canon not loaded, a failure).
        public static let failed = "failed"
        /// A streaming caller left before the answer was complete.
        public static let abandoned = "abandoned"

        public static let queryOutcomes: Set<String> = [
            answered, cacheExact, cachePersistent, cacheSemantic, refused, invalid, failed, abandoned,
        ]

        /// The outcome of a query answered with `status` (not 200).
        public static func of(status: Int) -> String {
            switch status {
            case 401, 403, 429: refused
            case 400..<500: invalid
            default: failed
            }
        }
    }

    public var schema: Int
    /// Time-ordered (UUIDv7): the key that makes ingestion idempotent.
    public var id: UUID
    /// When the node recorded it, by the node's clock.
    public var time: Date
    public var kind: Kind
    /// Nil for a query refused before any tenant was known (an invalid key).
    public var tenantID: UUID?
    public var keyID: UUID?
    public var queryID: UUID?
    public var requestID: String?
    /// Who made a change (`operator:<id>`, `admin:<id>`); absent for queries (the key says).
    public var actor: String?
    public var node: String
    /// An `Outcome` for a query; for changes, what was done (`canon_published`, …).
    public var outcome: String
    public var status: Int
    /// The problem's `type` when the outcome is an error.
    public var problemType: String?
    public var question: Question?
    public var answer: Answer?
    public var cache: CacheKind?
    public var cacheSimilarity: Double?
    public var inputTokens: Int?
    public var outputTokens: Int?
    public var costNanoDollars: UInt64?
    /// For a change event: what changed.
    public var change: Change?
    /// Milliseconds per stage, as the answer's `timings_ms`.
    public var timingsMs: [String: Double]

    public init(
        id: UUID = UUID.timeOrdered(), time: Date = Date(), kind: Kind, tenantID: UUID?, keyID: UUID? = nil,
        queryID: UUID? = nil, requestID: String? = nil, actor: String? = nil, node: String, outcome: String,
        status: Int,
        problemType: String? = nil, question: Question? = nil, answer: Answer? = nil, cache: CacheKind? = nil,
        cacheSimilarity: Double? = nil, inputTokens: Int? = nil, outputTokens: Int? = nil,
        costNanoDollars: UInt64? = nil, timingsMs: [String: Double] = [:]
    ) {
        self.schema = Self.schemaVersion
        self.id = id
        self.time = time
        self.kind = kind
        self.tenantID = tenantID
        self.keyID = keyID
        self.queryID = queryID
        self.requestID = requestID
        self.actor = actor
        self.node = node
        self.outcome = outcome
        self.status = status
        self.problemType = problemType
        self.question = question
        self.answer = answer
        self.cache = cache
        self.cacheSimilarity = cacheSimilarity
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.costNanoDollars = costNanoDollars
        self.timingsMs = timingsMs
    }

    enum CodingKeys: String, CodingKey {
        case schema, id, time, kind, node, outcome, status, question, answer, cache, actor, change
        case tenantID = "tenant_id"
        case keyID = "key_id"
        case queryID = "query_id"
        case requestID = "request_id"
        case problemType = "problem_type"
        case cacheSimilarity = "cache_similarity"
        case inputTokens = "input_tokens"
        case outputTokens = "output_tokens"
        case costNanoDollars = "cost_nanodollars"
        case timingsMs = "timings_ms"
    }

    /// Ids in lower case, as everything else in ZaaS writes them (Foundation writes upper case).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.schema, forKey: .schema)
        try container.encode(self.id.lowercased, forKey: .id)
        try container.encode(self.time, forKey: .time)
        try container.encode(self.kind, forKey: .kind)
        try container.encodeIfPresent(self.tenantID?.lowercased, forKey: .tenantID)
        try container.encodeIfPresent(self.keyID?.lowercased, forKey: .keyID)
        try container.encodeIfPresent(self.queryID?.lowercased, forKey: .queryID)
        try container.encodeIfPresent(self.requestID, forKey: .requestID)
        try container.encodeIfPresent(self.actor, forKey: .actor)
        try container.encode(self.node, forKey: .node)
        try container.encode(self.outcome, forKey: .outcome)
        try container.encode(self.status, forKey: .status)
        try container.encodeIfPresent(self.problemType, forKey: .problemType)
        try container.encodeIfPresent(self.question, forKey: .question)
        try container.encodeIfPresent(self.answer, forKey: .answer)
        try container.encodeIfPresent(self.cache, forKey: .cache)
        try container.encodeIfPresent(self.cacheSimilarity, forKey: .cacheSimilarity)
        try container.encodeIfPresent(self.inputTokens, forKey: .inputTokens)
        try container.encodeIfPresent(self.outputTokens, forKey: .outputTokens)
        try container.encodeIfPresent(self.costNanoDollars, forKey: .costNanoDollars)
        try container.encodeIfPresent(self.change, forKey: .change)
        try container.encode(self.timingsMs, forKey: .timingsMs)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.schema = try container.decode(Int.self, forKey: .schema)
        self.id = try container.decode(UUID.self, forKey: .id)
        self.time = try container.decode(Date.self, forKey: .time)
        self.kind = try container.decode(Kind.self, forKey: .kind)
        self.tenantID = try container.decodeIfPresent(UUID.self, forKey: .tenantID)
        self.keyID = try container.decodeIfPresent(UUID.self, forKey: .keyID)
        self.queryID = try container.decodeIfPresent(UUID.self, forKey: .queryID)
        self.requestID = try container.decodeIfPresent(String.self, forKey: .requestID)
        self.actor = try container.decodeIfPresent(String.self, forKey: .actor)
        self.node = try container.decode(String.self, forKey: .node)
        self.outcome = try container.decode(String.self, forKey: .outcome)
        self.status = try container.decode(Int.self, forKey: .status)
        self.problemType = try container.decodeIfPresent(String.self, forKey: .problemType)
        self.question = try container.decodeIfPresent(Question.self, forKey: .question)
        self.answer = try container.decodeIfPresent(Answer.self, forKey: .answer)
        self.cache = try container.decodeIfPresent(CacheKind.self, forKey: .cache)
        self.cacheSimilarity = try container.decodeIfPresent(Double.self, forKey: .cacheSimilarity)
        self.inputTokens = try container.decodeIfPresent(Int.self, forKey: .inputTokens)
        self.outputTokens = try container.decodeIfPresent(Int.self, forKey: .outputTokens)
        self.costNanoDollars = try container.decodeIfPresent(UInt64.self, forKey: .costNanoDollars)
        self.change = try container.decodeIfPresent(Change.self, forKey: .change)
        self.timingsMs = try container.decodeIfPresent([String: Double].self, forKey: .timingsMs) ?? [:]
    }

    /// The encoding of spool records and exports: sorted keys, times in ISO 8601 with milliseconds.
    public static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Self.timeFormat))
        }
        return encoder
    }()

    public static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = try? Date(text, strategy: Self.timeFormat) else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: decoder.codingPath, debugDescription: "not a time: \(text)"))
            }
            return date
        }
        return decoder
    }()

    public static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
}

extension UUID {
    /// A version-7 UUID (RFC 9562): 48 bits of Unix time in milliseconds, then random bits, so
    /// ids sort by creation time (to the millisecond) and never collide in practice.
    public static func timeOrdered(at date: Date = Date()) -> UUID {
        let milliseconds = UInt64(max(0, date.timeIntervalSince1970 * 1000))
        var bytes = [UInt8](repeating: 0, count: 16)
        for index in 0..<6 { bytes[index] = UInt8((milliseconds >> (8 * (5 - UInt64(index)))) & 0xFF) }
        var generator = SystemRandomNumberGenerator()
        for index in 6..<16 { bytes[index] = UInt8.random(in: 0...255, using: &generator) }
        bytes[6] = (bytes[6] & 0x0F) | 0x70  // version 7
        bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 9562 variant
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9],
                bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }

    /// The Unix time in milliseconds of a version-7 UUID; nil for another version.
    public var timeOrderedMilliseconds: UInt64? {
        let bytes = withUnsafeBytes(of: self.uuid) { Array($0) }
        guard bytes[6] >> 4 == 7 else { return nil }
        return bytes[0..<6].reduce(0) { $0 << 8 | UInt64($1) }
    }
}
