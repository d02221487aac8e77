import Foundation
import Logging
import Shared
import TestSupport
import Testing

@testable import DataPlane

/// The asynchronous queries' records in a real Redis: claims under leases, a lease that runs out
/// gives the job to another node, a node that lost its lease cannot overwrite the result, and a
/// job abandoned too often fails with a clear problem.
@Suite("asynchronous query jobs in Redis: submit, claim, lease, finish, give up")
struct QueryJobsTests {
    static let logger = Logger(label: "test.jobs")

    static func jobs(_ redis: RedisClient, namespace: String, node: String, attempts: Int = 3) -> QueryJobs {
        QueryJobs(redis: redis, namespace: namespace, node: node, lease: .seconds(1), maximumAttempts: attempts)
    }

    @Test("a job is claimed once; its lease running out hands it to another node, which alone may finish it")
    func leases() async throws {
        let redis = RedisClient(configuration: TestEnvironment.shared.redis, logger: Self.logger)
        defer { Task { await redis.shutdown() } }
        let namespace = "test-\(UUID().uuidString.prefix(8))"
        let (a, b) = (
            Self.jobs(redis, namespace: namespace, node: "a"), Self.jobs(redis, namespace: namespace, node: "b")
        )
        let (tenant, record, id) = (UUID(), UUID(), UUID())
        let t0 = Date()
        try await a.submit(
            id: id, tenant: tenant, keyID: "abc123", keyRecord: record, body: #"{"question":"Q?","async":true}"#,
            requestID: "r-1", now: t0)
        // The same id twice is one job.
        try await a.submit(
            id: id, tenant: tenant, keyID: "abc123", keyRecord: record, body: "{}", requestID: nil, now: t0)
        #expect(try await a.queued() == 1)
        #expect(try await a.status(id)?.state == .queued)
        #expect(try await a.status(id)?.tenant == tenant)
        #expect(try await a.status(UUID()) == nil)

        let claimed = try #require(try await a.claim(abandoned: "{}", now: t0))
        #expect(
            claimed
                == QueryJobs.Claimed(
                    id: id, tenant: tenant, keyID: "abc123", keyRecord: record,
                    body: #"{"question":"Q?","async":true}"#,
                    requestID: "r-1", attempt: 1))
        #expect(try await b.claim(abandoned: "{}", now: t0.addingTimeInterval(0.5)) == nil)
        #expect(try await a.status(id)?.state == .running)
        #expect(try await b.renew(id, now: t0) == false)
        #expect(try await a.renew(id, now: t0.addingTimeInterval(0.5)))
        // Renewed at 0.5 s: still a's at 1.2 s; gone from it at 1.6 s (a stopped renewing).
        #expect(try await b.claim(abandoned: "{}", now: t0.addingTimeInterval(1.2)) == nil)
        let again = try #require(try await b.claim(abandoned: "{}", now: t0.addingTimeInterval(1.6)))
        #expect(again.id == id && again.attempt == 2)
        // a lost it: its late result is refused; b's is kept for the time asked.
        #expect(try await a.finish(id, state: .done, status: 200, result: "late", keepSeconds: 60) == false)
        #expect(try await b.finish(id, state: .done, status: 200, result: #"{"answer":"A"}"#, keepSeconds: 60))
        let done = try #require(try await a.status(id))
        #expect(done.state == .done && done.status == 200 && done.result == #"{"answer":"A"}"# && done.attempts == 2)
        let ttl = try #require(try await redis.send(["TTL", .string(a.jobKey(id))]).int)
        #expect(ttl > 50 && ttl <= 60)
        #expect(try await redis.send(["HEXISTS", .string(a.jobKey(id)), "body"]).int == 0, "the question is not kept")
    }

    @Test("a job whose nodes keep stopping is given up after its attempts, with the problem it was given")
    func givingUp() async throws {
        let redis = RedisClient(configuration: TestEnvironment.shared.redis, logger: Self.logger)
        defer { Task { await redis.shutdown() } }
        let jobs = Self.jobs(redis, namespace: "test-\(UUID().uuidString.prefix(8))", node: "a", attempts: 2)
        let id = UUID()
        let t0 = Date()
        try await jobs.submit(
            id: id, tenant: UUID(), keyID: "k", keyRecord: UUID(), body: "{}", requestID: nil, now: t0)
        #expect(try await jobs.claim(abandoned: "gave up", now: t0)?.attempt == 1)
        #expect(try await jobs.claim(abandoned: "gave up", now: t0.addingTimeInterval(2))?.attempt == 2)
        #expect(try await jobs.claim(abandoned: "gave up", now: t0.addingTimeInterval(4)) == nil)
        let status = try #require(try await jobs.status(id))
        #expect(status.state == .failed && status.status == 503 && status.result == "gave up")
    }
}
