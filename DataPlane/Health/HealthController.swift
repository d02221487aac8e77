import Canon
import Common
import Foundation
import Hummingbird
import Logging
import Metrics

/// `GET /api/v1/health`: whether this node can serve queries.
///
/// Redis is on the query path (rate limits, cache), so without it the node answers 503; so does a
/// node that holds no configuration yet. The control plane is not on the path: nodes serve from
/// the configuration they hold, so its absence makes the node `degraded`, still 200.
struct HealthController: Sendable {
    let nodeID: String
    let redis: RedisClient
    let watcher: ConfigWatcher
    let canon: CanonLibrary
    let redisGauge = Gauge(label: "zaas_redis_up")

    func addRoutes(to router: Router<some RequestContext>) {
        router.get("/api/v1/health") { request, context in
            await self.report(logger: context.logger).response(request: request)
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
        let state = self.watcher.store.current
        var extra: [String: ProblemValue] = [
            "node_id": .string(self.nodeID),
            // The configuration version this node enforces (0: none yet).
            "config_version": .int(Int(state?.version ?? 0)),
        ]
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
            if checks["redis"]?.status != "up" || state == nil {
                .down
            } else if checks["control_plane"]?.status != "up" {
                .degraded
            } else {
                .ok
            }
        return HealthReport(status: status, service: "zaas-data", checks: checks, extra: extra)
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
