import AsyncHTTPClient
import Canon
import Foundation
import Logging
import NIOCore
import Shared
import TestSupport
import Testing

@testable import DataPlane

@Suite("answer cache: keys, single flight, Redis")
struct AnswerCacheTests {
    static let logger = Logger(label: "test.cache")

    static func key(
        tenant: UUID = UUID(uuidString: "00000000-0000-0000-0000-000000000001")!, canon: [String] = ["aa", "bb"],
        question: String = "What is the Lagrangian?", context: String? = nil, maxCitations: Int = 5,
        modelClass: String = "auto"
    ) -> QueryCacheKey {
        QueryCacheKey(
            tenant: tenant, canon: canon, question: question, context: context, maxCitations: maxCitations,
            modelClass: modelClass)
    }

    @Test("questions are normalised: NFKC, case folded, white space collapsed")
    func normalisation() {
        #expect(QuestionGuard.normalize("  What  is\tＡＩ?\n") == "what is ai?")
        #expect(QuestionGuard.normalize("ÉCOLE") == QuestionGuard.normalize("école"))
        #expect(QuestionGuard.normalize("e\u{301}cole") == QuestionGuard.normalize("école"))
        #expect(QuestionGuard.normalize("x²") == "x2")
        // The ASCII fast path and the general path agree.
        #expect(QuestionGuard.normalize(" A\tb\n\nC  ") == "a b c")
        #expect(QuestionGuard.normalize(" A\tb\n\nC  é") == "a b c é")
        #expect(QuestionGuard.normalize("two examples") != QuestionGuard.normalize("three examples"))
    }

    @Test("the key changes with tenant, canon versions, context, max_citations and model class, not with spelling")
    func keyParts() {
        let base = Self.key()
        #expect(Self.key(question: "  WHAT is the   lagrangian? ").digest == base.digest)
        #expect(Self.key(question: "  WHAT is the   lagrangian? ").scope == base.scope)
        var others: [QueryCacheKey] = [
            Self.key(tenant: UUID()), Self.key(canon: ["aa", "cc"]), Self.key(canon: ["aa"]),
            Self.key(context: "In the lab."), Self.key(maxCitations: 3), Self.key(modelClass: "local"),
            Self.key(question: "What is the Hamiltonian?"),
        ]
        // Fields are framed: moving a boundary between them does not give the same digest.
        others.append(Self.key(canon: ["aab", "b"]))
        for other in others { #expect(other.digest != base.digest) }
        #expect(Set(others.map(\.digest)).count == others.count)
        // The scope leaves out the question and the context.
        #expect(Self.key(question: "Anything else?", context: "ctx").scope == base.scope)
        #expect(Self.key(tenant: UUID()).scope != base.scope)
        #expect(base.redisKey == "zaas:{t:00000000-0000-0000-0000-000000000001}:qc:\(base.canonTag):\(base.digest)")
        #expect(base.canonTag.count == 16 && Self.key(canon: ["aa", "cc"]).canonTag != base.canonTag)
        #expect(Self.key(question: "other", maxCitations: 2).canonTag == base.canonTag)
        // The sweeper reads tenant and canon tag back from both kinds of key.
        let tenant = UUID(uuidString: "00000000-0000-0000-0000-000000000001")!
        #expect(CacheSweeper.parse(base.redisKey).map { "\($0.0) \($0.1)" } == "\(tenant) \(base.canonTag)")
        #expect(
            CacheSweeper.parse(SemanticAnswerCache.streamKey(base)).map { "\($0.0) \($0.1)" }
                == "\(tenant) \(base.canonTag)")
        #expect(CacheSweeper.parse("zaas:{t:nope}:qc:x:y") == nil)
        #expect(base.digest.count == 64 && base.scope.count == 32)
    }

    @Test("an answer stored in Redis comes back equal with the tier's TTL; Redis down is a miss, not an error")
    func redisRoundTrip() async throws {
        let redis = RedisClient(configuration: TestEnvironment.shared.redis, logger: Self.logger)
        let cache = AnswerCache(redis: redis, logger: Self.logger)
        let key = Self.key(tenant: UUID())
        let answer = CachedAnswer(
            answer: "The Lagrangian is T − V [1].",
            citations: [
                Citation(
                    id: "def.lagrangian", title: "Lagrangian", kind: .definition, status: .proven,
                    snippet: "L = T - V", score: 0.9, canonVersion: "base-v1")
            ], confidence: 0.8, modelUsed: "zora-extractive-local", canonVersion: "base-v1", covered: true)
        #expect(await cache.exact(key) == nil)
        await cache.store(try StoredAnswer(answer), for: key, ttlSeconds: 300)
        #expect(await cache.exact(key)?.answer == answer)
        // Bytes that are not an object are ignored, not served.
        try await redis.send(["SET", .string(key.redisKey), "garbage", "EX", 60])
        #expect(await cache.exact(key) == nil)
        await cache.store(try StoredAnswer(answer), for: key, ttlSeconds: 300)
        let ttl = try #require(try await redis.send(["TTL", .string(key.redisKey)]).int)
        #expect(ttl > 290 && ttl <= 300)
        await redis.shutdown()

        var closed = TestEnvironment.shared.redis
        closed.port = try RedisServerProcess.freePort()
        let down = RedisClient(configuration: closed, logger: Self.logger)
        let unavailable = AnswerCache(redis: down, logger: Self.logger)
        await unavailable.store(try StoredAnswer(answer), for: key, ttlSeconds: 300)
        #expect(await unavailable.exact(key) == nil)
        await down.shutdown()
    }

    @Test(
        "the persistent writer sends only what the control plane can keep: not a TTL of 0 (never queued) or past the maximum, not a question whose NFKC form passes the column's limit (dropped when sent, never retried); a transient failure keeps the rest"
    )
    func persistentWriterQueue() async throws {
        // Nothing listens on port 9 (discard): the control plane is unreachable.
        let control = ControlPlaneClient(
            settings: .init(url: "http://127.0.0.1:9", nodeToken: "unused", timeout: .seconds(2)),
            httpClient: .shared)
        let writer = PersistentAnswerCache(control: control, isReachable: { true }, logger: Self.logger)
        let redis = RedisClient(configuration: TestEnvironment.shared.redis, logger: Self.logger)
        let cache = AnswerCache(redis: redis, persistent: writer, logger: Self.logger)
        let answer = try StoredAnswer(
            CachedAnswer(
                answer: "No.", citations: [], confidence: 0, modelUsed: "zora-extractive-local",
                canonVersion: "base-v1", covered: false))
        let tenant = UUID()

        await cache.store(answer, for: Self.key(tenant: tenant, question: "zero"), ttlSeconds: 0)
        #expect(writer.pendingCount == 0)
        // Unsendable answers are only queued (the query path does no more); the flush drops them
        // without asking the control plane, so nothing is retried for them.
        await cache.store(answer, for: Self.key(tenant: tenant, question: "too long"), ttlSeconds: 2_592_001)
        #expect(writer.pendingCount == 1)
        #expect(await writer.flush() == true)
        #expect(writer.pendingCount == 0)
        // U+FDFA is one code point that NFKC turns into eighteen: 1,200 of them pass the query's
        // limit (4,000) but not the cache column's (20,000).
        let expanding = Self.key(tenant: tenant, question: String(repeating: "\u{FDFA}", count: 1200))
        #expect(expanding.question.unicodeScalars.count > AnswerCacheRecord.maximumQuestion)
        await cache.store(answer, for: expanding, ttlSeconds: 60)
        await cache.store(answer, for: Self.key(tenant: tenant, question: "fine"), ttlSeconds: 60)
        #expect(writer.pendingCount == 2)
        // The control plane is down: the good answer stays queued for the next round, the
        // expanding one is gone for good.
        #expect(await writer.flush() == false)
        #expect(writer.pendingCount == 1)
        await redis.shutdown()
    }
}
