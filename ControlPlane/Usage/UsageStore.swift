import Foundation
import Logging
import PostgresNIO
import Shared

/// Reads of the usage rollups (migration 23; docs/billing.md), in the connection's scope: row-level
/// security decides whose rows a tenant admin, an operator or a node's request sees.
enum UsageStore {
    /// A period of whole hours, `from` before `to`, at most `maximumRange` long.
    struct Period: Sendable, Equatable {
        static let maximumRange: TimeInterval = 366 * 86_400

        let from: Date
        let to: Date

        /// The days wholly inside the period: read from the daily rollups, the rest from hourly ones.
        var wholeDays: (from: Date, to: Date)? {
            let first = Self.startOfDay(self.from) == self.from ? self.from : Self.startOfDay(self.from) + 86_400
            let last = Self.startOfDay(self.to)
            return first < last ? (first, last) : nil
        }

        static func startOfDay(_ date: Date) -> Date {
            Date(timeIntervalSince1970: (date.timeIntervalSince1970 / 86_400).rounded(.down) * 86_400)
        }

        /// The calendar month (UTC) holding `date`.
        static func month(of date: Date) -> Period {
            let start = UTCMonth.start(of: date)
            return Period(from: start, to: UTCMonth.adding(1, to: start))
        }

        /// `YYYY-MM`, nil when it is not a month from 2000 to 9999.
        static func month(_ text: String) -> Period? {
            UTCMonth.parse(text).map { Period(from: $0, to: UTCMonth.adding(1, to: $0)) }
        }

        /// The period a request's `period`, `from` and `to` name (the current month by default),
        /// or the field errors that say why not.
        static func parse(
            period: String?, from: String?, to: String?, now: Date = Date()
        ) -> Result<Period, Problem> {
            if let period {
                guard from == nil, to == nil else {
                    return .failure(.validation([FieldError("period", "give either period or from and to")]))
                }
                guard let month = Self.month(period) else {
                    return .failure(.validation([FieldError("period", "must be a month, YYYY-MM")]))
                }
                return .success(month)
            }
            guard from != nil || to != nil else { return .success(Self.month(of: now)) }
            var errors: [FieldError] = []
            func instant(_ text: String?, _ field: String) -> Date? {
                guard let text else {
                    errors.append(FieldError(field, "is required with \(field == "from" ? "to" : "from")"))
                    return nil
                }
                guard let date = ISO8601Time.parse(text) else {
                    errors.append(FieldError(field, "must be an ISO 8601 date or date-time"))
                    return nil
                }
                guard date.timeIntervalSince1970.truncatingRemainder(dividingBy: 3600) == 0 else {
                    errors.append(FieldError(field, "must fall on a whole hour (UTC)"))
                    return nil
                }
                return date
            }
            let start = instant(from, "from")
            let end = instant(to, "to")
            if let start, let end {
                if start >= end {
                    errors.append(FieldError("from", "must be before to"))
                } else if end.timeIntervalSince(start) > Self.maximumRange {
                    errors.append(FieldError("to", "the period may span at most 366 days"))
                }
            }
            guard errors.isEmpty, let start, let end else { return .failure(.validation(errors)) }
            return .success(Period(from: start, to: end))
        }
    }

    /// The tenant's usage report for `period`.
    static func report(
        tenant: UUID, period: Period, connection: PostgresConnection, logger: Logger
    ) async throws -> UsageReport {
        // Whole days from the daily rollups, the hours at either end from the hourly ones.
        let days = period.wholeDays
        let (dayFrom, dayTo) = (days?.from ?? period.from, days?.to ?? period.from)
        // Summed in the database, one grouping per slice of the report: a month of a busy tenant
        // is tens of thousands of rollup rows, the report a few hundred.
        let rows = try await connection.query(
            """
            WITH rollup AS (
                SELECT day, key_id, outcome, status, model_class, model, queries, input_tokens, output_tokens,
                       cost_nanodollars
                FROM usage_daily
                WHERE tenant_id = \(tenant) AND day >= (\(dayFrom)::timestamptz AT TIME ZONE 'UTC')::date
                  AND day < (\(dayTo)::timestamptz AT TIME ZONE 'UTC')::date
                UNION ALL
                SELECT (hour AT TIME ZONE 'UTC')::date, key_id, outcome, status, model_class, model, queries,
                       input_tokens, output_tokens, cost_nanodollars
                FROM usage_hourly
                WHERE tenant_id = \(tenant) AND hour >= \(period.from) AND hour < \(period.to)
                  AND NOT (hour >= \(dayFrom) AND hour < \(dayTo))
            )
            SELECT grouping(day, key_id, model_class, model)::integer, day::text, key_id, model_class, model,
                   outcome, status, sum(queries)::bigint, sum(input_tokens)::bigint, sum(output_tokens)::bigint,
                   sum(cost_nanodollars)::bigint
            FROM rollup
            GROUP BY GROUPING SETS ((day, outcome, status), (key_id, outcome, status),
                                    (model_class, model, outcome, status))
            """, logger: logger)
        var totals = UsageReport.Counters()
        var byDay: [String: UsageReport.Counters] = [:]
        var byKey: [UUID: UsageReport.Counters] = [:]
        var byModel: [String: UsageReport.Model] = [:]
        for try await (grouping, day, key, modelClass, model, outcome, status, queries, input, output, cost)
            in rows.decode((Int32, String?, UUID?, String?, String?, String, Int16, Int64, Int64, Int64, Int64).self)
        {
            func add(_ counters: inout UsageReport.Counters) {
                counters.add(
                    outcome: outcome, status: Int(status), queries: Int(queries), inputTokens: Int(input),
                    outputTokens: Int(output), costNanodollars: Int(cost))
            }
            // grouping(): a bit per column summed over (day, key_id, model_class, model), 8 to 1.
            switch grouping {
            case 0b0111:
                guard let day else { continue }
                add(&totals)
                add(&byDay[day, default: UsageReport.Counters()])
            case 0b1011:
                if let key { add(&byKey[key, default: UsageReport.Counters()]) }
            default:
                guard let modelClass, let model, !model.isEmpty else { continue }
                var entry =
                    byModel[modelClass + "\u{0}" + model] ?? UsageReport.Model(modelClass: modelClass, model: model)
                if outcome == AuditEvent.Outcome.answered { entry.computed += Int(queries) }
                if outcome.hasPrefix("cache_") { entry.cacheHits += Int(queries) }
                entry.inputTokens += Int(input)
                entry.outputTokens += Int(output)
                entry.costNanodollars += Int(cost)
                byModel[modelClass + "\u{0}" + model] = entry
            }
        }

        let latencyRows = try await connection.query(
            """
            SELECT bucket, sum(count)::bigint FROM (
                SELECT bucket, count FROM usage_latency_daily
                WHERE tenant_id = \(tenant) AND day >= (\(dayFrom)::timestamptz AT TIME ZONE 'UTC')::date
                  AND day < (\(dayTo)::timestamptz AT TIME ZONE 'UTC')::date
                UNION ALL
                SELECT bucket, count FROM usage_latency_hourly
                WHERE tenant_id = \(tenant) AND hour >= \(period.from) AND hour < \(period.to)
                  AND NOT (hour >= \(dayFrom) AND hour < \(dayTo))
            ) b GROUP BY bucket
            """, logger: logger)
        var buckets: [Int: Int] = [:]
        for try await (bucket, count) in latencyRows.decode((Int16, Int64).self) { buckets[Int(bucket)] = Int(count) }

        var canon = UsageReport.Canon(builds: 0, failedBuilds: 0, storedBytes: 0)
        let canonRows = try await connection.query(
            "SELECT builds, failed_builds, stored_bytes FROM zaas_usage_canon(\(tenant), \(period.from), \(period.to))",
            logger: logger)
        for try await (builds, failed, bytes) in canonRows.decode((Int64?, Int64?, Int64?).self) {
            canon = UsageReport.Canon(
                builds: Int(builds ?? 0), failedBuilds: Int(failed ?? 0), storedBytes: Int(bytes ?? 0))
        }

        return UsageReport(
            tenantId: tenant.lowercased, from: period.from, to: period.to, totals: totals,
            latency: UsageReport.Latency(counts: buckets, bounds: UsageSchema.latencyBoundsMs),
            byDay: byDay.keys.sorted().map { UsageReport.Day(day: $0, counters: byDay[$0]!) },
            byModel: byModel.values.sorted { ($0.modelClass, $0.model) < ($1.modelClass, $1.model) },
            byKey: byKey.keys.sorted { $0.lowercased < $1.lowercased }.map {
                UsageReport.Key(keyId: $0.lowercased, counters: byKey[$0]!)
            },
            canon: canon)
    }
}
