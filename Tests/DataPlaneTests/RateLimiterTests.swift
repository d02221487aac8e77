import Foundation
import HTTPTypes
import Logging
import NIOCore
import Shared
import TestSupport
import Testing

@testable import DataPlane

/// The limiter's arithmetic and its Redis script, against the shared redis-server (each test's
/// buckets belong to a fresh tenant id) or a private one that tests kill.
@Suite("rate limiter: token buckets in Redis, the local fallback")
struct RateLimiterTests {
    static let logger = Logger(label: "test.ratelimit")

    static func withLimiter<Result: Sendable>(
        _ configuration: RedisConfiguration = TestEnvironment.shared.redis,
        fallback: RateLimiter.Fallback = .local,
        liveNodes: Int? = 1,
        _ body: (RateLimiter, RedisClient) async throws -> Result
    ) async throws -> Result {
        let redis = RedisClient(configuration: configuration, logger: Self.logger)
        let limiter = RateLimiter(
            redis: redis, settings: .init(fallback: fallback, probeInterval: .milliseconds(100)),
            liveNodes: { liveNodes }, logger: Self.logger)
        let prober = Task { try await limiter.run() }
        defer { prober.cancel() }
        do {
            let result = try await body(limiter, redis)
            await redis.shutdown()
            return result
        } catch {
            await redis.shutdown()
            throw error
        }
    }

    static func policy(_ perKey: UInt32, tenant: UInt32? = nil) -> TenantPolicy {
        var policy = ConfigFixtures.policy(queriesPerHour: perKey)
        policy.tenantQueriesPerHour = tenant
        return policy
    }

    @Test("a key gets exactly its limit; the headers count down; the refusal says when one query fits again")
    func countsDown() async throws {
        try await Self.withLimiter { limiter, redis in
            let buckets = RateLimitBucket.buckets(key: UUID(), tenant: UUID(), policy: Self.policy(5))
            var remaining: [Int] = []
            for _ in 0..<5 {
                let decision = try await limiter.decide(buckets)
                #expect(decision.admitted && decision.limit == 5 && decision.source == .redis)
                remaining.append(decision.remaining)
            }
            #expect(remaining == [4, 3, 2, 1, 0])
            let refused = try await limiter.decide(buckets)
            #expect(!refused.admitted)
            #expect(refused.remaining == 0)
            // One query comes back every 720 s; the bucket is full again after 5 of them. (The
            // seconds the five queries took count down both; a loaded machine takes several.)
            #expect((700...720).contains(refused.retryAfter), "\(refused.retryAfter)")
            #expect((3580...3600).contains(refused.reset), "\(refused.reset)")
            #expect(refused.headers[.retryAfter] == String(refused.retryAfter))
            #expect(refused.headers[.rateLimitRemaining] == "0")
            // The same script reads a key of the tenant when it admits (the answer cache), not when it refuses.
            let tenant = UUID()
            let fetching = RateLimitBucket.buckets(key: UUID(), tenant: tenant, policy: Self.policy(1))
            let cacheKey = "zaas:{t:\(tenant.lowercased)}:qc:test"
            try await redis.send(["SET", .string(cacheKey), "cached", "EX", 60])
            let admitted = try await limiter.decide(fetching, fetching: cacheKey)
            #expect(admitted.decision.admitted && admitted.fetched == .read(Array("cached".utf8)))
            let refusedFetch = try await limiter.decide(fetching, fetching: cacheKey)
            #expect(!refusedFetch.decision.admitted && refusedFetch.fetched == .read(nil))
            let missing = try await limiter.decide(
                RateLimitBucket.buckets(key: UUID(), tenant: tenant, policy: Self.policy(5)), fetching: cacheKey + "x")
            #expect(missing.decision.admitted && missing.fetched == .read(nil))
            // Reading (cost 0) spends nothing.
            let other = RateLimitBucket.buckets(key: UUID(), tenant: UUID(), policy: Self.policy(5))
            for _ in 0..<3 { #expect(try await limiter.decide(other, cost: 0).remaining == 5) }
        }
    }

    @Test("three limiters on separate connections, 300 concurrent requests: exactly the limit admitted")
    func concurrentExactness() async throws {
        let buckets = RateLimitBucket.buckets(key: UUID(), tenant: UUID(), policy: Self.policy(37))
        let admitted = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    try await Self.withLimiter { limiter, _ in
                        try await withThrowingTaskGroup(of: Bool.self) { requests in
                            for _ in 0..<100 { requests.addTask { try await limiter.decide(buckets).admitted } }
                            return try await requests.reduce(0) { $0 + ($1 ? 1 : 0) }
                        }
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(admitted == 37)
    }

    @Test("the tenant bucket binds across keys, and a refusal by either bucket spends from neither")
    func tenantBucket() async throws {
        try await Self.withLimiter { limiter, redis in
            let tenant = UUID()
            let policy = Self.policy(2, tenant: 3)
            let first = RateLimitBucket.buckets(key: UUID(), tenant: tenant, policy: policy)
            let second = RateLimitBucket.buckets(key: UUID(), tenant: tenant, policy: policy)
            #expect(first.count == 2 && first[1].name == "zaas:{t:\(tenant.lowercased)}:rl:t")
            #expect(first[0].name.hasPrefix("zaas:{t:\(tenant.lowercased)}:rl:k:"))
            // Key 1: two queries, then its own bucket refuses; the tenant bucket keeps its third.
            #expect(try await limiter.decide(first).admitted)
            let headers = try await limiter.decide(first)
            #expect(headers.admitted && headers.limit == 2 && headers.remaining == 0)
            #expect(try await limiter.decide(first).admitted == false)
            // Key 2: the tenant's third, then the tenant bucket refuses (its headers say so).
            let third = try await limiter.decide(second)
            #expect(third.admitted && third.limit == 3 && third.remaining == 0)
            let refused = try await limiter.decide(second)
            #expect(!refused.admitted && refused.limit == 3)
            // Key 2's own bucket was not charged for the refusal: one spent of two.
            let tat = try await redis.send(["HGET", .string(second[0].name), "tat"])
            let time = try #require(try await redis.send(["TIME"]).array?.compactMap(\.int))
            let debt = Double(try #require(tat.int)) - Double(time[0] * 1_000_000 + time[1])
            #expect(debt > 1_700_000_000 && debt <= 1_800_000_000, "\(debt) µs")
        }
    }

    @Test("no tenant limit in the policy: the tenant still has one bucket, so more keys never mean more queries")
    func keysDoNotMultiplyTheQuota() async throws {
        try await Self.withLimiter { limiter, _ in
            let tenant = UUID()
            // A Free tenant as an older snapshot describes it: 10 per key, no tenant-wide limit.
            let policy = Self.policy(10)
            var admitted = 0
            for _ in 0..<5 {
                let buckets = RateLimitBucket.buckets(key: UUID(), tenant: tenant, policy: policy)
                #expect(buckets.map(\.limit) == [10, 10])
                for _ in 0..<4 {
                    if try await limiter.decide(buckets).admitted { admitted += 1 }
                }
            }
            #expect(admitted == 10)
        }
    }

    @Test("a new policy keeps what was used: upgrades add the difference, downgrades never go below zero")
    func policyChange() async throws {
        try await Self.withLimiter { limiter, _ in
            let key = UUID()
            let tenant = UUID()
            for _ in 0..<4 {
                _ = try await limiter.decide(RateLimitBucket.buckets(key: key, tenant: tenant, policy: Self.policy(10)))
            }
            let upgraded = try await limiter.decide(
                RateLimitBucket.buckets(key: key, tenant: tenant, policy: Self.policy(100)), cost: 0)
            #expect(upgraded.limit == 100 && upgraded.remaining == 96)
            let downgraded = try await limiter.decide(
                RateLimitBucket.buckets(key: key, tenant: tenant, policy: Self.policy(6)))
            #expect(downgraded.admitted && downgraded.limit == 6 && downgraded.remaining == 1)
            let below = try await limiter.decide(
                RateLimitBucket.buckets(key: key, tenant: tenant, policy: Self.policy(3)))
            #expect(!below.admitted && below.remaining == 0)
        }
    }

    @Test("a bucket's key expires when the bucket would be full again; a missing key is a full bucket")
    func idleExpiry() async throws {
        try await Self.withLimiter { limiter, redis in
            let buckets = RateLimitBucket.buckets(key: UUID(), tenant: UUID(), policy: Self.policy(60))
            _ = try await limiter.decide(buckets)
            _ = try await limiter.decide(buckets)
            // Two queries of 60/h are back in two minutes: the key expires then (+1 s of margin).
            let ttl = try #require(try await redis.send(["PTTL", .string(buckets[0].name)]).int)
            #expect(ttl > 110_000 && ttl <= 121_000, "\(ttl) ms")
            let reading = try await limiter.decide(buckets, cost: 0)
            #expect(reading.remaining == 58 && (110...120).contains(reading.reset), "\(reading)")
            try await redis.send(["DEL", .string(buckets[0].name), .string(buckets[1].name)])
            #expect(try await limiter.decide(buckets, cost: 0).remaining == 60)
        }
    }

    @Test(
        "Redis down: each node admits its share (limit / live nodes), seeded by what Redis last said; back in Redis once it answers"
    )
    func localFallback() async throws {
        let server = try RedisServerProcess()
        try await server.start()
        defer { server.stop() }
        var configuration = TestEnvironment.shared.redis
        configuration.port = server.port
        configuration.password = nil
        configuration.reconnectBackoff = .milliseconds(50)
        try await Self.withLimiter(configuration, liveNodes: 3) { limiter, redis in
            // Connected before counting (a first connect on a busy machine can be slow).
            _ = try await redis.ping()
            let fresh = RateLimitBucket.buckets(key: UUID(), tenant: UUID(), policy: Self.policy(10))
            let used = RateLimitBucket.buckets(key: UUID(), tenant: UUID(), policy: Self.policy(10))
            for _ in 0..<7 { #expect(try await limiter.decide(used).admitted) }
            try await server.kill()

            // Fresh key: 10 / 3 nodes = 3 here. The used key: Redis said 3 left, 3 / 3 nodes = 1.
            var admittedFresh = 0
            var admittedUsed = 0
            for _ in 0..<10 {
                let decision = try await limiter.decide(fresh)
                #expect(decision.source == .local && decision.limit == 3)
                admittedFresh += decision.admitted ? 1 : 0
                admittedUsed += try await limiter.decide(used).admitted ? 1 : 0
            }
            #expect(admittedFresh == 3)
            #expect(admittedUsed == 1)
            guard case .fallback = limiter.mode else {
                Issue.record("not in fallback")
                return
            }

            try await server.start()
            let back = try await TestHTTP.waitUntil(timeout: .seconds(10)) { limiter.mode == .redis }
            #expect(back != nil)
            // What the node admitted on its own was charged to Redis on return: 10 - 3 - 1 left
            // for the fresh key, 10 - 7 - 1 - 1 for the used one.
            let decision = try await limiter.decide(fresh)
            #expect(decision.source == .redis && decision.limit == 10 && decision.remaining == 6)
            #expect(try await limiter.decide(used).remaining == 1)
        }
    }

    @Test("Redis down with the refuse setting: 503 rate-limiter-unavailable with Retry-After")
    func refuseFallback() async throws {
        var configuration = TestEnvironment.shared.redis
        configuration.port = try RedisServerProcess.freePort()
        configuration.reconnectBackoff = .milliseconds(50)
        try await Self.withLimiter(configuration, fallback: .refuse) { limiter, _ in
            let buckets = RateLimitBucket.buckets(key: UUID(), tenant: UUID(), policy: Self.policy(10))
            await #expect(throws: Problem.rateLimiterUnavailable) { try await limiter.decide(buckets) }
            #expect(Problem.rateLimiterUnavailable.status == .serviceUnavailable)
            #expect(Problem.rateLimiterUnavailable.headers[.retryAfter] == "1")
        }
    }

    @Test("the local buckets do the same arithmetic as the script, and a new share keeps what was used")
    func localArithmetic() {
        var buckets = LocalBuckets()
        let start = ContinuousClock.now
        var remaining: [Int] = []
        for _ in 0..<4 {
            let (admitted, _, states) = buckets.spend(
                [.init(name: "a", limit: 12, share: 4, initial: 4)], cost: 1, now: start)
            #expect(admitted)
            remaining.append(states[0].remaining)
        }
        #expect(remaining == [3, 2, 1, 0])
        let (refused, retry, _) = buckets.spend(
            [.init(name: "a", limit: 12, share: 4, initial: 4)], cost: 1, now: start)
        #expect(!refused && retry == 900)
        // 15 minutes later one query is back.
        let later = start + .seconds(900)
        #expect(buckets.spend([.init(name: "a", limit: 12, share: 4, initial: 4)], cost: 1, now: later).0)
        // Twice the share: the 4 used carry over, 4 more are free.
        let (_, _, doubled) = buckets.spend([.init(name: "a", limit: 24, share: 8, initial: 8)], cost: 0, now: later)
        #expect(doubled[0].remaining == 4)
        // Seeded with 1 left of a share of 4.
        let (_, _, seeded) = buckets.spend([.init(name: "b", limit: 12, share: 4, initial: 1)], cost: 0, now: start)
        #expect(seeded[0].remaining == 1)
        #expect(buckets.admitted.map { "\($0.name) \($0.limit) \($0.count)" } == ["a 24 5"])
        buckets.forgetFull(now: start + .seconds(7200))
        let (_, _, forgotten) = buckets.spend(
            [.init(name: "a", limit: 12, share: 4, initial: 4)], cost: 0, now: start + .seconds(7200))
        #expect(forgotten[0].remaining == 4)
    }
}
