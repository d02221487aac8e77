import Foundation
import Hummingbird
import Logging
import PostgresNIO
import Shared

/// Usage reports and the rollups' upkeep (docs/billing.md):
///
/// - `GET /admin/v1/usage`: a tenant admin's own tenant, an operator's any (`tenant_id`);
/// - `GET /internal/v1/stats/{tenant}`: the same for a node answering `GET /api/v1/stats`;
/// - `POST /admin/v1/usage/verify` (operators): the rollups of a range recomputed from the audit
///   events, and every difference;
/// - `POST /admin/v1/tenants/{id}/usage/rebuild` (operators): a tenant's range recomputed and
///   stored.
///
/// Periods: `period=YYYY-MM`, or `from` and `to` on whole hours (ISO 8601, at most 366 days);
/// the current calendar month (UTC) by default.
struct UsageController: Sendable {
    let database: ScopedDatabase

    struct RangeRequest: Decodable {
        let from: Date
        let to: Date
    }

    /// One rollup row that the events do not bear out.
    struct Difference: Encodable {
        let rollup: String
        let tenantId: UUID
        let period: Date
        let keyId: UUID?
        let outcome: String
        let status: Int
        let modelClass: String
        let model: String
        /// queries, input tokens, output tokens, cost (nano-dollars), latency sum (ms).
        let stored: [Int64]
        let recomputed: [Int64]
    }

    struct Verification: Encodable {
        let from: Date
        let to: Date
        let agree: Bool
        let differences: [Difference]
    }

    static func period(_ request: Request) throws -> UsageStore.Period {
        let query = request.uri.queryParameters
        let text = { (name: String) in query[Substring(name)].map(String.init) }
        return try UsageStore.Period.parse(period: text("period"), from: text("from"), to: text("to")).get()
    }

    func addRoutes(to router: Router<AdminRequestContext>) {
        router.group("/admin/v1/usage", context: AuthenticatedContext.self).get { request, context in
            let period = try Self.period(request)
            let tenant: UUID
            switch context.principal {
            case .platformOperator:
                guard let text = request.uri.queryParameters["tenant_id"] else {
                    throw Problem.validation([FieldError("tenant_id", "is required")])
                }
                guard let id = UUID(uuidString: String(text)) else {
                    throw Problem.validation([FieldError("tenant_id", "must be a UUID")])
                }
                tenant = id
            case .tenantAdmin(_, let tenantID, _):
                if let asked = request.uri.queryParameters["tenant_id"], UUID(uuidString: String(asked)) != tenantID {
                    throw Problem.forbidden("A tenant admin reads its own tenant's usage.")
                }
                tenant = tenantID
            }
            let report = try await self.database.within(context.principal, logger: context.logger) {
                connection in
                guard try await Self.exists(tenant, connection: connection, logger: context.logger) else {
                    throw Problem.notFound("No such tenant.")
                }
                return try await UsageStore.report(
                    tenant: tenant, period: period, connection: connection, logger: context.logger)
            }
            return try StrictJSON.response(report)
        }
        let operators = router.group("/admin/v1", context: OperatorContext.self)
        operators.post("usage/verify") { request, context in
            let range = try await Self.range(request, context: context)
            let differences = try await self.database.withOperator(context.operatorID, logger: context.logger) {
                connection in
                let rows = try await connection.query(
                    """
                    SELECT rollup, tenant_id, period, key_id, outcome, status, model_class, model, stored, recomputed
                    FROM zaas_usage_verify(\(range.from), \(range.to))
                    ORDER BY rollup, tenant_id, period, outcome
                    """, logger: context.logger)
                var differences: [Difference] = []
                for try await row in rows.decode(
                    (String, UUID, Date, UUID?, String, Int16, String, String, [Int64], [Int64]).self)
                {
                    differences.append(
                        Difference(
                            rollup: row.0, tenantId: row.1, period: row.2, keyId: row.3, outcome: row.4,
                            status: Int(row.5), modelClass: row.6, model: row.7, stored: row.8, recomputed: row.9))
                    if differences.count == 1000 { break }
                }
                return differences
            }
            return try StrictJSON.response(
                Verification(from: range.from, to: range.to, agree: differences.isEmpty, differences: differences))
        }
        operators.post("tenants/:id/usage/rebuild") { request, context in
            guard let text = context.parameters.get("id"), let tenant = UUID(uuidString: text) else {
                throw Problem.notFound("No such tenant.")
            }
            let range = try await Self.range(request, context: context)
            let written = try await self.database.withOperator(context.operatorID, logger: context.logger) {
                connection in
                guard try await Self.exists(tenant, connection: connection, logger: context.logger) else {
                    throw Problem.notFound("No such tenant.")
                }
                do {
                    for try await count in try await connection.query(
                        "SELECT zaas_usage_rebuild(\(tenant), \(range.from), \(range.to))", logger: context.logger
                    ).decode(Int32.self) {
                        return Int(count)
                    }
                    return 0
                } catch let error as PSQLError where error.serverInfo?[.sqlState] == "22023" {
                    throw Problem.validation([FieldError("from", error.serverInfo?[.message] ?? "out of range")])
                }
            }
            context.logger.notice(
                "usage rollups rebuilt",
                metadata: ["tenant": "\(tenant)", "rows": "\(written)", "from": "\(range.from)", "to": "\(range.to)"])
            return try StrictJSON.response(["hourly_rows": written])
        }
    }

    /// `GET /internal/v1/stats/{tenant}`, in the tenant's scope.
    func addRoutes(to group: RouterGroup<NodeContext>) {
        group.get(RouterPath(InternalAPI.stats + "/{tenant}")) { request, context in
            guard let tenant = context.parameters.get("tenant").flatMap(UUID.init(uuidString:)) else {
                throw Problem.notFound()
            }
            let period = try Self.period(request)
            let report = try await self.database.withTenant(tenant, logger: context.logger) { connection in
                guard try await Self.exists(tenant, connection: connection, logger: context.logger) else {
                    throw Problem.notFound("No such tenant.")
                }
                return try await UsageStore.report(
                    tenant: tenant, period: period, connection: connection, logger: context.logger)
            }
            return try StrictJSON.response(report)
        }
    }

    /// A `{"from", "to"}` body on whole hours, from before to, at most 366 days apart.
    static func range(_ request: Request, context: some RequestContext) async throws -> UsageStore.Period {
        let body = try await StrictJSON.decode(
            RangeRequest.self, from: request, context: context, allowedFields: ["from", "to"])
        var errors: [FieldError] = []
        for (field, date) in [("from", body.from), ("to", body.to)]
        where date.timeIntervalSince1970.truncatingRemainder(dividingBy: 3600) != 0 {
            errors.append(FieldError(field, "must fall on a whole hour (UTC)"))
        }
        if body.from >= body.to {
            errors.append(FieldError("from", "must be before to"))
        } else if body.to.timeIntervalSince(body.from) > UsageStore.Period.maximumRange {
            errors.append(FieldError("to", "the range may span at most 366 days"))
        }
        guard errors.isEmpty else { throw Problem.validation(errors) }
        return UsageStore.Period(from: body.from, to: body.to)
    }

    static func exists(_ tenant: UUID, connection: PostgresConnection, logger: Logger) async throws -> Bool {
        for try await _ in try await connection.query("SELECT 1 FROM tenants WHERE id = \(tenant)", logger: logger)
            .decode(Int32.self)
        {
            return true
        }
        return false
    }
}
