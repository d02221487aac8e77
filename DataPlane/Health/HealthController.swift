import Canon
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Shared

/// `GET /api/v1/health`: whether this node can serve queries.
///
/// Redis is on the query path (rate limits, cache). Without it the node serves on its local share
/// of the rate limits and without the Redis cache, `degraded` (200); with
/// `rate_limit.redis_fallback = refuse` it refuses queries and answers 503 here. A node that holds
/// no configuration yet answers 503. The control plane is not on the path: nodes serve from the
/// configuration they hold, so its absence makes the node `degraded`, still 200.
struct HealthController: Sendable {
    let nodeID: String
    let redis: RedisClient
    let limiter: RateLimiter
    let watcher: ConfigWatcher
    let canon: CanonLibrary
    let audit: AuditRecorder
    let auditShipper: AuditShipper
    let redisGauge = Gauge(label: "zaas_redis_up")

    func addRoutes(to router: Router<some RequestContext>) {
        router.get("/api/v1/health") { request, context in
            await self.report(logger: context.logger).response(request: request)
        }
        // Liveness: the process answers HTTP. Checks nothing else (health does), so a
        // supervisor restarts only a node that is stuck, never one whose dependencies are down.
        router.get("/livez") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }
    }

    func report(logger: Logger) async -> HealthReport {
        var checks: [String: HealthReport.Check] = [:]
        do {
            let latency = try await self.redis.ping()
            checks["redis"] = .init(status: "up", latencyMilliseconds: latency.milliseconds)
            self.redisGauge.record(1)
        } catch {
            checks["redis"] = .init(status: "down", detail: Self.describe(error))
            self.redisGauge.record(0)
        }
        switch self.watcher.reachability {
        case .up: checks["control_plane"] = .init(status: "up")
        case .unhealthy(let why): checks["control_plane"] = .init(status: "unhealthy", detail: why)
        case .down(let why): checks["control_plane"] = .init(status: "down", detail: why)
        case .unknown: checks["control_plane"] = .init(status: "unknown", detail: "not answered yet")
        }
        // How queries are rate limited right now: shared through Redis, or on this node's share.
        switch self.limiter.mode {
        case .redis:
            checks["rate_limit"] = .init(status: "up", detail: "shared buckets in Redis")
        case .fallback(let since, let reason):
            let refusing = self.limiter.settings.fallback == .refuse
            checks["rate_limit"] = .init(
                status: refusing ? "down" : "degraded",
                detail: (refusing
                    ? "refusing queries"
                    : "this node's share of each limit (\(self.limiter.liveNodes() ?? 1) live nodes)")
                    + " since \(since.formatted(.iso8601)): \(reason)")
        }
        checks["audit"] = self.auditCheck()
        let state = self.watcher.store.current
        var extra: [String: ProblemValue] = [
            "node_id": .string(self.nodeID),
            // The configuration version this node enforces (0: none yet).
            "config_version": .int(Int(state?.version ?? 0)),
        ]
        // Live nodes in the node registry as the control plane last said: the divisor of the
        // local rate-limit shares while Redis is unreachable.
        if let live = self.watcher.liveNodes { extra["live_nodes"] = .int(live) }
        if let state {
            checks["config"] = .init(status: "up", detail: "version \(state.version)")
            extra["config_created_at"] = .string(state.createdAt.formatted(.iso8601))
        } else {
            checks["config"] = .init(status: "down", detail: "no configuration yet")
        }
        // The canon versions loaded; `pending` while a newly published one is being fetched (the
        // node answers from the version before it meanwhile).
        let installed = self.canon.current
        let loaded = ([installed.base].compactMap { $0 } + installed.overlays.values.map { $0 }).count
        if let state {
            checks["canon"] = .init(
                status: self.canon.isCurrent(for: state) ? "up" : "pending",
                detail: "\(loaded) version\(loaded == 1 ? "" : "s") loaded"
                    + (installed.base.map { ", base \($0.label)" } ?? ""))
        }
        // Seconds since the control plane last confirmed this node is current.
        if let lastSync = self.watcher.lastSync {
            extra["config_age_seconds"] = .double((Date().timeIntervalSince(lastSync) * 10).rounded() / 10)
        }

        let status: HealthReport.Status =
            if state == nil || (checks["redis"]?.status != "up" && self.limiter.settings.fallback == .refuse)
                || checks["audit"]?.status == "down"
            {
                .down
            } else if checks["control_plane"]?.status != "up" || checks["redis"]?.status != "up"
                || checks["rate_limit"]?.status != "up" || !["up", "off"].contains(checks["audit"]?.status)
            {
                .degraded
            } else {
                .ok
            }
        return HealthReport(status: status, service: "zaas-data", checks: checks, extra: extra)
    }

    func auditCheck() -> HealthReport.Check {
        .audit(
            AuditState(
                enabled: self.audit.settings.enabled, spooledBytes: self.audit.spool.totalBytes,
                maximumBytes: self.audit.settings.spool.maximumBytes, appendFailure: self.audit.recentFailure,
                whenFull: self.audit.settings.whenFull, shippingFailure: self.auditShipper.failure),
            now: Date())
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as RedisError:
            switch error {
            case .unavailable: return "cannot connect"
            case .timeout: return "no answer within the command timeout"
            case .connectionClosed, .notSent: return "connection lost"
            case .server: return "error reply to PING"
            case .protocolError: return "protocol error"
            case .shutdown: return "client shut down"
            }
        default: return "unavailable"
        }
    }
}

/// What the audit check looks at, read from the recorder and the shipper.
struct AuditState: Sendable {
    var enabled: Bool
    var spooledBytes: Int
    var maximumBytes: Int
    /// Why the last append failed, when that was within the last minute.
    var appendFailure: String?
    var whenFull: AuditRecorder.WhenFull
    var shippingFailure: (since: Date, reason: String)?
}

extension HealthReport.Check {
    /// The audit spool: `off` when auditing is disabled; `down` when it cannot take events and
    /// the node refuses queries for it (`audit.when_full = refuse`); `degraded` when it is losing
    /// events (`answer`), is more than 80 % full, or shipping has failed for a minute; otherwise `up`.
    static func audit(_ state: AuditState, now: Date) -> Self {
        guard state.enabled else {
            return .init(status: "off", detail: "audit.enabled is false: queries are not recorded")
        }
        var detail = "\(state.spooledBytes) of \(state.maximumBytes) bytes spooled"
        if let failure = state.appendFailure {
            let refusing = state.whenFull == .refuse
            return .init(
                status: refusing ? "down" : "degraded",
                detail: "\(detail); cannot record events (\(failure)): "
                    + (refusing ? "refusing queries" : "answering without recording"))
        }
        if let failure = state.shippingFailure, now.timeIntervalSince(failure.since) >= 60 {
            detail += "; shipping has failed since \(failure.since.formatted(.iso8601)): \(failure.reason)"
            return .init(status: "degraded", detail: detail)
        }
        return .init(status: state.spooledBytes * 5 > state.maximumBytes * 4 ? "degraded" : "up", detail: detail)
    }
}
