import Foundation
import HTTPTypes
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Shared

/// Runs asynchronous queries (`QueryJobs`) on this node: `workers` loops each claim a job, run it
/// through the same pipeline as a synchronous query (without charging the limit again: the
/// submission was charged), renew the lease while it runs, and store the body the synchronous call
/// would have returned. The key that asked must still be valid when the job runs: a key revoked
/// or expired meanwhile, or a tenant suspended, gets the synchronous call's 401.
struct QueryJobWorker: Service {
    struct Settings: Sendable {
        /// Jobs this node runs at once (`jobs.workers`; 0: this node runs none).
        var workers: Int
        /// How long a claim holds without renewal (`jobs.lease_ms`).
        var lease: Duration
        /// How often an idle worker looks for a job (`jobs.poll_ms`).
        var poll: Duration
        /// Runs of one job before it is given up (`jobs.max_attempts`).
        var maximumAttempts: Int
        /// The shortest time a result is kept, whatever the tenant's cache TTL (`jobs.min_keep_seconds`).
        var minimumKeep: Int
        /// The jobs' Redis keys are named after it (`jobs.namespace`): nodes of one control plane
        /// share it; deployments sharing a Redis need different ones.
        var namespace: String

        init(
            workers: Int = 2, lease: Duration = .seconds(30), poll: Duration = .milliseconds(250),
            maximumAttempts: Int = 3,
            minimumKeep: Int = 300, namespace: String = "default"
        ) {
            self.namespace = namespace
            self.workers = workers
            self.lease = lease
            self.poll = poll
            self.maximumAttempts = maximumAttempts
            self.minimumKeep = minimumKeep
        }
    }

    let jobs: QueryJobs
    let pipeline: QueryPipeline
    let state: @Sendable () -> ConfigState?
    let audit: AuditRecorder
    let settings: Settings
    let logger: Logger
    let completed = Counter(label: "zaas_async_queries_total", dimensions: [("outcome", "done")])
    let failed = Counter(label: "zaas_async_queries_total", dimensions: [("outcome", "failed")])

    /// The result of a job given up after `maximumAttempts` runs, each ended by its node stopping.
    static let abandoned: String = {
        let problem = Problem(
            slug: "query-abandoned", title: "Service Unavailable", status: .serviceUnavailable,
            detail: "The query was started several times and each node running it stopped. Ask again.")
        return String(decoding: problem.json(instance: "/api/v1/query", requestID: nil), as: UTF8.self)
    }()

    func run() async throws {
        guard self.settings.workers > 0 else { return try await gracefulShutdown() }
        try? await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for _ in 0..<self.settings.workers {
                    group.addTask { await self.loop() }
                }
            }
        }
    }

    private func loop() async {
        while !Task.isCancelled {
            if await self.runOnce() == nil {
                try? await Task.sleep(for: self.settings.poll)
            }
        }
    }

    /// Claims and runs one job; its id, nil when none waited (or Redis could not be asked).
    @discardableResult
    func runOnce() async -> UUID? {
        let job: QueryJobs.Claimed
        do {
            guard let claimed = try await self.jobs.claim(abandoned: Self.abandoned) else { return nil }
            job = claimed
        } catch {
            self.logger.warning("cannot claim an asynchronous query", metadata: ["error": "\(error)"])
            return nil
        }
        var logger = self.logger
        logger[metadataKey: "query_id"] = .string(job.id.lowercased)
        await withTaskGroup(of: Void.self) { group in
            // The lease, renewed at a third of its length while the query runs.
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: self.settings.lease / 3)
                    if Task.isCancelled { return }
                    _ = try? await self.jobs.renew(job.id)
                }
            }
            await self.execute(job, logger: logger)
            group.cancelAll()
        }
        return job.id
    }

    private func execute(_ job: QueryJobs.Claimed, logger: Logger) async {
        let started = ContinuousClock.now
        let caller = self.caller(job)
        let keep = max(self.settings.minimumKeep, Int(caller?.policy.cacheTTLSeconds ?? 0))
        do {
            guard let caller else { throw Problem.invalidAPIKey }
            let (answer, question) = try await self.pipeline.runAdmitted(ByteBuffer(string: job.body), caller: caller)
            let total = ContinuousClock.now - started
            try? self.audit.answered(
                answer, question: question, caller: caller, queryID: job.id, requestID: job.requestID, total: total)
            let body = QueryController.json(answer, queryID: job.id, total: total)
            try await self.jobs.finish(
                job.id, state: .done, status: 200, result: String(buffer: body), keepSeconds: keep)
            self.completed.increment()
            logger.info("asynchronous query answered", metadata: ["attempt": "\(job.attempt)"])
        } catch is CancellationError {
            // The node is stopping: the lease runs out and another node takes the job.
            logger.notice("asynchronous query left to another node (this one is stopping)")
        } catch {
            let problem = ProblemMiddleware<DataPlaneRequestContext>.problem(for: error, logger: logger)
            try? self.audit.unanswered(
                .init(error: problem), caller: caller, queryID: job.id, requestID: job.requestID,
                total: ContinuousClock.now - started)
            let body = problem.json(instance: "/api/v1/query", requestID: job.requestID)
            _ = try? await self.jobs.finish(
                job.id, state: .failed, status: Int(problem.status.code), result: String(decoding: body, as: UTF8.self),
                keepSeconds: keep)
            self.failed.increment()
            logger.notice("asynchronous query failed", metadata: ["type": "\(problem.type)"])
        }
    }

    /// The caller the job was submitted as, if its key still checks out (valid, not revoked, its
    /// tenant active, still allowed to query).
    func caller(_ job: QueryJobs.Claimed, now: Date = Date()) -> Caller? {
        guard let state = self.state(), let key = state.keys[job.keyID], key.id == job.keyRecord,
            key.tenantID == job.tenant, key.scopes.contains(.query),
            let tenant = KeyVerifier.activeTenant(of: key, state: state, now: now)
        else { return nil }
        return Caller(tenant: tenant, key: key, configVersion: state.version)
    }
}
