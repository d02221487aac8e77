import Foundation
import Logging
import Shared

/// Asynchronous queries, kept in Redis so that any node can run them and none is lost when a node
/// stops (docs/airllm.md): `POST /api/v1/query` with `"async": true` records a job and answers
/// 202; a worker on some node claims it under a lease it renews while it runs; a job whose node
/// stopped renewing goes back to the queue (at most `maximumAttempts` runs); the result is kept for
/// the tenant's cache TTL.
///
/// Every key carries the hash tag `{jobs:<namespace>}` (`jobs.namespace`: nodes serving one control
/// plane share one), so the scripts touch one Redis Cluster slot: `…:q` (the queue, a list),
/// `…:leases` (running jobs by lease expiry, a sorted set) and `…:j:<id>` (each job, a hash:
/// tenant, key, body, state, status, result, times, attempts, node).
struct QueryJobs: Sendable {
    enum State: String, Sendable {
        case queued, running, done, failed
    }

    /// A claimed job: what running it needs.
    struct Claimed: Sendable, Equatable {
        let id: UUID
        let tenant: UUID
        /// The public key id of the key that asked (`KeyConfig.keyID`) and its record id.
        let keyID: String
        let keyRecord: UUID
        let body: String
        let requestID: String?
        let attempt: Int
    }

    /// What `GET /api/v1/queries/{id}` shows.
    struct Status: Sendable, Equatable {
        let tenant: UUID
        let state: State
        let submittedAt: Date
        let attempts: Int
        /// For a finished job: the HTTP status and the body the synchronous call would have had.
        let status: Int?
        let result: String?
    }

    /// How long a job may wait for a worker before it is dropped (Redis expires it).
    static let pendingSeconds = 86_400

    let redis: RedisClient
    let queueKey: String
    let leasesKey: String
    let jobPrefix: String
    let node: String
    /// How long a claim holds without renewal; workers renew at a third of it.
    let lease: Duration
    let maximumAttempts: Int

    init(redis: RedisClient, namespace: String, node: String, lease: Duration, maximumAttempts: Int) {
        self.redis = redis
        self.queueKey = "zaas:{jobs:\(namespace)}:q"
        self.leasesKey = "zaas:{jobs:\(namespace)}:leases"
        self.jobPrefix = "zaas:{jobs:\(namespace)}:j:"
        self.node = node
        self.lease = lease
        self.maximumAttempts = maximumAttempts
    }

    func jobKey(_ id: UUID) -> String { self.jobPrefix + id.uuidString.lowercased() }

    /// Records a job and queues it.
    func submit(
        id: UUID, tenant: UUID, keyID: String, keyRecord: UUID, body: String, requestID: String?, now: Date = Date()
    ) async throws {
        try await self.redis.evaluate(
            Self.submitScript, keys: [.string(self.jobKey(id)), .string(self.queueKey)],
            arguments: [
                .string(id.uuidString.lowercased()), .string(tenant.uuidString.lowercased()), .string(keyID),
                .string(keyRecord.uuidString.lowercased()), .string(body), .string(requestID ?? ""),
                .int(Int(now.timeIntervalSince1970 * 1000)), .int(Self.pendingSeconds),
            ])
    }

    /// The next job for this node, if any: first returns to the queue the jobs whose lease ran
    /// out (or fails those run `maximumAttempts` times, with `abandoned` as their result).
    func claim(abandoned: String, now: Date = Date()) async throws -> Claimed? {
        let nowMs = Int(now.timeIntervalSince1970 * 1000)
        let reply = try await self.redis.evaluate(
            Self.claimScript, keys: [.string(self.queueKey), .string(self.leasesKey)],
            arguments: [
                .int(nowMs), .int(Int(self.lease.milliseconds)), .string(self.node), .int(self.maximumAttempts),
                .string(self.jobPrefix), .string(abandoned),
            ])
        guard let fields = reply.array, fields.count == 7, let id = fields[0].string.flatMap(UUID.init(uuidString:)),
            let tenant = fields[1].string.flatMap(UUID.init(uuidString:)), let keyID = fields[2].string,
            let keyRecord = fields[3].string.flatMap(UUID.init(uuidString:)), let body = fields[4].string,
            let attempt = fields[6].int
        else { return nil }
        let requestID = fields[5].string.flatMap { $0.isEmpty ? nil : $0 }
        return Claimed(
            id: id, tenant: tenant, keyID: keyID, keyRecord: keyRecord, body: body, requestID: requestID,
            attempt: Int(attempt))
    }

    /// Extends this node's lease on a running job; false when the job is no longer this node's.
    func renew(_ id: UUID, now: Date = Date()) async throws -> Bool {
        let until = Int(now.timeIntervalSince1970 * 1000) + Int(self.lease.milliseconds)
        let reply = try await self.redis.evaluate(
            Self.renewScript, keys: [.string(self.jobKey(id)), .string(self.leasesKey)],
            arguments: [.string(id.uuidString.lowercased()), .string(self.node), .int(until)])
        return reply.int == 1
    }

    /// Stores a running job's outcome (only while it is this node's), kept for `keepSeconds`.
    @discardableResult
    func finish(
        _ id: UUID, state: State, status: Int, result: String, keepSeconds: Int, now: Date = Date()
    ) async throws -> Bool {
        let reply = try await self.redis.evaluate(
            Self.finishScript, keys: [.string(self.jobKey(id)), .string(self.leasesKey)],
            arguments: [
                .string(id.uuidString.lowercased()), .string(self.node), .string(state.rawValue), .int(status),
                .string(result), .int(Int(now.timeIntervalSince1970 * 1000)), .int(max(keepSeconds, 1)),
            ])
        return reply.int == 1
    }

    /// A job's state, nil when there is none (never was, or expired).
    func status(_ id: UUID) async throws -> Status? {
        let reply = try await self.redis.send(
            [
                "HMGET", .string(self.jobKey(id)), "tenant", "state", "submitted_ms", "attempts", "status", "result",
            ])
        guard let fields = reply.array, fields.count == 6,
            let tenant = fields[0].string.flatMap(UUID.init(uuidString:)),
            let state = fields[1].string.flatMap(State.init(rawValue:)), let submitted = fields[2].int
        else { return nil }
        return Status(
            tenant: tenant, state: state, submittedAt: Date(timeIntervalSince1970: Double(submitted) / 1000),
            attempts: Int(fields[3].int ?? 0), status: fields[4].int.map { Int($0) }, result: fields[5].string)
    }

    /// How many jobs wait.
    func queued() async throws -> Int {
        Int(try await self.redis.send(["LLEN", .string(self.queueKey)]).int ?? 0)
    }

    static let submitScript = RedisScript(
        """
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        redis.call('HSET', KEYS[1], 'tenant', ARGV[2], 'key_id', ARGV[3], 'key', ARGV[4], 'body', ARGV[5],
          'request_id', ARGV[6], 'state', 'queued', 'submitted_ms', ARGV[7], 'attempts', 0)
        redis.call('EXPIRE', KEYS[1], ARGV[8])
        redis.call('LPUSH', KEYS[2], ARGV[1])
        return 1
        """)

    /// KEYS: queue, leases. ARGV: now ms, lease ms, node, maximum attempts, job key prefix, the
    /// result of a job abandoned too often.
    static let claimScript = RedisScript(
        """
        local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 32)
        for _, id in ipairs(expired) do
          redis.call('ZREM', KEYS[2], id)
          local job = ARGV[5] .. id
          if redis.call('HGET', job, 'state') == 'running' then
            if tonumber(redis.call('HGET', job, 'attempts') or '0') >= tonumber(ARGV[4]) then
              redis.call('HSET', job, 'state', 'failed', 'status', 503, 'result', ARGV[6], 'finished_ms', ARGV[1])
              redis.call('HDEL', job, 'body')
            else
              redis.call('HSET', job, 'state', 'queued')
              redis.call('RPUSH', KEYS[1], id)
            end
          end
        end
        while true do
          local id = redis.call('RPOP', KEYS[1])
          if not id then return false end
          local job = ARGV[5] .. id
          if redis.call('HGET', job, 'state') == 'queued' then
            local attempts = redis.call('HINCRBY', job, 'attempts', 1)
            redis.call('HSET', job, 'state', 'running', 'node', ARGV[3], 'started_ms', ARGV[1])
            redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
            local fields = redis.call('HMGET', job, 'tenant', 'key_id', 'key', 'body', 'request_id')
            return {id, fields[1], fields[2], fields[3], fields[4], fields[5], attempts}
          end
        end
        """)

    static let renewScript = RedisScript(
        """
        if redis.call('HGET', KEYS[1], 'node') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'state') ~= 'running' then
          return 0
        end
        redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[1])
        return 1
        """)

    static let finishScript = RedisScript(
        """
        if redis.call('HGET', KEYS[1], 'node') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'state') ~= 'running' then
          return 0
        end
        redis.call('HSET', KEYS[1], 'state', ARGV[3], 'status', ARGV[4], 'result', ARGV[5], 'finished_ms', ARGV[6])
        redis.call('HDEL', KEYS[1], 'body')
        redis.call('ZREM', KEYS[2], ARGV[1])
        redis.call('EXPIRE', KEYS[1], ARGV[7])
        return 1
        """)
}
