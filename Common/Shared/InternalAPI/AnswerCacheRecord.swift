import Foundation

/// One answer for the persistent answer cache, as a node sends it to the control plane
/// (`POST /internal/v1/cache`; snake_case on the wire).
public struct AnswerCacheRecord: Codable, Sendable, Equatable {
    public var tenantId: UUID
    /// The exact-cache digest (64 hex digits) and the semantic scope (32).
    public var digest: String
    public var scope: String
    /// The normalised question.
    public var question: String
    /// Base64 of the question's embedding (little-endian float32); nil for queries with context.
    public var embedding: String?
    /// The answer as the node caches it: a JSON object, as text.
    public var answer: String
    public var ttlSeconds: Int

    public init(
        tenantId: UUID, digest: String, scope: String, question: String, embedding: String?, answer: String,
        ttlSeconds: Int
    ) {
        self.tenantId = tenantId
        self.digest = digest
        self.scope = scope
        self.question = question
        self.embedding = embedding
        self.answer = answer
        self.ttlSeconds = ttlSeconds
    }
}

extension AnswerCacheRecord {
    /// The persistent cache's limits, in the units its table checks: the question in code points
    /// (`length(question)`), the embedding in bytes, the answer in UTF-8 bytes.
    public static let maximumQuestion = 20_000
    public static let maximumEmbeddingBytes = 16_384
    public static let maximumAnswerBytes = 256 * 1024
    /// As long as a tier or quota policy may set (`cache_ttl_seconds`, up to 30 days); 0 means
    /// "do not cache" and is never sent.
    public static let ttlSeconds: ClosedRange<Int> = 1...2_592_000

    /// Why the control plane would refuse this record for good (the same would fail again), by
    /// field; empty when it would store it. Nodes check before sending, the control plane before
    /// writing, with this one definition.
    public func problems() -> [FieldError] {
        var errors: [FieldError] = []
        if !Hex.isLowercase(self.digest, count: 64) { errors.append(FieldError("digest", "64 hex digits")) }
        if !Hex.isLowercase(self.scope, count: 32) { errors.append(FieldError("scope", "32 hex digits")) }
        if self.question.isEmpty || self.question.unicodeScalars.count > Self.maximumQuestion
            || self.question.utf8.contains(0)
        {
            errors.append(
                FieldError("question", "1 to \(Self.maximumQuestion) code points, without U+0000"))
        }
        if let embedding = self.embedding,
            (Data(base64Encoded: embedding)?.count ?? Self.maximumEmbeddingBytes + 1) > Self.maximumEmbeddingBytes
        {
            errors.append(
                FieldError("embedding", "base64 of at most \(Self.maximumEmbeddingBytes) bytes"))
        }
        if self.answer.utf8.count > Self.maximumAnswerBytes || !Self.isStorableJSONObject(self.answer) {
            errors.append(
                FieldError("answer", "a JSON object of at most 256 KiB without U+0000, as a string"))
        }
        if !Self.ttlSeconds.contains(self.ttlSeconds) {
            errors.append(
                FieldError(
                    "ttl_seconds", "\(Self.ttlSeconds.lowerBound) to \(Self.ttlSeconds.upperBound)"))
        }
        return errors
    }

    /// A JSON object that `jsonb` accepts: it cannot hold U+0000, which JSON can escape as `\u0000`.
    static func isStorableJSONObject(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard !bytes.contains(0), (try? JSONSerialization.jsonObject(with: Data(bytes))) is [String: Any] else {
            return false
        }
        // A backslash always starts an escape in valid JSON, so escapes are found by skipping them.
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\\"), index + 1 < bytes.count {
                if bytes[index + 1] == UInt8(ascii: "u"), index + 5 < bytes.count,
                    bytes[(index + 2)...(index + 5)].elementsEqual("0000".utf8)
                {
                    return false
                }
                index += 2
            } else {
                index += 1
            }
        }
        return true
    }
}

/// The control plane's answer to a batch of `AnswerCacheRecord`s (200): how many it stored, and
/// which it refused for good, by index in the batch, so the node drops those and nothing else.
/// Entries of tenants that no longer exist are neither stored nor refused.
public struct AnswerCacheStoreReply: Codable, Sendable, Equatable {
    public typealias Refused = BatchRefusal

    public var stored: Int
    public var refused: [Refused]

    public init(stored: Int, refused: [Refused]) {
        self.stored = stored
        self.refused = refused
    }
}
