import Foundation

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
        Bool, Int, [BucketState]
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
        var states: [BucketState] = []
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
