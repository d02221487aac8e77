import Foundation
import HTTPTypes
import Logging
import Metrics
import ServiceLifecycle
import Shared
import Synchronization

/// The per-key and per-tenant token buckets of the query API.
///
/// Normally every decision is one Lua script in Redis (`RedisBuckets`, `RateLimitScript`), atomic across both
/// buckets and timed by Redis's own clock, so any number of nodes together admit exactly the
/// limit. When Redis cannot be reached the `fallback` setting decides: `.local` admits from a
/// bucket in this node's memory (`LocalBuckets`) holding its share of the limit (the limit divided by the live
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
    private let shared: RedisBuckets
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
        self.shared = RedisBuckets(redis: redis)
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
    /// key is `.read` when Redis decided (its value nil when missing or the query refused), and
    /// `.notRead` when the decision was made locally.
    public func decide(_ buckets: [RateLimitBucket], cost: Int = 1, fetching: String?) async throws -> (
        decision: RateLimitDecision, fetched: RedisPrefetch
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
        return (decision, .notRead)
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
        RateLimitDecision, RedisPrefetch
    ) {
        let (decision, states, prefetch) = try await self.shared.decide(buckets, cost: cost, fetching: fetching)
        let now = self.clock.now
        self.state.withLock { state in
            for (bucket, bucketState) in zip(buckets, states) {
                state.lastSeen[bucket.name] = (bucketState.remaining, now)
            }
        }
        return (decision, prefetch)
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
                    try await self.shared.charge(name, limit: limit, count: count)
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
            return RateLimitDecision(admitted: admitted, retryAfter: retryAfter, states: states, source: .local)
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
