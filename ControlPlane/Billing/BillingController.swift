import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import Shared

/// Billing over the admin API (docs/billing.md):
///
/// - `GET /admin/v1/billing/price-lists`; `POST` (operators) adds a version;
/// - `GET /admin/v1/billing/periods`: the months and whether they are closed;
/// - `POST /admin/v1/billing/periods/{period}/close` (operators);
/// - `GET /admin/v1/billing/periods/{period}/lines`: a closed period's lines, as JSON, JSON Lines
///   (`format=jsonl`) or CSV (`format=csv`): an operator's for every tenant (`tenant_id` narrows),
///   a tenant admin's own invoice lines.
struct BillingController: Sendable {
    let database: ScopedDatabase

    struct NewPriceList: Decodable {
        let tierId: String?
        let tenantId: UUID?
        let effectiveFrom: String
        let currency: String?
        let monthlyFee: String
        let includedQueries: Int64
        let overagePerThousand: [String: String]
        let modelCostMarginPercent: String
    }

    func addRoutes(to router: Router<AdminRequestContext>) {
        let billing = router.group("/admin/v1/billing", context: AuthenticatedContext.self)
        billing.get("price-lists") { _, context in
            let lists = try await self.database.within(context.principal, logger: context.logger) {
                try await BillingStore.priceLists(connection: $0, logger: context.logger)
            }
            return try StrictJSON.response(["items": lists.map(PriceListView.init)])
        }
        billing.get("periods") { _, context in
            let periods = try await self.database.within(context.principal, logger: context.logger) {
                connection in
                var periods: [PeriodView] = []
                for try await (period, state, closedAt, closedBy) in try await connection.query(
                    "SELECT period::timestamptz, state, closed_at, closed_by FROM billing_periods ORDER BY period DESC",
                    logger: context.logger
                ).decode((Date, String, Date?, String?).self) {
                    periods.append(
                        PeriodView(
                            period: BillingStore.name(period), state: state, closedAt: closedAt, closedBy: closedBy))
                }
                return periods
            }
            return try StrictJSON.response(["items": periods])
        }
        billing.get("periods/:period/lines") { request, context in
            let period = try Self.period(context)
            let query = request.uri.queryParameters
            let format = query["format"].map(String.init) ?? "json"
            guard ["json", "jsonl", "csv"].contains(format) else {
                throw Problem.validation([FieldError("format", "must be json, jsonl or csv")])
            }
            var tenant: UUID?
            if let text = query["tenant_id"] {
                guard let id = UUID(uuidString: String(text)) else {
                    throw Problem.validation([FieldError("tenant_id", "must be a UUID")])
                }
                if case .tenantAdmin(_, let own, _) = context.principal, own != id {
                    throw Problem.forbidden("A tenant admin reads its own tenant's lines.")
                }
                tenant = id
            }
            let lines = try await self.database.within(context.principal, logger: context.logger) {
                connection in
                var closed = false
                for try await state in try await connection.query(
                    "SELECT state FROM billing_periods WHERE period = \(period)::date", logger: context.logger
                ).decode(String.self) {
                    closed = state == "closed"
                }
                guard closed else {
                    throw Problem(
                        slug: "period-open", title: "Conflict", status: .conflict,
                        detail: "Billing period \(BillingStore.name(period)) is not closed: it has no lines yet.")
                }
                return try await Self.lines(period, tenant: tenant, connection: connection, logger: context.logger)
            }
            return try Self.render(lines, format: format, period: period)
        }
        let operators = router.group("/admin/v1/billing", context: OperatorContext.self)
        operators.post("price-lists") { request, context in
            let body = try await StrictJSON.decode(
                NewPriceList.self, from: request, context: context,
                allowedFields: [
                    "tier_id", "tenant_id", "effective_from", "currency", "monthly_fee", "included_queries",
                    "overage_per_thousand", "model_cost_margin_percent",
                ])
            let list = try Self.validate(body)
            let created = try await self.database.withOperator(context.operatorID, logger: context.logger) {
                connection in
                do {
                    return try await Self.add(
                        list, by: "operator:\(context.operatorID.lowercased)", connection: connection,
                        logger: context.logger)
                } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
                    throw Problem(
                        slug: "price-list-exists", title: "Conflict", status: .conflict,
                        detail: "A price list for this tier or tenant already takes effect that month.")
                } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23503" {
                    throw Problem.validation([
                        FieldError(list.tierID == nil ? "tenant_id" : "tier_id", "does not exist")
                    ])
                }
            }
            return try StrictJSON.response(PriceListView(created), status: .created)
        }
        operators.post("periods/:period/close") { _, context in
            let period = try Self.period(context)
            let closed = try await self.database.withOperator(context.operatorID, logger: context.logger) {
                connection in
                do {
                    return try await BillingStore.close(
                        period, by: "operator:\(context.operatorID.lowercased)", connection: connection,
                        logger: context.logger)
                } catch let error as BillingStore.CloseError {
                    throw Self.problem(error, period: period)
                }
            }
            context.logger.notice(
                "billing period closed",
                metadata: [
                    "period": "\(BillingStore.name(period))", "charges": "\(closed.charges)",
                    "adjustments": "\(closed.adjustments)",
                ])
            return try StrictJSON.response(
                ClosedView(period: BillingStore.name(period), charges: closed.charges, adjustments: closed.adjustments))
        }
    }

    /// The reply to a close: the period and how many charge and adjustment lines it wrote.
    struct ClosedView: Encodable {
        let period: String
        let charges: Int
        let adjustments: Int
    }

    static func problem(_ error: BillingStore.CloseError, period: Date) -> Problem {
        switch error {
        case .alreadyClosed:
            Problem(
                slug: "period-closed", title: "Conflict", status: .conflict,
                detail: "Billing period \(BillingStore.name(period)) is closed already; its lines are frozen.")
        case .notOver:
            Problem.validation([FieldError("period", "has not ended yet")])
        case .previousOpen(let previous):
            Problem(
                slug: "previous-period-open", title: "Conflict", status: .conflict,
                detail: "Close \(previous) first: periods close in order.")
        }
    }

    static func period(_ context: some RequestContext) throws -> Date {
        guard let text = context.parameters.get("period"), let period = UsageStore.Period.month(text) else {
            throw Problem.notFound("No such billing period (YYYY-MM).")
        }
        return period.from
    }

    // MARK: Price lists

    /// A price list as the API shows it: money as decimal strings in the currency's units.
    struct PriceListView: Encodable {
        let id: String
        let tierId: String?
        let tenantId: String?
        let effectiveFrom: String
        let currency: String
        let monthlyFee: String
        let includedQueries: Int64
        let overagePerThousand: [String: String]
        let modelCostMarginPercent: String

        init(_ list: PriceList) {
            self.id = list.id.lowercased
            self.tierId = list.tierID
            self.tenantId = list.tenantID?.lowercased
            self.effectiveFrom = BillingStore.name(list.effectiveFrom)
            self.currency = list.currency
            self.monthlyFee = Money.text(micros: Decimal(list.monthlyFeeMicros))
            self.includedQueries = list.includedQueries
            self.overagePerThousand = list.overagePer1kMicros.mapValues { Money.text(micros: Decimal($0)) }
            self.modelCostMarginPercent = "\(list.modelCostMarginPercent)"
        }
    }

    struct PeriodView: Encodable {
        let period: String
        let state: String
        let closedAt: Date?
        let closedBy: String?
    }

    static func validate(_ body: NewPriceList) throws -> PriceList {
        var errors: [FieldError] = []
        if (body.tierId == nil) == (body.tenantId == nil) {
            errors.append(FieldError("tier_id", "give either tier_id or tenant_id"))
        }
        let month = UsageStore.Period.month(body.effectiveFrom)
        if month == nil { errors.append(FieldError("effective_from", "must be a month, YYYY-MM")) }
        let currency = body.currency ?? "USD"
        if currency != "USD" {
            errors.append(FieldError("currency", "only USD for now: the model catalog's prices are in USD"))
        }
        func money(_ text: String, _ field: String) -> Int64? {
            guard let micros = Money.micros(text), micros <= 1_000_000_000_000_000 else {
                errors.append(FieldError(field, "must be an amount ≥ 0 with at most 6 decimals, e.g. 49.00"))
                return nil
            }
            return micros
        }
        let fee = money(body.monthlyFee, "monthly_fee")
        if !(0...1_000_000_000_000).contains(body.includedQueries) {
            errors.append(FieldError("included_queries", "must be from 0 to 10^12"))
        }
        var overage: [String: Int64] = [:]
        for (modelClass, text) in body.overagePerThousand.sorted(by: { $0.key < $1.key }) {
            guard modelClass.range(of: "^[a-z][a-z0-9_-]{0,31}$", options: .regularExpression) != nil else {
                errors.append(
                    FieldError("overage_per_thousand", "\(modelClass.prefix(40)) is not a model class or cache"))
                continue
            }
            if let micros = money(text, "overage_per_thousand.\(modelClass)") { overage[modelClass] = micros }
        }
        var margin: Decimal?
        if body.modelCostMarginPercent.range(of: #"^[0-9]{1,4}(\.[0-9]{1,2})?$"#, options: .regularExpression) != nil,
            let value = Decimal(string: body.modelCostMarginPercent), value <= 1000
        {
            margin = value
        } else {
            errors.append(
                FieldError("model_cost_margin_percent", "must be a number from 0 to 1000, at most 2 decimals"))
        }
        guard errors.isEmpty, let month, let fee, let margin else { throw Problem.validation(errors) }
        return PriceList(
            id: UUID(), tierID: body.tierId, tenantID: body.tenantId, effectiveFrom: month.from, currency: currency,
            monthlyFeeMicros: fee, includedQueries: body.includedQueries, overagePer1kMicros: overage,
            modelCostMarginPercent: margin)
    }

    static func add(
        _ list: PriceList, by actor: String, connection: PostgresConnection, logger: Logger
    ) async throws -> PriceList {
        let overage = String(
            decoding: try JSONSerialization.data(withJSONObject: list.overagePer1kMicros, options: [.sortedKeys]),
            as: UTF8.self)
        try await connection.query(
            """
            INSERT INTO price_lists (id, tier_id, tenant_id, effective_from, currency, monthly_fee_micros,
                                     included_queries, overage_per_1k_micros, model_cost_margin_percent, created_by)
            VALUES (\(list.id), \(list.tierID), \(list.tenantID), \(list.effectiveFrom)::date, \(list.currency),
                    \(list.monthlyFeeMicros), \(list.includedQueries), \(overage)::jsonb,
                    \("\(list.modelCostMarginPercent)")::numeric, \(actor))
            """, logger: logger)
        return list
    }

    // MARK: Lines

    /// A billing line as exported: money in the currency's units as decimal strings.
    struct LineView: Encodable {
        let idempotencyKey: String
        let period: String
        let tenantId: String
        let tenantSlug: String
        let meter: String
        let kind: String
        let adjustsPeriod: String?
        let quantity: String
        let unit: String
        let unitPrice: String
        let amount: String
        let currency: String
        let priceListId: String
        let inputs: [String: String]
    }

    static func lines(
        _ period: Date, tenant: UUID?, connection: PostgresConnection, logger: Logger
    ) async throws -> [LineView] {
        var lines: [LineView] = []
        let rows = try await connection.query(
            """
            SELECT l.idempotency_key, l.tenant_id, t.slug, l.meter, l.kind, l.adjusts_period::timestamptz,
                   l.quantity::text, l.unit, l.unit_price_micros::text, l.amount_micros, l.currency, l.price_list_id,
                   l.inputs::text
            FROM billing_lines l JOIN tenants t ON t.id = l.tenant_id
            WHERE l.period = \(period)::date AND (\(tenant)::uuid IS NULL OR l.tenant_id = \(tenant))
            ORDER BY t.slug, l.kind, l.adjusts_period NULLS FIRST, l.meter
            """, logger: logger)
        for try await row in rows.decode(
            (String, UUID, String, String, String, Date?, String, String, String, Int64, String, UUID, String).self)
        {
            let inputs =
                (try? JSONSerialization.jsonObject(with: Data(row.12.utf8)) as? [String: String]) ?? [:]
            lines.append(
                LineView(
                    idempotencyKey: row.0, period: BillingStore.name(period), tenantId: row.1.lowercased,
                    tenantSlug: row.2,
                    meter: row.3, kind: row.4, adjustsPeriod: row.5.map(BillingStore.name),
                    quantity: NSDecimalNumber(decimal: Decimal(string: row.6) ?? 0).stringValue, unit: row.7,
                    unitPrice: Money.text(micros: Decimal(string: row.8) ?? 0, places: 9),
                    amount: Money.text(micros: Decimal(row.9)), currency: row.10, priceListId: row.11.lowercased,
                    inputs: inputs))
        }
        return lines
    }

    static let csvColumns = [
        "idempotency_key", "period", "tenant_id", "tenant_slug", "meter", "kind", "adjusts_period", "quantity", "unit",
        "unit_price", "amount", "currency", "price_list_id",
    ]

    static func render(_ lines: [LineView], format: String, period: Date) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        var headers: HTTPFields = [.cacheControl: "no-store"]
        var body = ByteBuffer()
        switch format {
        case "jsonl":
            headers[.contentType] = "application/x-ndjson"
            for line in lines {
                body.writeBytes(try encoder.encode(line))
                body.writeString("\n")
            }
        case "csv":
            headers[.contentType] = "text/csv; charset=utf-8"
            body.writeString(Self.csvColumns.joined(separator: ",") + "\r\n")
            for line in lines {
                let fields = [
                    line.idempotencyKey, line.period, line.tenantId, line.tenantSlug, line.meter, line.kind,
                    line.adjustsPeriod ?? "", line.quantity, line.unit, line.unitPrice, line.amount, line.currency,
                    line.priceListId,
                ]
                body.writeString(fields.map(Self.csvField).joined(separator: ",") + "\r\n")
            }
        default:
            return try StrictJSON.response(["items": lines])
        }
        headers[.contentDisposition] =
            #"attachment; filename="zaas-billing-\#(BillingStore.name(period)).\#(format == "csv" ? "csv" : "jsonl")""#
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }

    /// RFC 4180: quoted when it holds a comma, quote or line break; a leading =, +, - or @ is
    /// prefixed with ' so a spreadsheet does not run it.
    static func csvField(_ text: String) -> String {
        var text = text
        if let first = text.first, "=+-@".contains(first),
            text.wholeMatch(of: /[+-]?[0-9]+(\.[0-9]+)?/) == nil
        {
            text = "'" + text
        }
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// Money as the APIs write it: decimal strings in the currency's units, from integer millionths.
enum Money {
    /// `49.000000` → 49000000; nil for negatives, more than 6 decimals or anything not a plain number.
    static func micros(_ text: String) -> Int64? {
        guard text.range(of: #"^[0-9]{1,13}(\.[0-9]{1,6})?$"#, options: .regularExpression) != nil,
            let value = Decimal(string: text)
        else { return nil }
        return NSDecimalNumber(decimal: value * 1_000_000).int64Value
    }

    /// 49000000 → `49.00`; at least two decimals, at most `places` (trailing zeros dropped).
    static func text(micros: Decimal, places: Int = 6) -> String {
        var value = micros / 1_000_000
        var rounded = Decimal()
        NSDecimalRound(&rounded, &value, places, .plain)
        var text = NSDecimalNumber(decimal: rounded).stringValue
        if !text.contains(".") { text += ".00" } else if text.split(separator: ".")[1].count == 1 { text += "0" }
        return text
    }
}
