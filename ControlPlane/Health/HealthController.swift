import Hummingbird
import Logging
import PostgresNIO
import Shared

/// `GET /healthz`: PostgreSQL reachable as the application role, every migration this binary
/// knows applied, and (`database_probe`) whether the availability probe has declared PostgreSQL
/// out of reach, in which case admin calls are being answered 503 `database-unavailable`.
struct HealthController: Sendable {
    let postgres: PostgresClient
    let timeout: Duration
    var probe: DatabaseProbe? = nil

    func addRoutes(to router: Router<some RequestContext>) {
        router.get("/healthz") { request, context in
            await self.report(logger: context.logger).response(request: request)
        }
    }

    func report(logger: Logger) async -> HealthReport {
        var checks: [String: HealthReport.Check] = [:]
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let postgres = self.postgres
            let applied = try await withTimeout(self.timeout) {
                let rows = try await postgres.queryRows(
                    "SELECT coalesce(max(version), 0) FROM zaas_schema_migrations",
                    logger: logger
                )
                var version = 0
                for try await (value) in rows.decode(Int.self) { version = value }
                return version
            }
            checks["postgres"] = .init(status: "up", latencyMilliseconds: (clock.now - start).milliseconds)
            let expected = Migrations.latestVersion
            checks["migrations"] =
                applied == expected
                ? .init(status: "up", detail: "version \(applied)")
                : .init(status: "pending", detail: "database at version \(applied), binary expects \(expected)")
        } catch {
            logger.warning("health check: postgres unreachable", metadata: ["error": "\(String(describing: error))"])
            checks["postgres"] = .init(status: "down", detail: Self.describe(error))
            checks["migrations"] = .init(status: "unknown")
        }
        if let probe = self.probe {
            checks["database_probe"] =
                probe.isReachable
                ? .init(status: "up")
                : .init(status: "down", detail: "no answer for a while: admin calls get 503 database-unavailable")
        }
        let healthy = checks.values.allSatisfy { $0.status == "up" }
        return HealthReport(status: healthy ? .ok : .down, service: "zaas-control", checks: checks)
    }

    /// A short, safe description: no hostnames, users or SQL.
    static func describe(_ error: any Error) -> String {
        switch error {
        case is TimeoutError: return "no answer within the health timeout"
        case let error as PSQLError:
            switch error.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection: return "cannot connect"
            case .server: return "query failed (\(error.serverInfo?[.sqlState] ?? "unknown sqlstate"))"
            default: return "database error"
            }
        default: return "unavailable"
        }
    }
}
