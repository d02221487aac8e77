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
