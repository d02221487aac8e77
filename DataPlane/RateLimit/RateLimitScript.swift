import Foundation
import Shared

/// The shared buckets in Redis: every decision is one call of `RateLimitScript`, so any number of
/// nodes together admit exactly the limit.
struct RedisBuckets: Sendable {
    let redis: RedisClient

    /// Spends `cost` from every bucket, or none; when admitted, also reads the key `fetching` in
    /// the same call. Returns the decision and each bucket's state, in the order given.
    func decide(_ buckets: [RateLimitBucket], cost: Int, fetching: String?) async throws -> (
        decision: RateLimitDecision, states: [BucketState], prefetch: RedisPrefetch
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
        let states = buckets.indices.map { index in
            BucketState(
                limit: Int(values[2 + 3 * index]), remaining: Int(values[3 + 3 * index]),
                reset: Int(values[4 + 3 * index]))
        }
        let decision = RateLimitDecision(
            admitted: values[0] == 1, retryAfter: Int(values[1]), states: states, source: .redis)
        let prefetch: RedisPrefetch = fetching == nil ? .notRead : .read(parts.count > count ? parts[count].bytes : nil)
        return (decision, states, prefetch)
    }

    /// Counts `count` queries that were already served against the bucket, even past its limit
    /// (at most an hour of debt).
    func charge(_ name: String, limit: Int, count: Int) async throws {
        try await self.redis.evaluate(
            RateLimitScript.script, keys: [.string(name)], arguments: [.int(count), 1, .int(limit), "force"])
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
