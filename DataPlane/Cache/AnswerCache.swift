import Foundation
import Logging
import Metrics
import Shared

/// The answer cache, one façade over three tiers, asked in this order:
///
/// 1. exact, in Redis with the tier's TTL (usually read by the rate limiter's script already);
/// 2. persistent, in PostgreSQL through the control plane (`PersistentAnswerCache`): answers
///    Redis lost to a restart or an eviction;
/// 3. semantic (`SemanticAnswerCache`), for questions without context: the nearest cached
///    question of the same scope, above the similarity threshold.
///
/// A hit of tiers 2 and 3 is written back to the exact tier; a computed answer goes to every tier.
/// The cache never fails a query: errors are counted and logged, and the query is a miss.
final class AnswerCache: Sendable {
    let redis: RedisClient
    private let persistent: PersistentAnswerCache?
    private let semantic: SemanticAnswerCache?
    private let logger: Logger
    private let errors = Counter(label: "zaas_cache_errors_total")
    private let lookups: [CacheOutcome: Counter] = Dictionary(
        uniqueKeysWithValues: CacheOutcome.allCases.map {
            ($0, Counter(label: "zaas_cache_lookups_total", dimensions: [("result", $0.rawValue)]))
        })

    init(
        redis: RedisClient, persistent: PersistentAnswerCache? = nil, semantic: SemanticAnswerCache? = nil,
        logger: Logger
    ) {
        self.redis = redis
        self.persistent = persistent
        self.semantic = semantic
        self.logger = logger
    }

    // MARK: Lookups

    /// The exact tier: the bytes the rate limiter's script read with its decision, or (when it
    /// decided without Redis) a read of its own.
    func exact(_ key: QueryCacheKey, prefetched: RedisPrefetch = .notRead) async -> StoredAnswer? {
        switch prefetched {
        case .read(let bytes): bytes.flatMap { self.validated($0, key: key.redisKey) }
        case .notRead: await self.exact(redisKey: key.redisKey)
        }
    }

    /// The persistent tier, after an exact miss; a hit goes back into Redis for the time it has left.
    func recovered(_ key: QueryCacheKey) async -> StoredAnswer? {
        guard let (stored, remaining) = await self.persistent?.lookup(key) else { return nil }
        await self.storeExact(stored, for: key, ttlSeconds: remaining)
        return stored
    }

    /// The semantic tier, for a question without context: the answer of the nearest cached
    /// question that clears `threshold` (the node's when nil) and the guard, and its similarity.
    /// A neighbour whose answer has expired is forgotten and the next tried, a few times at most.
    func similar(
        _ key: QueryCacheKey, vector: [Float], threshold: Float?, ttlSeconds: UInt32, isKeyTerm: (String) -> Bool
    ) async -> (StoredAnswer, similarity: Float)? {
        guard !key.hasContext, let semantic = self.semantic else { return nil }
        for _ in 0..<4 {
            guard
                let hit = await semantic.lookup(
                    key, vector: vector, threshold: threshold, ttlSeconds: ttlSeconds, isKeyTerm: isKeyTerm)
            else { return nil }
            let neighbour = QueryCacheKey.redisKey(tenant: key.tenant, canonTag: key.canonTag, digest: hit.digest)
            guard let answer = await self.exact(redisKey: neighbour) else {
                semantic.forget(hit.digest, in: key)
                continue
            }
            await self.storeExact(answer, for: key, ttlSeconds: ttlSeconds)
            return (answer, hit.similarity)
        }
        return nil
    }

    // MARK: Storing

    /// A computed answer into every tier: Redis (awaited, so a caller arriving just after finds
    /// it), the semantic index (questions without context, with their `vector`) and the
    /// persistent tier's queue.
    func store(_ answer: StoredAnswer, for key: QueryCacheKey, vector: [Float]? = nil, ttlSeconds: UInt32) async {
        // A TTL of 0 is the tenant's "do not cache": no tier keeps the answer.
        guard ttlSeconds > 0 else { return }
        await self.storeExact(answer, for: key, ttlSeconds: ttlSeconds)
        let semanticVector = key.hasContext ? nil : vector
        if let semanticVector { await self.semantic?.add(key, vector: semanticVector, ttlSeconds: ttlSeconds) }
        self.persistent?.enqueue(.init(key: key, answer: answer, embedding: semanticVector, ttlSeconds: ttlSeconds))
    }

    /// Counts a lookup's outcome: `zaas_cache_lookups_total{result}`. No tenant label: tenant ids
    /// are not metric label values (per-tenant figures belong to the usage records).
    func record(_ outcome: CacheOutcome) {
        self.lookups[outcome]?.increment()
    }

    // MARK: The exact tier in Redis

    func exact(redisKey: String) async -> StoredAnswer? {
        do {
            let reply = try await self.redis.send(["GET", .string(redisKey)])
            return reply.bytes.flatMap { self.validated($0, key: redisKey) }
        } catch {
            self.errors.increment()
            self.logger.debug("answer cache lookup failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    private func validated(_ bytes: [UInt8], key: String) -> StoredAnswer? {
        guard let stored = StoredAnswer(bytes: bytes) else {
            self.errors.increment()
            self.logger.warning("answer cache entry is not a JSON object; ignored", metadata: ["key": "\(key)"])
            return nil
        }
        return stored
    }

    /// One round trip; a Redis that is down fails fast.
    private func storeExact(_ answer: StoredAnswer, for key: QueryCacheKey, ttlSeconds: UInt32) async {
        do {
            try await self.redis.send(["SET", .string(key.redisKey), .bytes(answer.json), "EX", .int(ttlSeconds)])
        } catch {
            self.errors.increment()
            self.logger.debug("answer cache write failed", metadata: ["error": "\(error)"])
        }
    }
}
