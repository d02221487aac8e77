import Foundation

/// A price list as stored (migration 24): money in millionths of the currency unit.
struct PriceList: Sendable, Equatable {
    let id: UUID
    let tierID: String?
    let tenantID: UUID?
    /// The first day (UTC) of the month it applies from.
    let effectiveFrom: Date
    let currency: String
    let monthlyFeeMicros: Int64
    let includedQueries: Int64
    /// Per 1 000 queries, by class (`extractive`, `local`, `cloud`, …, and `cache` for cache hits).
    let overagePer1kMicros: [String: Int64]
    /// Added to the model cost passed through, in percent (`20` is 20 %).
    let modelCostMarginPercent: Decimal
}

/// One period's billable usage of one tenant, from the daily rollups.
struct BillableUsage: Sendable, Equatable {
    /// Billable queries by class: answers computed (and streams left after they began) by the
    /// route's model class, cache hits of every kind as `cache`. Refusals, invalid and failed
    /// queries are not billed.
    var queries: [String: Int64] = [:]
    /// Model cost at the catalog's prices, in billionths of a US dollar.
    var modelCostNanodollars: Int64 = 0
}

/// A line before it is stored: the meter, what it counts, at what price, for how much.
struct BillingLine: Sendable, Equatable {
    var meter: String
    var quantity: Decimal
    var unit: String
    var unitPriceMicros: Decimal
    var amountMicros: Int64
    /// The figures it was computed from.
    var inputs: [String: String]
}

/// What a period of usage costs under a price list (docs/billing.md): the monthly fee, the
/// queries the fee includes, the queries beyond it by class, and the model cost with the margin.
/// Pure: the closing of a period and its adjustments both call it.
enum BillingCalculator {
    static func lines(usage: BillableUsage, prices: PriceList, subscribed: Bool) -> [BillingLine] {
        var lines: [BillingLine] = []
        if subscribed {
            lines.append(
                BillingLine(
                    meter: "subscription", quantity: 1, unit: "month",
                    unitPriceMicros: Decimal(prices.monthlyFeeMicros),
                    amountMicros: prices.monthlyFeeMicros, inputs: [:]))
        }
        // The included queries go to the dearest classes first (the customer's favour), so the
        // overage is billed at the cheapest prices the usage allows. Ties by name.
        let classes = usage.queries.keys.sorted {
            let (a, b) = (prices.overagePer1kMicros[$0] ?? 0, prices.overagePer1kMicros[$1] ?? 0)
            return a != b ? a > b : $0 < $1
        }
        var allowance = subscribed ? prices.includedQueries : 0
        var included: Int64 = 0
        for modelClass in classes {
            let count = usage.queries[modelClass] ?? 0
            let covered = min(count, allowance)
            allowance -= covered
            included += covered
            let over = count - covered
            guard over > 0 else { continue }
            let per1k = prices.overagePer1kMicros[modelClass] ?? 0
            lines.append(
                BillingLine(
                    meter: "queries_\(modelClass)", quantity: Decimal(over), unit: "query",
                    unitPriceMicros: Decimal(per1k) / 1000,
                    amountMicros: Self.rounded(Decimal(over) * Decimal(per1k) / 1000),
                    inputs: [
                        "queries": String(count), "included": String(covered), "price_per_1k_micros": String(per1k),
                    ]))
        }
        let total = usage.queries.values.reduce(0, +)
        if total > 0 {
            lines.append(
                BillingLine(
                    meter: "queries_included", quantity: Decimal(included), unit: "query", unitPriceMicros: 0,
                    amountMicros: 0,
                    inputs: ["billable_queries": String(total), "included_queries": String(prices.includedQueries)]))
        }
        if usage.modelCostNanodollars > 0 {
            let factor = 1 + prices.modelCostMarginPercent / 100
            let cost = Decimal(usage.modelCostNanodollars) / 1_000_000_000
            lines.append(
                BillingLine(
                    meter: "model_cost", quantity: cost, unit: "USD", unitPriceMicros: factor * 1_000_000,
                    amountMicros: Self.rounded(Decimal(usage.modelCostNanodollars) * factor / 1000),
                    inputs: [
                        "cost_nanodollars": String(usage.modelCostNanodollars),
                        "margin_percent": "\(prices.modelCostMarginPercent)",
                    ]))
        }
        return lines
    }

    /// Half away from zero, to whole micros.
    static func rounded(_ value: Decimal) -> Int64 {
        var value = value
        var result = Decimal()
        NSDecimalRound(&result, &value, 0, value < 0 ? .down : .plain)
        return NSDecimalNumber(decimal: result).int64Value
    }

    /// The differences between what a period's lines should now be and what was billed for it,
    /// meter by meter: the adjustments to carry on the next invoice.
    static func adjustments(now: [BillingLine], billed: [String: (quantity: Decimal, amountMicros: Int64)])
        -> [BillingLine]
    {
        let current = Dictionary(now.map { ($0.meter, $0) }, uniquingKeysWith: { first, _ in first })
        var result: [BillingLine] = []
        for meter in Set(current.keys).union(billed.keys).sorted() {
            let line = current[meter]
            let before = billed[meter] ?? (0, 0)
            let quantity = (line?.quantity ?? 0) - before.quantity
            let amount = (line?.amountMicros ?? 0) - before.amountMicros
            guard quantity != 0 || amount != 0 else { continue }
            var inputs = line?.inputs ?? [:]
            inputs["billed_quantity"] = "\(before.quantity)"
            inputs["billed_amount_micros"] = String(before.amountMicros)
            result.append(
                BillingLine(
                    meter: meter, quantity: quantity, unit: line?.unit ?? "query",
                    unitPriceMicros: line?.unitPriceMicros ?? 0, amountMicros: amount, inputs: inputs))
        }
        return result
    }
}
