import Crypto
import Foundation
import Shared

/// What identifies a cached answer.
///
/// `scope` is everything but the question: the tenant, the canon versions searched (their
/// artifacts' SHA-256, so a published version changes every key and scope at once), the model
/// class and `max_citations`. The semantic cache filters on it exactly before comparing
/// questions. `digest` adds the normalised question and the context's digest: the exact cache's key.
struct QueryCacheKey: Sendable, Hashable {
    let tenant: UUID
    /// The canon versions alone, short: part of every Redis key of the caches, so the keys of
    /// replaced versions can be found and removed (`CacheSweeper`).
    let canonTag: String
    let scope: String
    let digest: String
    /// NFKC, case folded, whitespace collapsed.
    let question: String
    /// The question as the caches keep it and the semantic guard compares it: `question`
    /// redacted and tagged unless the tenant opted in to raw questions (`QuestionPrivacy`; the
    /// pipeline sets it before the tiers that store questions are asked).
    var keptQuestion: String
    /// A query with context is answered from the exact tiers only (never the semantic cache).
    let hasContext: Bool

    init(tenant: UUID, canon: [String], question: String, context: String?, maxCitations: Int, modelClass: String) {
        self.tenant = tenant
        self.canonTag = Self.canonTag(canon)
        self.question = QuestionGuard.normalize(question)
        self.keptQuestion = self.question
        self.hasContext = context != nil
        var scope = SHA256()
        for field in [
            "zaas-answer-cache-v1", tenant.lowercased, canon.joined(separator: "+"), modelClass, String(maxCitations),
        ] {
            Self.frame(field, into: &scope)
        }
        let scopeDigest = Data(scope.finalize())
        self.scope = Hex.encode(scopeDigest.prefix(16))
        var exact = SHA256()
        exact.update(data: scopeDigest)
        Self.frame(self.question, into: &exact)
        // A query without context and one with an empty context are the same query.
        Self.frame(context.map { Hex.encode(SHA256.hash(data: Data($0.utf8))) } ?? "", into: &exact)
        self.digest = Hex.encode(exact.finalize())
    }

    /// The key in Redis; the tenant's hash tag keeps a tenant's cache on one Cluster shard.
    var redisKey: String { Self.redisKey(tenant: self.tenant, canonTag: self.canonTag, digest: self.digest) }

    static func redisKey(tenant: UUID, canonTag: String, digest: String) -> String {
        "zaas:{t:\(tenant.lowercased)}:qc:\(canonTag):\(digest)"
    }

    /// 16 hex digits of the SHA-256 of the canon versions' artifact digests.
    static func canonTag(_ canon: [String]) -> String {
        Hex.encode(SHA256.hash(data: Data(canon.joined(separator: "+").utf8)).prefix(8))
    }

    /// Length-prefixed, so fields cannot run into each other.
    private static func frame(_ field: String, into hash: inout SHA256) {
        let bytes = Data(field.utf8)
        withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { hash.update(bufferPointer: $0) }
        hash.update(data: bytes)
    }
}
