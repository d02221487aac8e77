import Foundation
import Logging
import PostgresNIO
import Shared

/// Billing's SQL (migration 24): price lists, periods, closing, lines. Runs inside `ScopedDatabase`
/// transactions: closing and adding prices on the operator path, reads in the caller's scope.
enum BillingStore {
    /// How far back a closing looks for usage that reached closed periods late.
    static let adjustmentMonths = 12

    static func nextMonth(_ period: Date) -> Date { UTCMonth.adding(1, to: period) }
    static func previousMonth(_ period: Date) -> Date { UTCMonth.adding(-1, to: period) }

    /// `YYYY-MM` of a period.
    static func name(_ period: Date) -> String { UTCMonth.name(period) }

    enum CloseError: Error, Equatable {
        case alreadyClosed
        case notOver
        case previousOpen(String)
    }

    struct Closed: Sendable, Equatable {
        var charges: Int
        var adjustments: Int
    }

    /// Closes `period` (the first of a month): every tenant's lines computed from the rollups,
    /// frozen with their inputs; and, for each closed period of the last year, adjustment lines
    /// for what its usage grew by since it was billed. One close at a time (an advisory lock);
    /// periods close in order once one has.
    static func close(
        _ period: Date, by actor: String, now: Date = Date(), connection: PostgresConnection, logger: Logger
    ) async throws -> Closed {
        let end = nextMonth(period)
        guard end <= now else { throw CloseError.notOver }
        try await connection.query("SELECT pg_advisory_xact_lock(hashtext('zaas_billing_close'))", logger: logger)
        try await connection.query(
            "INSERT INTO billing_periods (period, state) VALUES (\(period)::date, 'open') ON CONFLICT DO NOTHING",
            logger: logger)
        var closedPeriods: [Date] = []
        for try await (day, state) in try await connection.query(
            "SELECT period::timestamptz, state FROM billing_periods ORDER BY period", logger: logger
        ).decode((Date, String).self) where state == "closed" {
            closedPeriods.append(day)
        }
        if closedPeriods.contains(period) { throw CloseError.alreadyClosed }
        if let last = closedPeriods.last, last < period, nextMonth(last) != period {
            throw CloseError.previousOpen(name(previousMonth(period)))
        }

        var charges = 0
        for (tenant, lines) in try await Self.compute(period, connection: connection, logger: logger) {
            for line in lines.lines {
                try await Self.insert(
                    line, period: period, tenant: tenant, kind: "charge", adjusts: nil, prices: lines.prices,
                    connection: connection, logger: logger)
                charges += 1
            }
        }

        var adjustments = 0
        let since = UTCMonth.adding(-Self.adjustmentMonths, to: period)
        for earlier in closedPeriods where earlier < period && earlier >= since {
            let billed = try await Self.billed(earlier, connection: connection, logger: logger)
            for (tenant, now) in try await Self.compute(
                earlier, billed: billed, connection: connection, logger: logger)
            {
                let before = billed[tenant]?.meters ?? [:]
                for line in BillingCalculator.adjustments(now: now.lines, billed: before) {
                    try await Self.insert(
                        line, period: period, tenant: tenant, kind: "adjustment", adjusts: earlier, prices: now.prices,
                        connection: connection, logger: logger)
                    adjustments += 1
                }
            }
        }
        try await connection.query(
            """
            UPDATE billing_periods SET state = 'closed', closed_at = \(now), closed_by = \(actor)
            WHERE period = \(period)::date
            """, logger: logger)
        return Closed(charges: charges, adjustments: adjustments)
    }

    /// Every tenant's lines for `period` as the rollups stand now, with the price list used.
    /// Closing: the list in force; tenants existing before the period ended pay the monthly fee
    /// unless deleted before it began. Adjusting a closed period (`billed`, what it was billed):
    /// each tenant's list and subscription stay as billed, only usage may have grown.
    static func compute(
        _ period: Date, billed: [UUID: Billed]? = nil, connection: PostgresConnection, logger: Logger
    ) async throws -> [UUID: (prices: PriceList, lines: [BillingLine])] {
        let end = nextMonth(period)
        var usage: [UUID: BillableUsage] = [:]
        let rows = try await connection.query(
            """
            SELECT tenant_id,
                   CASE WHEN outcome LIKE 'cache\\_%' THEN 'cache'
                        WHEN outcome IN ('answered', 'abandoned') THEN
                            CASE WHEN model_class = '' THEN 'extractive' ELSE model_class END
                   END AS class,
                   sum(queries)::bigint, sum(cost_nanodollars)::bigint
            FROM usage_daily
            WHERE day >= \(period)::date AND day < \(end)::date
            GROUP BY 1, 2
            """, logger: logger)
        for try await (tenant, modelClass, queries, cost) in rows.decode((UUID, String?, Int64, Int64).self) {
            usage[tenant, default: BillableUsage()].modelCostNanodollars += cost
            if let modelClass { usage[tenant, default: BillableUsage()].queries[modelClass, default: 0] += queries }
        }
        var tenants: [(UUID, String, Bool)] = []
        for try await (id, tier, subscribed) in try await connection.query(
            """
            SELECT id, tier_id, created_at < \(end) AND NOT (status = 'deleted' AND updated_at < \(period))
            FROM tenants ORDER BY id
            """, logger: logger
        ).decode((UUID, String, Bool).self) {
            tenants.append((id, tier, subscribed))
        }
        let lists = try await Self.priceLists(connection: connection, logger: logger)
        var result: [UUID: (prices: PriceList, lines: [BillingLine])] = [:]
        for (tenant, tier, subscribed) in tenants {
            let usage = usage[tenant] ?? BillableUsage()
            let bill = billed?[tenant]
            let subscribed = billed == nil ? subscribed : bill?.meters["subscription"] != nil
            guard subscribed || !usage.queries.isEmpty || bill != nil else { continue }
            let prices =
                bill.flatMap { bill in lists.first { $0.id == bill.priceList } }
                ?? Self.inForce(lists, tenant: tenant, tier: tier, period: period)
            guard let prices else { continue }
            let lines = BillingCalculator.lines(usage: usage, prices: prices, subscribed: subscribed)
            result[tenant] = (prices, lines)
        }
        return result
    }

    /// The list in force for a tenant in a period: its own, else its tier's, the latest that
    /// took effect by the period's first day.
    static func inForce(_ lists: [PriceList], tenant: UUID, tier: String, period: Date) -> PriceList? {
        let applicable = lists.filter { $0.effectiveFrom <= period }
        return applicable.filter { $0.tenantID == tenant }.max { $0.effectiveFrom < $1.effectiveFrom }
            ?? applicable.filter { $0.tierID == tier }.max { $0.effectiveFrom < $1.effectiveFrom }
    }

    /// What has been billed for a period, per tenant: each meter's quantity and amount over its
    /// charge and every adjustment of it since, and the price list it was billed under.
    struct Billed: Sendable {
        var priceList: UUID
        var meters: [String: (quantity: Decimal, amountMicros: Int64)] = [:]
    }

    static func billed(_ period: Date, connection: PostgresConnection, logger: Logger) async throws -> [UUID: Billed] {
        var result: [UUID: Billed] = [:]
        let rows = try await connection.query(
            """
            SELECT tenant_id, meter, sum(quantity)::text, sum(amount_micros)::bigint,
                   (array_agg(price_list_id ORDER BY created_at))[1]
            FROM billing_lines
            WHERE (kind = 'charge' AND period = \(period)::date) OR adjusts_period = \(period)::date
            GROUP BY tenant_id, meter
            """, logger: logger)
        for try await (tenant, meter, quantity, amount, list) in rows.decode((UUID, String, String, Int64, UUID).self) {
            result[tenant, default: Billed(priceList: list)].meters[meter] = (Decimal(string: quantity) ?? 0, amount)
        }
        return result
    }

    static func priceLists(connection: PostgresConnection, logger: Logger) async throws -> [PriceList] {
        var lists: [PriceList] = []
        let rows = try await connection.query(
            """
            SELECT id, tier_id, tenant_id, effective_from::timestamptz, currency, monthly_fee_micros, included_queries,
                   overage_per_1k_micros::text, model_cost_margin_percent::text
            FROM price_lists ORDER BY effective_from, id
            """, logger: logger)
        for try await row in rows.decode((UUID, String?, UUID?, Date, String, Int64, Int64, String, String).self) {
            let overage =
                (try? JSONSerialization.jsonObject(with: Data(row.7.utf8)) as? [String: Any])?.compactMapValues {
                    ($0 as? NSNumber)?.int64Value
                } ?? [:]
            lists.append(
                PriceList(
                    id: row.0, tierID: row.1, tenantID: row.2, effectiveFrom: row.3, currency: row.4,
                    monthlyFeeMicros: row.5, includedQueries: row.6, overagePer1kMicros: overage,
                    modelCostMarginPercent: Decimal(string: row.8) ?? 0))
        }
        return lists
    }

    static func insert(
        _ line: BillingLine, period: Date, tenant: UUID, kind: String, adjusts: Date?, prices: PriceList,
        connection: PostgresConnection, logger: Logger
    ) async throws {
        let key = Self.idempotencyKey(period: period, tenant: tenant, meter: line.meter, kind: kind, adjusts: adjusts)
        let inputs = String(
            decoding: try JSONSerialization.data(withJSONObject: line.inputs, options: [.sortedKeys]), as: UTF8.self)
        try await connection.query(
            """
            INSERT INTO billing_lines (period, tenant_id, meter, kind, adjusts_period, quantity, unit,
                                       unit_price_micros, amount_micros, currency, price_list_id, inputs,
                                       idempotency_key)
            VALUES (\(period)::date, \(tenant), \(line.meter), \(kind), \(adjusts)::date, \("\(line.quantity)")::numeric,
                    \(line.unit), \("\(line.unitPriceMicros)")::numeric, \(line.amountMicros), \(prices.currency),
                    \(prices.id), \(inputs)::jsonb, \(key))
            """, logger: logger)
    }

    /// `zaas-<period>-<tenant>-<meter>[-adj-<period>]`: the same line always has the same key, so a
    /// billing system that imports an export twice records it once.
    static func idempotencyKey(period: Date, tenant: UUID, meter: String, kind: String, adjusts: Date?) -> String {
        "zaas-\(name(period))-\(tenant.lowercased)-\(meter)" + (adjusts.map { "-adj-\(name($0))" } ?? "")
    }
}
