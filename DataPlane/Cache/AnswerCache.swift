import Canon
import Common
import Crypto
import Foundation
import HTTPTypes
import Logging
import Metrics
import Synchronization

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

    init(tenant: UUID, canon: [String], question: String, context: String?, maxCitations: Int, modelClass: String) {
        self.tenant = tenant
        self.canonTag = Self.canonTag(canon)
        self.question = QuestionGuard.normalize(question)
        var scope = SHA256()
        for field in [
            "zaas-answer-cache-v1", tenant.lowercased, canon.joined(separator: "+"), modelClass, String(maxCitations),
        ] {
            Self.frame(field, into: &scope)
        }
        let scopeDigest = Data(scope.finalize())
        self.scope = scopeDigest.prefix(16).hex
        var exact = SHA256()
        exact.update(data: scopeDigest)
        Self.frame(self.question, into: &exact)
        // A query without context and one with an empty context are the same query.
        Self.frame(context.map { Data(SHA256.hash(data: Data($0.utf8))).hex } ?? "", into: &exact)
        self.digest = Data(exact.finalize()).hex
    }

    /// The key in Redis; the tenant's hash tag keeps a tenant's cache on one Cluster shard.
    var redisKey: String { Self.redisKey(tenant: self.tenant, canonTag: self.canonTag, digest: self.digest) }

    static func redisKey(tenant: UUID, canonTag: String, digest: String) -> String {
        "zaas:{t:\(tenant.lowercased)}:qc:\(canonTag):\(digest)"
    }

    /// 16 hex digits of the SHA-256 of the canon versions' artifact digests.
    static func canonTag(_ canon: [String]) -> String {
        Data(SHA256.hash(data: Data(canon.joined(separator: "+").utf8))).prefix(8).hex
    }

    /// Length-prefixed, so fields cannot run into each other.
    private static func frame(_ field: String, into hash: inout SHA256) {
        let bytes = Data(field.utf8)
        withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { hash.update(bufferPointer: $0) }
        hash.update(data: bytes)
    }
}

extension Data {
    var hex: String { Hex.encode(self) }
}

/// An answer as the cache keeps it.
struct CachedAnswer: Codable, Sendable, Equatable {
    var answer: String
    var citations: [Citation]
    var confidence: Double
    var modelUsed: String
    var canonVersion: String
    var covered: Bool

    enum CodingKeys: String, CodingKey {
        case answer, citations, confidence, covered
        case modelUsed = "model_used"
        case canonVersion = "canon_version"
    }
}

/// An answer as stored: `CachedAnswer` encoded once, as a JSON object whose fields are the
/// response's. A hit is answered by adding `cache_hit` and a fresh `query_id` to these bytes,
/// without decoding or encoding the answer again.
struct StoredAnswer: Sendable, Equatable {
    let json: [UInt8]

    init(_ answer: CachedAnswer) throws {
        self.json = Array(try AnswerCache.encoder.encode(answer))
    }

    /// Bytes from a cache: accepted when they hold a non-empty JSON object (as this code writes them).
    init?(bytes: [UInt8]) {
        guard bytes.count > 2, bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}") else { return nil }
        self.json = bytes
    }

    var answer: CachedAnswer? { try? AnswerCache.decoder.decode(CachedAnswer.self, from: Data(self.json)) }
}

/// Which cache answered (`X-ZaaS-Cache`).
enum CacheOutcome: String, Sendable {
    case exact, semantic, miss
}

/// The exact answer cache in Redis, with the tier's TTL, and behind it the persistent tier in
/// PostgreSQL (`PersistentAnswerCache`) when the node has one.
///
/// The cache never fails a query: Redis errors are counted and logged, and the query is answered
/// as a miss.
final class AnswerCache: Sendable {
    let redis: RedisClient
    let persistent: PersistentAnswerCache?
    let semantic: SemanticCache?
    private let logger: Logger
    private let errors = Counter(label: "zaas_cache_errors_total")

    init(
        redis: RedisClient, persistent: PersistentAnswerCache? = nil, semantic: SemanticCache? = nil, logger: Logger
    ) {
        self.redis = redis
        self.persistent = persistent
        self.semantic = semantic
        self.logger = logger
    }

    func exact(_ key: QueryCacheKey) async -> StoredAnswer? {
        await self.exact(redisKey: key.redisKey)
    }

    func exact(redisKey: String) async -> StoredAnswer? {
        do {
            let reply = try await self.redis.send(["GET", .string(redisKey)])
            guard let bytes = reply.bytes else { return nil }
            guard let stored = StoredAnswer(bytes: bytes) else {
                self.errors.increment()
                self.logger.warning(
                    "answer cache entry is not a JSON object; ignored", metadata: ["key": "\(redisKey)"])
                return nil
            }
            return stored
        } catch {
            self.errors.increment()
            self.logger.debug("answer cache lookup failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Stores with the TTL. Awaited by the single flight that computed the answer, so a caller
    /// arriving just after it finds the answer rather than computing it again (one round trip;
    /// a Redis that is down fails fast).
    func store(_ answer: StoredAnswer, for key: QueryCacheKey, ttlSeconds: UInt32) async {
        guard ttlSeconds > 0 else { return }
        do {
            try await self.redis.send(["SET", .string(key.redisKey), .bytes(answer.json), "EX", .int(ttlSeconds)])
        } catch {
            self.errors.increment()
            self.logger.debug("answer cache write failed", metadata: ["error": "\(error)"])
        }
    }

    /// Counts a lookup's outcome for the tenant: `zaas_cache_lookups_total{tenant, result}`.
    func record(_ outcome: CacheOutcome, tenant: UUID) {
        Counter(
            label: "zaas_cache_lookups_total",
            dimensions: [("tenant", tenant.lowercased), ("result", outcome.rawValue)]
        ).increment()
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
    static let decoder = JSONDecoder()
}

/// Concurrent identical work on one node done once: the first caller runs it, the others wait
/// for its result.
final class SingleFlight<Value: Sendable>: Sendable {
    private let inFlight = Mutex<[String: Task<Value, any Error>]>([:])

    /// The value, and whether this caller waited for another's work.
    func run(_ key: String, _ work: @escaping @Sendable () async throws -> Value) async throws -> (Value, shared: Bool)
    {
        let (task, shared) = self.inFlight.withLock { flights -> (Task<Value, any Error>, Bool) in
            if let running = flights[key] { return (running, true) }
            // Inserted under the lock before the task can take it to remove itself.
            let task = Task {
                defer { _ = self.inFlight.withLock { $0.removeValue(forKey: key) } }
                return try await work()
            }
            flights[key] = task
            return (task, false)
        }
        return (try await task.value, shared)
    }

    var count: Int { self.inFlight.withLock { $0.count } }
}

extension HTTPField.Name {
    static let zaasCache = HTTPField.Name("X-ZaaS-Cache")!
    static let zaasCacheSimilarity = HTTPField.Name("X-ZaaS-Cache-Similarity")!
}
