import Foundation
import HTTPTypes
import Shared

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

    /// The buckets a query of this key spends from: the key's and the tenant's. Every tenant has
    /// a tenant-wide bucket (the control plane sends the tier's limit when the policy sets none;
    /// a snapshot without one falls back to the key's limit), so more keys never mean more queries.
    public static func buckets(key: UUID, tenant: UUID, policy: TenantPolicy) -> [RateLimitBucket] {
        [
            .key(key, tenant: tenant, limit: policy.queriesPerHour),
            .tenant(tenant, limit: policy.tenantQueriesPerHour ?? policy.queriesPerHour),
        ]
    }
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

/// One bucket after a decision: its limit, the queries left, seconds until it is full again.
struct BucketState: Equatable {
    var limit: Int
    var remaining: Int
    var reset: Int
}

extension RateLimitDecision {
    /// The decision over several buckets: the headers describe the bucket with the fewest queries
    /// left (the key's on a tie); a refusal waits at least a second.
    init(admitted: Bool, retryAfter: Int, states: [BucketState], source: Source) {
        let binding = states.min { $0.remaining < $1.remaining }!
        self.init(
            admitted: admitted, limit: binding.limit, remaining: binding.remaining, reset: binding.reset,
            retryAfter: admitted ? 0 : max(1, retryAfter), source: source)
    }
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
