import Common
import Foundation
import HTTPTypes
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// One token bucket: a name shared by every node, and its size in queries per hour.
///
/// Capacity is the hourly limit and it refills continuously (one query every `3600 / limit`
/// seconds), so a key may spend its whole hour at once and then gets a query back at the steady
/// rate.
public struct RateLimitBucket: Sendable, Hashable {
    /// The Redis key. Every bucket of a tenant carries the tenant in a hash tag, so one script
    /// can update a key's bucket and its tenant's bucket on one Redis Cluster shard.
    public let name: String
    public let limit: Int

    public static func key(_ key: UUID, tenant: UUID, limit: UInt32) -> RateLimitBucket {
        RateLimitBucket(name: "zaas:{t:\(tenant.lowercased)}:rl:k:\(key.lowercased)", limit: Int(limit))
    }

    public static func tenant(_ tenant: UUID, limit: UInt32) -> RateLimitBucket {
        RateLimitBucket(name: "zaas:{t:\(tenant.lowercased)}:rl:t", limit: Int(limit))
    }

    /// The buckets a query of this key spends from: the key's, and the tenant's when its policy has one.
    public static func buckets(key: UUID, tenant: UUID, policy: TenantPolicy) -> [RateLimitBucket] {
        [.key(key, tenant: tenant, limit: policy.queriesPerHour)]
            + (policy.tenantQueriesPerHour.map { [.tenant(tenant, limit: $0)] } ?? [])
    }
}

extension UUID {
    var lowercased: String { self.uuidString.lowercased() }
}

/// What the limiter decided, and what the `RateLimit-*` headers say.
public struct RateLimitDecision: Sendable, Equatable {
    public enum Source: String, Sendable {
        /// The shared buckets in Redis: exact across all nodes.
        case redis
        /// This node's share while Redis is unreachable.
        case local
    }

    public var admitted: Bool
    /// The limit of the bucket the headers describe: the one with fewer queries left.
    public var limit: Int
    public var remaining: Int
    /// Seconds until that bucket is full again.
    public var reset: Int
    /// When refused: seconds until one query fits in every bucket.
    public var retryAfter: Int
    public var source: Source

    /// The `RateLimit-*` headers, and `Retry-After` when refused.
    var headers: HTTPFields {
        var fields: HTTPFields = [
            .rateLimitLimit: String(self.limit), .rateLimitRemaining: String(self.remaining),
            .rateLimitReset: String(self.reset),
        ]
        if !self.admitted { fields[.retryAfter] = String(self.retryAfter) }
        return fields
    }
}

/// The per-key and per-tenant token buckets of the query API.
///
/// Normally every decision is one Lua script in Redis (`RateLimitScript`), atomic across both
/// buckets and timed by Redis's own clock, so any number of nodes together admit exactly the
/// limit. When Redis cannot be reached the `fallback` setting decides: `.local` admits from a
/// bucket in this node's memory holding its share of the limit (the limit divided by the live
/// node count from the node registry, at least one query) and reports `degraded`; `.refuse`
/// answers 503. A background probe returns the node to Redis as soon as Redis answers again.
public final class RateLimiter: Service, Sendable {
    public enum Fallback: String, Sendable, CaseIterable {
        case local
        case refuse
    }

    public struct Settings: Sendable {
        public var fallback: Fallback = .local
        /// How often Redis is tried while the node runs on its local buckets.
        public var probeInterval: Duration = .milliseconds(500)

        public init(fallback: Fallback = .local, probeInterval: Duration = .milliseconds(500)) {
            self.fallback = fallback
            self.probeInterval = probeInterval
        }
    }

    enum Mode: Sendable, Equatable {
        case redis
        /// Redis failed at `since`; decisions come from the local buckets (or are refused).
        case fallback(since: Date, reason: String)
    }

    private struct State {
        var mode: Mode = .redis
        var local = LocalBuckets()
        /// The last remaining count Redis gave for each bucket this node used: a local bucket
        /// starts from its share of that, not from a full share.
        var lastSeen: [String: (remaining: Int, at: ContinuousClock.Instant)] = [:]
    }

    let redis: RedisClient
    let settings: Settings
    /// The live node count from the node registry (nil before the control plane has answered).
    let liveNodes: @Sendable () -> Int?
    private let logger: Logger
    private let state = Mutex(State())
    private let clock = ContinuousClock()
    private let admittedRedis = Counter(
        label: "zaas_rate_limit_decisions_total", dimensions: [("outcome", "admitted"), ("source", "redis")])
    private let limitedRedis = Counter(
        label: "zaas_rate_limit_decisions_total", dimensions: [("outcome", "limited"), ("source", "redis")])
    private let admittedLocal = Counter(
        label: "zaas_rate_limit_decisions_total", dimensions: [("outcome", "admitted"), ("source", "local")])
    private let limitedLocal = Counter(
        label: "zaas_rate_limit_decisions_total", dimensions: [("outcome", "limited"), ("source", "local")])
    private let refused = Counter(label: "zaas_rate_limit_unavailable_total")
    private let fallbackGauge = Gauge(label: "zaas_rate_limit_fallback")

    public init(
        redis: RedisClient, settings: Settings, liveNodes: @escaping @Sendable () -> Int?, logger: Logger
    ) {
        self.redis = redis
        self.settings = settings
        self.liveNodes = liveNodes
        self.logger = logger
    }

    var mode: Mode { self.state.withLock { $0.mode } }

    /// Spends `cost` queries from every bucket, or none if any bucket lacks them. A cost of 0
    /// reads the buckets without spending (for the headers of a refused request).
    public func decide(_ buckets: [RateLimitBucket], cost: Int = 1) async throws -> RateLimitDecision {
        try await self.decide(buckets, cost: cost, fetching: nil).decision
    }

    /// Decides, and when the query is admitted also reads `fetching` (a key of the same tenant:
    /// the exact answer cache) in the same script, saving a round trip on the query path. The
    /// value is nil when the key is missing, the query refused, or the decision made locally.
    public func decide(_ buckets: [RateLimitBucket], cost: Int = 1, fetching: String?) async throws -> (
        decision: RateLimitDecision, fetched: [UInt8]?
    ) {
        precondition(!buckets.isEmpty && buckets.count <= 2, "a key bucket and at most a tenant bucket")
        if case .redis = self.mode {
            do {
                let (decision, fetched) = try await self.decideInRedis(buckets, cost: cost, fetching: fetching)
                if cost > 0 { (decision.admitted ? self.admittedRedis : self.limitedRedis).increment() }
                return (decision, fetched)
            } catch {
                self.enterFallback(reason: Self.describe(error))
            }
        }
        guard self.settings.fallback == .local else {
            self.refused.increment()
            throw Problem.rateLimiterUnavailable
        }
        let decision = self.decideLocally(buckets, cost: cost)
        if cost > 0 { (decision.admitted ? self.admittedLocal : self.limitedLocal).increment() }
        return (decision, nil)
    }

    /// Probes Redis while in fallback, and forgets what has gone idle.
    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.settings.probeInterval)
                if case .fallback = self.mode, (try? await self.redis.ping()) != nil {
                    await self.returnToRedis()
                }
                self.forgetIdle()
            }
        }
    }

    // MARK: Redis

    private func decideInRedis(_ buckets: [RateLimitBucket], cost: Int, fetching: String?) async throws -> (
        RateLimitDecision, [UInt8]?
    ) {
        let reply = try await self.redis.evaluate(
            RateLimitScript.script, keys: buckets.map { .string($0.name) } + (fetching.map { [.string($0)] } ?? []),
            arguments: [.int(cost), .int(buckets.count)] + buckets.map { .int($0.limit) })
        let parts = reply.array ?? []
        let count = 2 + 3 * buckets.count
        let values = parts.prefix(count).compactMap(\.int)
        guard values.count == count else {
            throw RedisError.protocolError("unexpected rate-limit script reply \(reply)")
        }
        let fetched = parts.count > count ? parts[count].bytes : nil
        let states = buckets.indices.map { index in
            BucketState(
                limit: Int(values[2 + 3 * index]), remaining: Int(values[3 + 3 * index]),
                reset: Int(values[4 + 3 * index]))
        }
        let now = self.clock.now
        self.state.withLock { state in
            for (bucket, bucketState) in zip(buckets, states) {
                state.lastSeen[bucket.name] = (bucketState.remaining, now)
            }
        }
        return (
            Self.decision(admitted: values[0] == 1, retryAfter: Int(values[1]), states: states, source: .redis), fetched
        )
    }

    struct BucketState {
        var limit: Int
        var remaining: Int
        public var reset: Int
    }

    /// The headers describe the bucket with the fewest queries left (the key's on a tie).
    static func decision(admitted: Bool, retryAfter: Int, states: [BucketState], source: RateLimitDecision.Source)
        -> RateLimitDecision
    {
        let binding = states.min { $0.remaining < $1.remaining }!
        return RateLimitDecision(
            admitted: admitted, limit: binding.limit, remaining: binding.remaining, reset: binding.reset,
            retryAfter: admitted ? 0 : max(1, retryAfter), source: source)
    }

    // MARK: Fallback

    private func enterFallback(reason: String) {
        let entered = self.state.withLock { state -> Bool in
            guard case .redis = state.mode else { return false }
            state.mode = .fallback(since: Date(), reason: reason)
            state.local = LocalBuckets()
            return true
        }
        guard entered else { return }
        self.fallbackGauge.record(1)
        self.logger.warning(
            "Redis unreachable; rate limits fall back",
            metadata: ["reason": "\(reason)", "fallback": "\(self.settings.fallback.rawValue)"])
    }

    /// Back to Redis once it holds what this node admitted on its own meanwhile (charged even
    /// past the limit: those queries were served), so the hour's count stays whole. A charge
    /// that fails leaves the node on its local buckets until the next probe.
    private func returnToRedis() async {
        for _ in 0..<10 {
            let pending = self.state.withLock { state -> [(name: String, limit: Int, count: Int)]? in
                let pending = state.local.admitted
                guard pending.isEmpty else { return pending }
                state.mode = .redis
                state.local = LocalBuckets()
                return nil
            }
            guard let pending else {
                self.fallbackGauge.record(0)
                self.logger.notice("Redis reachable again; rate limits shared through Redis")
                return
            }
            for (name, limit, count) in pending {
                do {
                    try await self.redis.evaluate(
                        RateLimitScript.script, keys: [.string(name)],
                        arguments: [.int(count), 1, .int(limit), "force"])
                    self.state.withLock { $0.local.charged(name, count: count) }
                } catch {
                    self.logger.info(
                        "Redis not ready to take the queries admitted during its outage; retrying",
                        metadata: ["error": "\(Self.describe(error))"])
                    return
                }
            }
        }
    }

    private func decideLocally(_ buckets: [RateLimitBucket], cost: Int) -> RateLimitDecision {
        let nodes = max(1, self.liveNodes() ?? 1)
        let now = self.clock.now
        return self.state.withLock { state in
            let shares = buckets.map { bucket in
                let share = max(1, bucket.limit / nodes)
                // What Redis last said is left, divided among the nodes, if that is less.
                let seeded = state.lastSeen[bucket.name].map { min(share, $0.remaining / nodes) } ?? share
                return LocalBuckets.Share(name: bucket.name, limit: bucket.limit, share: share, initial: seeded)
            }
            let (admitted, retryAfter, states) = state.local.spend(shares, cost: cost, now: now)
            return Self.decision(admitted: admitted, retryAfter: retryAfter, states: states, source: .local)
        }
    }

    private func forgetIdle() {
        let now = self.clock.now
        self.state.withLock { state in
            state.lastSeen = state.lastSeen.filter { now - $0.value.at < .seconds(3600) }
            state.local.forgetFull(now: now)
        }
    }

    static func describe(_ error: any Error) -> String {
        (error as? RedisError)?.description ?? "\(error)"
    }
}

/// Token buckets in this node's memory, with the same arithmetic as the Redis script (GCRA: a
/// bucket is the time at which it will be full again).
struct LocalBuckets {
    private struct Bucket {
        /// When the bucket is full again.
        var full: ContinuousClock.Instant
        var share: Int
        /// The bucket's whole limit, and the queries admitted here: charged to Redis on return.
        var limit: Int
        var admitted = 0
    }

    struct Share {
        var name: String
        var limit: Int
        /// This node's part of the limit.
        var share: Int
        /// Queries left at the start: the share, or less when Redis said less was left.
        var initial: Int
    }

    private var buckets: [String: Bucket] = [:]

    /// Queries admitted here, per bucket, with the bucket's limit.
    var admitted: [(name: String, limit: Int, count: Int)] {
        self.buckets.filter { $0.value.admitted > 0 }.map { ($0.key, $0.value.limit, $0.value.admitted) }
    }

    mutating func spend(_ shares: [Share], cost: Int, now: ContinuousClock.Instant) -> (
        Bool, Int, [RateLimiter.BucketState]
    ) {
        let period = Duration.seconds(3600)
        var admitted = true
        var retryAfter = Duration.zero
        var next: [(String, Bucket, Duration)] = []
        for entry in shares {
            let interval = period / entry.share
            let used = entry.share - min(entry.share, max(0, entry.initial))
            var bucket =
                self.buckets[entry.name]
                ?? Bucket(full: now + interval * used, share: entry.share, limit: entry.limit)
            if bucket.share != entry.share {
                // A new share (more or fewer live nodes, a new policy): what was used carries over.
                let debt = max(.zero, bucket.full - now)
                bucket.full = now + debt * (Double(bucket.share) / Double(entry.share))
                bucket.share = entry.share
                bucket.limit = entry.limit
            }
            bucket.full = max(bucket.full, now)
            self.buckets[entry.name] = bucket
            var spent = bucket
            spent.full = bucket.full + interval * cost
            spent.admitted += cost
            if spent.full - now > period + .microseconds(1) {
                admitted = false
                retryAfter = max(retryAfter, spent.full - now - period)
            }
            next.append((entry.name, spent, interval))
        }
        var states: [RateLimiter.BucketState] = []
        for (name, spent, interval) in next {
            if admitted && cost > 0 { self.buckets[name] = spent }
            let used = max(.zero, self.buckets[name]!.full - now)
            states.append(
                .init(
                    limit: spent.share, remaining: max(0, Int(((period - used) / interval) + 1e-6)),
                    reset: Int((used / .seconds(1)).rounded(.up))))
        }
        return (admitted, Int((retryAfter / .seconds(1)).rounded(.up)), states)
    }

    /// `count` of the queries admitted here are now counted in Redis.
    mutating func charged(_ name: String, count: Int) {
        self.buckets[name]?.admitted -= count
    }

    /// A full bucket that admitted nothing is the same as none.
    mutating func forgetFull(now: ContinuousClock.Instant) {
        self.buckets = self.buckets.filter { $0.value.full > now || $0.value.admitted > 0 }
    }
}

/// The Redis side: GCRA over one or two buckets, all or nothing.
///
/// Each bucket is a hash `{tat, limit}`: `tat` is the Redis time (µs) at which the bucket is
/// full again. Spending one query moves it one interval (`3600 s / limit`) later; a query fits
/// if the bucket would still be no more than an hour "in debt". A missing hash is a full
/// bucket, so each key expires when its bucket is full again (idle keys disappear by
/// themselves). When the limit changes (a new policy), the queries already used carry over:
/// the debt is re-timed at the new rate rather than reset.
///
/// ARGV[1]: the cost (0 reads without spending); ARGV[2]: n, the number of buckets; KEYS[1…n]:
/// the buckets, ARGV[2 + i] the limit of KEYS[i]; an optional ARGV[n + 3] `force` spends even
/// past the limit (at most one hour of debt), for queries already served. An optional KEYS[n + 1]
/// is read (GET) when the query is admitted: the answer cache, in the same round trip. Reply:
/// `{admitted (1|0), retry_after_s, limit_1, remaining_1, reset_s_1, …[, value or false]}`.
enum RateLimitScript {
    static let script = RedisScript(
        """
        local time = redis.call('TIME')
        local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
        local period = 3600000000
        local cost = tonumber(ARGV[1])
        local count = tonumber(ARGV[2])
        local force = ARGV[count + 3] == 'force'
        local admitted = 1
        local retry = 0
        local buckets = {}
        for i = 1, count do
          local key = KEYS[i]
          local limit = tonumber(ARGV[i + 2])
          local interval = period / limit
          local stored = redis.call('HMGET', key, 'tat', 'limit')
          local tat = tonumber(stored[1]) or now
          local previous = tonumber(stored[2])
          if tat < now then tat = now end
          if previous and previous ~= limit then
            tat = now + (tat - now) * previous / limit
          end
          local spent = tat + cost * interval
          if force then
            spent = math.min(spent, now + period)
          elseif spent - now > period + 1 then
            admitted = 0
            retry = math.max(retry, spent - now - period)
          end
          buckets[i] = {key, limit, interval, tat, spent}
        end
        local reply = {admitted, math.ceil(retry / 1000000)}
        for i, b in ipairs(buckets) do
          local tat = b[4]
          if admitted == 1 and cost > 0 then
            tat = b[5]
            redis.call('HSET', b[1], 'tat', string.format('%.0f', tat), 'limit', b[2])
            redis.call('PEXPIREAT', b[1], math.ceil(tat / 1000) + 1000)
          end
          local remaining = math.floor((period - (tat - now)) / b[3] + 0.000001)
          if remaining < 0 then remaining = 0 end
          table.insert(reply, b[2])
          table.insert(reply, remaining)
          table.insert(reply, math.ceil((tat - now) / 1000000))
        end
        if #KEYS > count then
          if admitted == 1 then
            table.insert(reply, redis.call('GET', KEYS[count + 1]))
          else
            table.insert(reply, false)
          end
        end
        return reply
        """)
}

extension HTTPField.Name {
    static let rateLimitLimit = HTTPField.Name("RateLimit-Limit")!
    static let rateLimitRemaining = HTTPField.Name("RateLimit-Remaining")!
    static let rateLimitReset = HTTPField.Name("RateLimit-Reset")!
}

extension Problem {
    static func rateLimited(_ decision: RateLimitDecision) -> Problem {
        Problem(
            slug: "rate-limited", title: "Too Many Requests", status: .tooManyRequests,
            detail:
                "No queries left of the limit of \(decision.limit) per hour. Retry after \(decision.retryAfter) seconds.",
            extensions: ["limit": .int(decision.limit), "retry_after": .int(decision.retryAfter)],
            headers: decision.headers)
    }

    static var rateLimiterUnavailable: Problem {
        Problem(
            slug: "rate-limiter-unavailable", title: "Service Unavailable", status: .serviceUnavailable,
            detail: "Rate limits cannot be checked right now, so queries are refused. Retry shortly.",
            headers: [.retryAfter: "1"])
    }
}
