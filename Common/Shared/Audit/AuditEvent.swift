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

    public var schema: Int
    /// Time-ordered (UUIDv7): the key that makes ingestion idempotent.
    public var id: UUID
    public var time: Date
    public var kind: Kind
    public var tenantID: UUID?
    public var keyID: UUID?
    public var queryID: UUID?
    public var requestID: String?
    public var node: String
    /// `answered`, `cache_exact`, `cache_semantic`, `refused`, `invalid`, `failed`, or for
    /// changes, what was done (`canon_published`, …).
    public var outcome: String
    public var status: Int
    /// The problem's `type` when the outcome is an error.
    public var problemType: String?
    public var question: Question?
    public var answer: String?
    public var citations: [Citation]
    public var canonVersion: String?
    public var modelUsed: String?
    public var route: Route?
    public var fallbackReason: String?
    public var cacheSimilarity: Double?
    public var confidence: Double?
    public var inputTokens: Int?
    public var outputTokens: Int?
    public var costNanoDollars: UInt64?
    /// Milliseconds per stage, as the answer's `timings_ms`.
    public var timingsMs: [String: Double]

    public init(
        id: UUID = UUID.timeOrdered(), time: Date = Date(), kind: Kind, tenantID: UUID?, keyID: UUID? = nil,
        queryID: UUID? = nil, requestID: String? = nil, node: String, outcome: String, status: Int,
        problemType: String? = nil, question: Question? = nil, answer: String? = nil, citations: [Citation] = [],
        canonVersion: String? = nil, modelUsed: String? = nil, route: Route? = nil, fallbackReason: String? = nil,
        cacheSimilarity: Double? = nil, confidence: Double? = nil, inputTokens: Int? = nil, outputTokens: Int? = nil,
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
        self.node = node
        self.outcome = outcome
        self.status = status
        self.problemType = problemType
        self.question = question
        self.answer = answer
        self.citations = citations
        self.canonVersion = canonVersion
        self.modelUsed = modelUsed
        self.route = route
        self.fallbackReason = fallbackReason
        self.cacheSimilarity = cacheSimilarity
        self.confidence = confidence
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.costNanoDollars = costNanoDollars
        self.timingsMs = timingsMs
    }

    enum CodingKeys: String, CodingKey {
        case schema, id, time, kind, node, outcome, status, question, answer, citations, route, confidence
        case tenantID = "tenant_id"
        case keyID = "key_id"
        case queryID = "query_id"
        case requestID = "request_id"
        case problemType = "problem_type"
        case canonVersion = "canon_version"
        case modelUsed = "model_used"
        case fallbackReason = "fallback_reason"
        case cacheSimilarity = "cache_similarity"
        case inputTokens = "input_tokens"
        case outputTokens = "output_tokens"
        case costNanoDollars = "cost_nanodollars"
        case timingsMs = "timings_ms"
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

    static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
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
