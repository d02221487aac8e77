import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import PostgresNIO
import Shared
import TestSupport
import Testing

@testable import ControlPlane

/// Billing (migration 24): price lists, periods closed into frozen lines, adjustments for late
/// usage, exports, isolation; the calculator on its own.
@Suite("billing: price lists, closing periods, adjustments, exports")
struct BillingTests {
    static let logger = Logger(label: "test.billing")
    typealias API = AdminAPITests

    static var utc: Calendar { UTCMonth.calendar }

    static func month(_ offset: Int, from date: Date = Date()) -> Date {
        let start = UsageStore.Period.month(of: date).from
        return utc.date(byAdding: .month, value: offset, to: start)!
    }

    /// A query event of `tenant` on `day` of `period`.
    static func event(
        _ tenant: UUID, key: UUID, period: Date, day: Int, outcome: String, status: Int = 200,
        modelClass: String = "cloud", cost: UInt64? = nil
    ) -> AuditEvent {
        let time = period.addingTimeInterval(Double(day) * 86_400 + Double.random(in: 0..<80_000))
        return AuditEvent(
            id: UUID.timeOrdered(at: time), time: time, kind: .query, tenantID: tenant, keyID: key, node: "node-1",
            outcome: outcome, status: status,
            answer: status == 200
                ? .init(
                    text: "An answer.", citations: [], confidence: 0.7,
                    modelUsed: modelClass == "cloud" ? "fake-cloud" : "zora-extractive-local", canonVersion: "base-v1",
                    route: .init(modelClass: modelClass, complexity: nil, reason: "scripted"))
                : nil,
            inputTokens: cost.map { _ in 100 }, outputTokens: cost.map { _ in 10 }, costNanoDollars: cost,
            timingsMs: ["total": 20])
    }

    static func ingest(_ fixture: API.Fixture, _ events: [AuditEvent]) async throws -> AuditIngestReply {
        try await AuditIngestController(store: AuditStore(client: fixture.db.client)).ingest(
            try events.map(AuditTrailTests.line), node: "node-1", logger: Self.logger)
    }

    static func lines(
        _ fixture: API.Fixture, token: String, _ period: Date, query: String = ""
    ) async throws -> (status: HTTPResponse.Status, items: [[String: Any]], body: String) {
        let response = try await API.send(
            fixture.client, .get, "/admin/v1/billing/periods/\(BillingStore.name(period))/lines\(query)", token: token)
        let items = (try? API.json(response))?["items"] as? [[String: Any]] ?? []
        return (response.status, items, String(buffer: response.body))
    }

    /// `meter` → amount of `tenant`'s lines of `kind`.
    static func amounts(_ items: [[String: Any]], tenant: UUID, kind: String = "charge") -> [String: String] {
        var result: [String: String] = [:]
        for item in items where item["tenant_id"] as? String == tenant.lowercased && item["kind"] as? String == kind {
            result[item["meter"] as? String ?? ""] = item["amount"] as? String
        }
        return result
    }

    static func close(_ fixture: API.Fixture, token: String, _ period: Date) async throws -> TestResponse {
        try await API.send(
            fixture.client, .post, "/admin/v1/billing/periods/\(BillingStore.name(period))/close", token: token)
    }

    static func backdateTenants(_ fixture: API.Fixture, to date: Date) async throws {
        // Tenants are under forced row-level security even for their owner: on the operator path.
        try await fixture.db.withOperator(fixture.operatorID, logger: Self.logger) { connection in
            try await connection.query("UPDATE tenants SET created_at = \(date)", logger: Self.logger)
        }
    }

    @Test(
        "two tenants, two periods: lines match the usage under each price list; closed lines are frozen; a replayed batch changes nothing; a late event becomes an adjustment on the next period; exports; isolation"
    )
    func closingAndAdjustments() async throws {
        try await API.withAPI { fixture in
            let (a, b) = (fixture.tenantA, fixture.tenantB)
            let (keyA, keyB) = (UUID(), UUID())
            let first = Self.month(-2)
            let second = Self.month(-1)
            try await Self.backdateTenants(fixture, to: Self.month(-4))
            let ops = try await API.signIn(fixture.client, "ops@zaas.example")
            let alpha = try await API.signIn(fixture.client, "admin@alpha.example")

            // B has its own prices (Enterprise-style) from four months ago; A pays Pro's.
            let custom = try await API.send(
                fixture.client, .post, "/admin/v1/billing/price-lists", token: ops,
                json: #"""
                    {"tenant_id": "\#(b)", "effective_from": "\#(BillingStore.name(Self.month(-4)))",
                     "monthly_fee": "100.00", "included_queries": 3,
                     "overage_per_thousand": {"cloud": "1000", "extractive": "500", "cache": "100"},
                     "model_cost_margin_percent": "50"}
                    """#)
            #expect(custom.status == .created, "\(String(buffer: custom.body))")

            var events: [AuditEvent] = []
            for period in [first, second] {
                events += (0..<3).map {
                    Self.event(a, key: keyA, period: period, day: $0, outcome: "answered", cost: 2_000_000)
                }
                events += (0..<2).map { _ in Self.event(a, key: keyA, period: period, day: 4, outcome: "cache_exact") }
                events.append(Self.event(a, key: keyA, period: period, day: 5, outcome: "refused", status: 429))
                events.append(Self.event(a, key: keyA, period: period, day: 6, outcome: "invalid", status: 400))
                events += (0..<5).map {
                    Self.event(b, key: keyB, period: period, day: $0, outcome: "answered", cost: 3_000_000)
                }
                events += (0..<2).map {
                    Self.event(
                        b, key: keyB, period: period, day: 10 + $0, outcome: "answered", modelClass: "extractive")
                }
                events += (0..<4).map { _ in
                    Self.event(b, key: keyB, period: period, day: 12, outcome: "cache_semantic")
                }
                events.append(Self.event(b, key: keyB, period: period, day: 13, outcome: "failed", status: 503))
            }
            #expect(try await Self.ingest(fixture, events).stored == events.count)

            // Lines are only for closed periods; a period that has not ended cannot close.
            #expect(try await Self.lines(fixture, token: ops, first).status == .conflict)
            #expect(try await Self.close(fixture, token: ops, Self.month(0)).status == .unprocessableContent)
            #expect(try await Self.close(fixture, token: alpha, first).status == .forbidden)
            let closed = try await Self.close(fixture, token: ops, first)
            #expect(closed.status == .ok, "\(String(buffer: closed.body))")
            #expect(try await Self.close(fixture, token: ops, first).status == .conflict)

            let firstLines = try await Self.lines(fixture, token: ops, first)
            #expect(firstLines.status == .ok, "\(firstLines.body)")
            // A: Pro (49.00, 50 000 included, 20 % margin): 5 billable queries, all included;
            // model cost 3 × 0.002 = 0.006 USD → 0.0072.
            #expect(
                Self.amounts(firstLines.items, tenant: a)
                    == ["subscription": "49.00", "queries_included": "0.00", "model_cost": "0.0072"])
            // B: 100.00, 3 included (to cloud, the dearest), 2 cloud × 1.00, 2 extractive × 0.50,
            // 4 cache × 0.10; model cost 5 × 0.003 = 0.015 USD, 50 % margin → 0.0225.
            #expect(
                Self.amounts(firstLines.items, tenant: b)
                    == [
                        "subscription": "100.00", "queries_cloud": "2.00", "queries_extractive": "1.00",
                        "queries_cache": "0.40", "queries_included": "0.00", "model_cost": "0.0225",
                    ])
            let included = firstLines.items.first {
                $0["tenant_id"] as? String == b.lowercased && $0["meter"] as? String == "queries_included"
            }
            #expect(included?["quantity"] as? String == "3")

            // The same batch again: nothing is counted twice. A late event for the closed period:
            // its lines stay as they were.
            #expect(try await Self.ingest(fixture, events).stored == 0)
            let late = Self.event(b, key: keyB, period: first, day: 20, outcome: "answered", cost: 4_000_000)
            #expect(try await Self.ingest(fixture, [late]).stored == 1)
            let frozen = try await Self.lines(fixture, token: ops, first)
            #expect(frozen.body == firstLines.body)

            // The next period closes with its own charges and an adjustment for the late event.
            let next = try await Self.close(fixture, token: ops, second)
            #expect(next.status == .ok, "\(String(buffer: next.body))")
            let secondLines = try await Self.lines(fixture, token: ops, second)
            #expect(Self.amounts(secondLines.items, tenant: b) == Self.amounts(firstLines.items, tenant: b))
            #expect(
                Self.amounts(secondLines.items, tenant: b, kind: "adjustment")
                    == ["queries_cloud": "1.00", "model_cost": "0.006"])
            #expect(Self.amounts(secondLines.items, tenant: a, kind: "adjustment").isEmpty)
            let adjustment = try #require(
                secondLines.items.first {
                    $0["kind"] as? String == "adjustment" && $0["meter"] as? String == "queries_cloud"
                })
            #expect(adjustment["adjusts_period"] as? String == BillingStore.name(first))
            #expect(adjustment["quantity"] as? String == "1")

            // Exports: JSON Lines and CSV, the same lines, each with a stable idempotency key.
            let jsonl = try await API.send(
                fixture.client, .get, "/admin/v1/billing/periods/\(BillingStore.name(second))/lines?format=jsonl",
                token: ops)
            #expect(jsonl.status == .ok && jsonl.headers[.contentType] == "application/x-ndjson")
            let records = String(buffer: jsonl.body).split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            #expect(records.count == secondLines.items.count)
            let keys = records.compactMap { $0["idempotency_key"] as? String }
            #expect(Set(keys).count == records.count)
            #expect(Set(keys) == Set(secondLines.items.compactMap { $0["idempotency_key"] as? String }))
            let csv = try await API.send(
                fixture.client, .get, "/admin/v1/billing/periods/\(BillingStore.name(second))/lines?format=csv",
                token: ops)
            let rows = String(buffer: csv.body).split(separator: "\r\n")
            #expect(csv.headers[.contentType] == "text/csv; charset=utf-8")
            #expect(rows.first == Substring(BillingController.csvColumns.joined(separator: ",")))
            #expect(rows.count == records.count + 1)

            // A tenant admin downloads its own lines only; another tenant's are refused.
            let own = try await Self.lines(fixture, token: alpha, second)
            #expect(!own.items.isEmpty && own.items.allSatisfy { $0["tenant_id"] as? String == a.lowercased })
            #expect(try await Self.lines(fixture, token: alpha, second, query: "?tenant_id=\(b)").status == .forbidden)
            let prices = try await API.send(fixture.client, .get, "/admin/v1/billing/price-lists", token: alpha)
            let visible = (try API.json(prices)["items"] as? [[String: Any]]) ?? []
            // The four tiers' lists, and the Pro, Team and Enterprise lists that price large-local
            // from the month after migration 25.
            #expect(visible.count == 7 && visible.allSatisfy { $0["tenant_id"] == nil }, "\(visible)")
            let largeLocal = visible.filter { ($0["overage_per_thousand"] as? [String: String])?["large-local"] != nil }
            #expect(
                Set(largeLocal.compactMap { $0["tier_id"] as? String }) == ["pro", "team", "enterprise"]
                    && largeLocal.allSatisfy { $0["effective_from"] as? String == BillingStore.name(Self.month(1)) })
            #expect(
                largeLocal.first { $0["tier_id"] as? String == "pro" }?["overage_per_thousand"] as? [String: String]
                    == ["extractive": "0.50", "local": "1.00", "cloud": "4.00", "cache": "0.10", "large-local": "2.00"])
            for bad in ["?format=xml", "?tenant_id=nope"] {
                #expect(try await Self.lines(fixture, token: ops, second, query: bad).status == .unprocessableContent)
            }
            #expect(
                try await API.send(fixture.client, .get, "/admin/v1/billing/periods/2026-13/lines", token: ops).status
                    == .notFound)
            let periods = try await API.send(fixture.client, .get, "/admin/v1/billing/periods", token: alpha)
            #expect(
                ((try API.json(periods)["items"] as? [[String: Any]]) ?? []).map { $0["state"] as? String }
                    == ["closed", "closed"])
        }
    }

    @Test(
        "price lists: bad ones are 422 naming the field, a second for the same month is 409, only operators add; the closer closes due months in order once"
    )
    func priceListsAndScheduledClose() async throws {
        try await API.withAPI { fixture in
            let ops = try await API.signIn(fixture.client, "ops@zaas.example")
            let alpha = try await API.signIn(fixture.client, "admin@alpha.example")
            func add(_ json: String, token: String) async throws -> (HTTPResponse.Status, String) {
                let response = try await API.send(
                    fixture.client, .post, "/admin/v1/billing/price-lists", token: token, json: json)
                return (response.status, String(buffer: response.body))
            }
            let good =
                #"{"tier_id": "pro", "effective_from": "2031-01", "monthly_fee": "59.00", "included_queries": 60000, "overage_per_thousand": {"cloud": "3.50"}, "model_cost_margin_percent": "12.5"}"#
            #expect(try await add(good, token: alpha).0 == .forbidden)
            #expect(try await add(good, token: ops).0 == .created)
            #expect(try await add(good, token: ops).0 == .conflict)
            for (json, field) in [
                (
                    #"{"effective_from": "2027-01", "monthly_fee": "1", "included_queries": 0, "overage_per_thousand": {}, "model_cost_margin_percent": "0"}"#,
                    "tier_id"
                ),
                (
                    #"{"tier_id": "pro", "tenant_id": "\#(fixture.tenantA)", "effective_from": "2027-02", "monthly_fee": "1", "included_queries": 0, "overage_per_thousand": {}, "model_cost_margin_percent": "0"}"#,
                    "tier_id"
                ),
                (
                    #"{"tier_id": "pro", "effective_from": "2027-2", "monthly_fee": "1", "included_queries": 0, "overage_per_thousand": {}, "model_cost_margin_percent": "0"}"#,
                    "effective_from"
                ),
                (
                    #"{"tier_id": "pro", "effective_from": "2027-02", "monthly_fee": "-1", "included_queries": 0, "overage_per_thousand": {}, "model_cost_margin_percent": "0"}"#,
                    "monthly_fee"
                ),
                (
                    #"{"tier_id": "pro", "effective_from": "2027-02", "monthly_fee": "1.0000001", "included_queries": 0, "overage_per_thousand": {}, "model_cost_margin_percent": "0"}"#,
                    "monthly_fee"
                ),
                (
                    #"{"tier_id": "pro", "effective_from": "2027-02", "currency": "EUR", "monthly_fee": "1", "included_queries": 0, "overage_per_thousand": {}, "model_cost_margin_percent": "0"}"#,
                    "currency"
                ),
                (
                    #"{"tier_id": "pro", "effective_from": "2027-02", "monthly_fee": "1", "included_queries": -1, "overage_per_thousand": {}, "model_cost_margin_percent": "0"}"#,
                    "included_queries"
                ),
                (
                    #"{"tier_id": "pro", "effective_from": "2027-02", "monthly_fee": "1", "included_queries": 0, "overage_per_thousand": {"Cloud!": "1"}, "model_cost_margin_percent": "0"}"#,
                    "overage_per_thousand"
                ),
                (
                    #"{"tier_id": "pro", "effective_from": "2027-02", "monthly_fee": "1", "included_queries": 0, "overage_per_thousand": {}, "model_cost_margin_percent": "1e3"}"#,
                    "model_cost_margin_percent"
                ),
                (
                    #"{"tier_id": "gold", "effective_from": "2027-02", "monthly_fee": "1", "included_queries": 0, "overage_per_thousand": {}, "model_cost_margin_percent": "0"}"#,
                    "tier_id"
                ),
            ] {
                let (status, body) = try await add(json, token: ops)
                #expect(status == .unprocessableContent, "\(field): \(body)")
                #expect(body.contains("\"\(field)"), "\(field): \(body)")
            }

            // The scheduled closer: from the month of the first tenant, every month that ended
            // 72 hours ago, in order, once.
            try await Self.backdateTenants(fixture, to: Date(timeIntervalSince1970: 1_789_430_400))  // 2026-09-15
            let closer = BillingCloser(
                database: fixture.db, settings: .init(enabled: true, graceHours: 72), logger: Self.logger)
            let now = Date(timeIntervalSince1970: 1_796_299_200)  // 2026-12-03T12:00:00Z
            #expect(await closer.runOnce(now: now) == ["2026-09", "2026-10"])
            #expect(await closer.runOnce(now: now) == [])
            #expect(await closer.runOnce(now: now.addingTimeInterval(86_400)) == ["2026-11"])
            let lines = try await Self.lines(
                fixture, token: ops, Self.utc.date(from: DateComponents(year: 2026, month: 10, day: 1))!)
            #expect(
                Set(lines.items.compactMap { $0["tenant_id"] as? String }) == [
                    fixture.tenantA.lowercased, fixture.tenantB.lowercased,
                ])
            #expect(
                lines.items.allSatisfy {
                    $0["meter"] as? String == "subscription" && $0["amount"] as? String == "49.00"
                })
            // Out of order: after November, a closer may not skip to January.
            let skip = try await Self.close(
                fixture, token: ops, Self.utc.date(from: DateComponents(year: 2027, month: 1, day: 1))!)
            #expect(skip.status == .unprocessableContent || skip.status == .conflict, "\(String(buffer: skip.body))")
        }
    }

    @Test(
        "a closed period's subscriptions stay as billed: a tenant created after it ended is not charged its fee by a later closing's adjustments; the close reply counts lines"
    )
    func subscriptionsStayAsBilled() async throws {
        try await API.withAPI { fixture in
            let (first, second) = (Self.month(-2), Self.month(-1))
            let ops = try await API.signIn(fixture.client, "ops@zaas.example")
            // Both tenants came after the first period ended; A still has usage in it.
            try await Self.backdateTenants(fixture, to: second.addingTimeInterval(86_400))
            let usage = (0..<2).map {
                Self.event(fixture.tenantA, key: UUID(), period: first, day: $0, outcome: "answered", cost: 1_000_000)
            }
            #expect(try await Self.ingest(fixture, usage).stored == 2)
            let closed = try await Self.close(fixture, token: ops, first)
            #expect(closed.status == .ok, "\(String(buffer: closed.body))")
            let firstLines = try await Self.lines(fixture, token: ops, first)
            // No fee, so no allowance: both queries at Pro's 4.00 a thousand.
            #expect(
                Self.amounts(firstLines.items, tenant: fixture.tenantA)
                    == ["queries_included": "0.00", "queries_cloud": "0.008", "model_cost": "0.0024"])
            #expect(Self.amounts(firstLines.items, tenant: fixture.tenantB).isEmpty)
            let reply = try API.json(closed)
            #expect(reply["charges"] as? Int == firstLines.items.count)
            #expect(reply["adjustments"] as? Int == 0)

            // Their creation is corrected to before the first period: the second bills both fees,
            // and the first's subscriptions are not reopened.
            try await Self.backdateTenants(fixture, to: Self.month(-4))
            let next = try API.json(try await Self.close(fixture, token: ops, second))
            #expect(next["adjustments"] as? Int == 0)
            let secondLines = try await Self.lines(fixture, token: ops, second)
            #expect(secondLines.items.allSatisfy { $0["kind"] as? String == "charge" })
            #expect(Self.amounts(secondLines.items, tenant: fixture.tenantA)["subscription"] == "49.00")
            #expect(Self.amounts(secondLines.items, tenant: fixture.tenantB)["subscription"] == "49.00")
        }
    }

    @Test("CSV fields: quoted per RFC 4180; a formula's leading =, +, - or @ is defused, a signed number is not")
    func csvFields() {
        #expect(BillingController.csvField("plain") == "plain")
        #expect(BillingController.csvField("a,b") == "\"a,b\"")
        #expect(BillingController.csvField("say \"hi\"") == "\"say \"\"hi\"\"\"")
        #expect(BillingController.csvField("line\nbreak") == "\"line\nbreak\"")
        #expect(BillingController.csvField("=HYPERLINK(\"x\")") == "\"'=HYPERLINK(\"\"x\"\")\"")
        #expect(BillingController.csvField("+1+2") == "'+1+2")
        #expect(BillingController.csvField("@SUM(A1)") == "'@SUM(A1)")
        #expect(BillingController.csvField("-0.25") == "-0.25")
        #expect(BillingController.csvField("-cmd") == "'-cmd")
        #expect(BillingController.csvField("-2+3") == "'-2+3")
        #expect(BillingController.csvField("+12.50") == "+12.50")
    }

    @Test("the calculator: included queries go to the dearest class first; amounts round half up to micros")
    func calculator() {
        let prices = PriceList(
            id: UUID(), tierID: "pro", tenantID: nil, effectiveFrom: Date(), currency: "USD",
            monthlyFeeMicros: 10_000_000, includedQueries: 1500,
            overagePer1kMicros: ["cloud": 4_000_000, "local": 1_000_000, "cache": 333_333],
            modelCostMarginPercent: 20)
        let usage = BillableUsage(queries: ["cloud": 1000, "local": 1000, "cache": 3], modelCostNanodollars: 1_234_567)
        let lines = BillingCalculator.lines(usage: usage, prices: prices, subscribed: true)
        let byMeter = Dictionary(uniqueKeysWithValues: lines.map { ($0.meter, $0) })
        #expect(byMeter["subscription"]?.amountMicros == 10_000_000)
        #expect(byMeter["queries_cloud"] == nil)
        #expect(byMeter["queries_local"]?.quantity == 500 && byMeter["queries_local"]?.amountMicros == 500_000)
        // 3 × 333.333 = 999.999 micros → 1000.
        #expect(byMeter["queries_cache"]?.amountMicros == 1000)
        #expect(byMeter["queries_included"]?.quantity == 1500)
        // 1 234 567 nano × 1.2 / 1000 = 1481.4804 micros → 1481.
        #expect(byMeter["model_cost"]?.amountMicros == 1481)
        #expect(BillingCalculator.lines(usage: BillableUsage(), prices: prices, subscribed: false).isEmpty)

        let adjusted = BillingCalculator.adjustments(
            now: lines, billed: ["subscription": (1, 10_000_000), "queries_local": (400, 400_000), "gone": (1, 5)])
        #expect(
            adjusted.map(\.meter) == ["gone", "model_cost", "queries_cache", "queries_included", "queries_local"])
        #expect(adjusted.first { $0.meter == "queries_local" }?.amountMicros == 100_000)
        #expect(adjusted.first { $0.meter == "gone" }?.amountMicros == -5)
    }
}
