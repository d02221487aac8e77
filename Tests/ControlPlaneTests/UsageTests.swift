import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import PostgresNIO
import Shared
import TestSupport
import Testing

@testable import ControlPlane

/// Usage metered from the audit trail (migration 23): rollups kept as events are ingested, the
/// report read from them, checked against the events themselves.
@Suite("usage: rollups of the audit trail, the report, verification and rebuild")
struct UsageTests {
    static let logger = Logger(label: "test.usage")

    /// The outcomes a query can have, with their status.
    static let outcomes: [(String, Int)] = [
        ("answered", 200), ("cache_exact", 200), ("cache_semantic", 200), ("cache_persistent", 200),
        ("refused", 429), ("refused", 403), ("invalid", 400), ("failed", 503), ("abandoned", 200),
    ]

    /// A scripted mix: for each tenant and each of its two keys, every outcome several times over
    /// the last three days, with models, tokens, cost and latencies that vary.
    static func script(tenants: [UUID], keys: [UUID: [UUID]], now: Date) -> [AuditEvent] {
        var events: [AuditEvent] = []
        var step = 0
        for tenant in tenants {
            for key in keys[tenant]! {
                for round in 0..<4 {
                    for (outcome, status) in Self.outcomes {
                        step += 1
                        let time = now.addingTimeInterval(-Double(step * 937 % (70 * 3600)) - 1)
                        let served = status == 200
                        let computed = outcome == "answered" || outcome == "abandoned"
                        let model = round % 2 == 0 ? ("cloud", "fake-cloud") : ("extractive", "zora-extractive-local")
                        events.append(
                            AuditEvent(
                                id: UUID.timeOrdered(at: time), time: time, kind: .query, tenantID: tenant, keyID: key,
                                node: "node-1", outcome: outcome, status: status,
                                answer: served
                                    ? AuditEvent.Answer(
                                        text: "An answer.", citations: [], confidence: 0.8, modelUsed: model.1,
                                        canonVersion: "base-v1",
                                        route: .init(modelClass: model.0, complexity: 0.5, reason: "scripted"))
                                    : nil,
                                inputTokens: computed && model.0 == "cloud" ? 100 + step : nil,
                                outputTokens: computed && model.0 == "cloud" ? 20 + step % 7 : nil,
                                costNanoDollars: computed && model.0 == "cloud" ? UInt64(1000 * step) : nil,
                                timingsMs: ["total": Double(step % 200) * 1.7 + 0.4]))
                    }
                }
            }
        }
        return events
    }

    /// What the report must say, computed from the events alone.
    static func expected(_ events: [AuditEvent], tenant: UUID) -> (
        totals: UsageReport.Counters, byDay: [String: UsageReport.Counters], byKey: [UUID: UsageReport.Counters],
        latencies: [Double]
    ) {
        var totals = UsageReport.Counters()
        var byDay: [String: UsageReport.Counters] = [:]
        var byKey: [UUID: UsageReport.Counters] = [:]
        var latencies: [Double] = []
        let day = Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!).year().month().day()
        for event in events where event.tenantID == tenant && event.kind == .query {
            func add(_ counters: inout UsageReport.Counters) {
                counters.add(
                    outcome: event.outcome, status: event.status, queries: 1, inputTokens: event.inputTokens ?? 0,
                    outputTokens: event.outputTokens ?? 0, costNanodollars: Int(event.costNanoDollars ?? 0))
            }
            add(&totals)
            add(&byDay[event.time.formatted(day), default: .init()])
            add(&byKey[event.keyID!, default: .init()])
            if event.status == 200 && event.outcome != "abandoned" { latencies.append(event.timingsMs["total"]!) }
        }
        return (totals, byDay, byKey, latencies)
    }

    /// The latency bucket's upper edge that the nearest-rank percentile `q` of `values` falls in.
    static func percentile(_ values: [Double], _ q: Double) -> Int? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let value = sorted[max(1, Int((q * Double(sorted.count)).rounded(.up))) - 1].rounded()
        let bounds = UsageSchema.latencyBoundsMs
        let bucket = bounds.filter { Double($0) <= value }.count
        return bounds[min(bucket, bounds.count - 1)]
    }

    static func report(
        _ client: any TestClientProtocol, token: String, _ query: String
    ) async throws -> (status: HTTPResponse.Status, report: UsageReport?, body: String) {
        let response = try await AdminAPITests.send(client, .get, "/admin/v1/usage\(query)", token: token)
        let report = try? UsageReport.decoder.decode(UsageReport.self, from: Data(response.body.readableBytesView))
        return (response.status, report, String(buffer: response.body))
    }

    static func hour(_ date: Date) -> Date {
        Date(timeIntervalSince1970: (date.timeIntervalSince1970 / 3600).rounded(.down) * 3600)
    }

    @Test(
        "a scripted mix of every outcome over two tenants and two keys: the report matches the events exactly; a replayed batch changes nothing; a late event lands in its own day; verification agrees, finds a tampered rollup, and a rebuild mends it"
    )
    func reportMatchesEvents() async throws {
        try await AdminAPITests.withAPI { fixture in
            let now = Date()
            let tenants = [fixture.tenantA, fixture.tenantB]
            let keys = Dictionary(uniqueKeysWithValues: tenants.map { ($0, [UUID(), UUID()]) })
            var events = Self.script(tenants: tenants, keys: keys, now: now)
            // An event of no tenant (an unknown key) and a change event are not usage.
            events.append(
                AuditEvent(kind: .query, tenantID: nil, node: "node-1", outcome: "refused", status: 401))
            let ingest = AuditIngestController(store: AuditStore(client: fixture.db.client))
            let lines = try events.map(AuditTrailTests.line)
            let first = try await ingest.ingest(Array(lines[..<100]), node: "node-1", logger: Self.logger)
            let rest = try await ingest.ingest(Array(lines[100...]), node: "node-2", logger: Self.logger)
            #expect(first.stored + rest.stored == events.count)

            let ops = try await AdminAPITests.signIn(fixture.client, "ops@zaas.example")
            let alpha = try await AdminAPITests.signIn(fixture.client, "viewer@alpha.example")
            let from = Self.hour(now.addingTimeInterval(-80 * 3600))
            let to = Self.hour(now).addingTimeInterval(3600)
            let range = "from=\(from.formatted(.iso8601))&to=\(to.formatted(.iso8601))"

            func check(_ tenant: UUID, token: String, _ events: [AuditEvent]) async throws -> UsageReport {
                let asked = tenant == fixture.tenantA ? "?\(range)" : "?\(range)&tenant_id=\(tenant)"
                let (status, report, body) = try await Self.report(fixture.client, token: token, asked)
                #expect(status == .ok, "\(body)")
                let got = try #require(report, "\(body)")
                let want = Self.expected(events, tenant: tenant)
                #expect(got.tenantId == tenant.lowercased)
                #expect(got.totals == want.totals)
                #expect(Dictionary(uniqueKeysWithValues: got.byDay.map { ($0.day, $0.counters) }) == want.byDay)
                #expect(
                    Dictionary(uniqueKeysWithValues: got.byKey.map { ($0.keyId, $0.counters) })
                        == Dictionary(uniqueKeysWithValues: want.byKey.map { ($0.key.lowercased, $0.value) }))
                #expect(got.latency.samples == want.latencies.count)
                #expect(got.latency.p50Ms == Self.percentile(want.latencies, 0.5))
                #expect(got.latency.p95Ms == Self.percentile(want.latencies, 0.95))
                let cloud = try #require(got.byModel.first { $0.model == "fake-cloud" })
                let cloudEvents = events.filter { $0.tenantID == tenant && $0.answer?.modelUsed == "fake-cloud" }
                #expect(cloud.modelClass == "cloud")
                #expect(cloud.computed == cloudEvents.filter { $0.outcome == "answered" }.count)
                #expect(cloud.cacheHits == cloudEvents.filter { $0.outcome.hasPrefix("cache_") }.count)
                #expect(cloud.costNanodollars == cloudEvents.compactMap(\.costNanoDollars).reduce(0) { $0 + Int($1) })
                return got
            }
            let before = try await check(fixture.tenantA, token: alpha, events)
            #expect(before.totals.queries == 2 * 4 * Self.outcomes.count)
            #expect(before.totals.refusedByLimit == 8 && before.totals.refusedOther == 8)
            _ = try await check(fixture.tenantB, token: ops, events)

            // The same batch again: nothing changes.
            let replay = try await ingest.ingest(lines, node: "node-1", logger: Self.logger)
            #expect(replay.stored == 0 && replay.duplicates == events.count)
            #expect(try await check(fixture.tenantA, token: alpha, events) == before)

            // A late event, shipped now for two days ago, lands in its own hour and day.
            let lateTime = Self.hour(now.addingTimeInterval(-49 * 3600)).addingTimeInterval(120)
            let late = AuditEvent(
                id: UUID.timeOrdered(at: lateTime), time: lateTime, kind: .query, tenantID: fixture.tenantA,
                keyID: keys[fixture.tenantA]![0], node: "node-1", outcome: "answered", status: 200,
                timingsMs: ["total": 12])
            #expect(
                try await ingest.ingest([try AuditTrailTests.line(late)], node: "node-1", logger: Self.logger).stored
                    == 1)
            events.append(late)
            _ = try await check(fixture.tenantA, token: alpha, events)

            // The rollups agree with a recomputation from the events; a tampered one is found.
            func verify() async throws -> [String: Any] {
                let response = try await AdminAPITests.send(
                    fixture.client, .post, "/admin/v1/usage/verify", token: ops,
                    json: #"{"from": "\#(from.formatted(.iso8601))", "to": "\#(to.formatted(.iso8601))"}"#)
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                return try AdminAPITests.json(response)
            }
            #expect(try await verify()["agree"] as? Bool == true)
            try await withPostgresClient(fixture.owner) { owner in
                try await owner.query(
                    """
                    UPDATE usage_hourly SET queries = queries + 5
                    WHERE tenant_id = \(fixture.tenantA) AND hour = \(Self.hour(lateTime))
                    """)
            }
            let tampered = try await verify()
            #expect(tampered["agree"] as? Bool == false)
            let differences = try #require(tampered["differences"] as? [[String: Any]])
            #expect(differences.count == 1 && differences.first?["rollup"] as? String == "hourly", "\(differences)")
            let rebuilt = try await AdminAPITests.send(
                fixture.client, .post, "/admin/v1/tenants/\(fixture.tenantA)/usage/rebuild", token: ops,
                json: #"{"from": "\#(from.formatted(.iso8601))", "to": "\#(to.formatted(.iso8601))"}"#)
            #expect(rebuilt.status == .ok, "\(String(buffer: rebuilt.body))")
            #expect(try await verify()["agree"] as? Bool == true)
            _ = try await check(fixture.tenantA, token: alpha, events)
        }
    }

    @Test(
        "each tenant reads only its own usage; operators name the tenant; bad periods are 422; nobody but the functions writes rollups"
    )
    func isolationAndBadInput() async throws {
        try await AdminAPITests.withAPI { fixture in
            let now = Date()
            let events = Self.script(
                tenants: [fixture.tenantA, fixture.tenantB],
                keys: [fixture.tenantA: [UUID(), UUID()], fixture.tenantB: [UUID(), UUID()]], now: now)
            _ = try await AuditIngestController(store: AuditStore(client: fixture.db.client)).ingest(
                try events.map(AuditTrailTests.line), node: "node-1", logger: Self.logger)
            let alpha = try await AdminAPITests.signIn(fixture.client, "admin@alpha.example")
            let ops = try await AdminAPITests.signIn(fixture.client, "ops@zaas.example")

            #expect(
                try await Self.report(fixture.client, token: alpha, "?tenant_id=\(fixture.tenantB)").status
                    == .forbidden)
            let own = try await Self.report(fixture.client, token: alpha, "")
            #expect(own.status == .ok && own.report?.tenantId == fixture.tenantA.lowercased, "\(own.body)")
            #expect(try await Self.report(fixture.client, token: ops, "").status == .unprocessableContent)
            #expect(try await Self.report(fixture.client, token: ops, "?tenant_id=\(UUID())").status == .notFound)
            #expect(try await Self.report(fixture.client, token: "nope", "").status == .unauthorized)
            for bad in [
                "?period=2026-13", "?period=26-01", "?period=2026-01&from=2026-01-01", "?from=2026-01-01",
                "?from=yesterday&to=2026-01-02", "?from=2026-01-01T00:30:00Z&to=2026-01-02T00:00:00Z",
                "?from=2026-01-02&to=2026-01-01", "?from=2024-01-01&to=2026-01-01",
            ] {
                let reply = try await Self.report(fixture.client, token: alpha, bad)
                #expect(reply.status == .unprocessableContent, "\(bad): \(reply.body)")
                #expect(reply.body.contains(AdminAPITests.type("validation-failed")), "\(bad)")
            }
            // Canon meters: A (Enterprise: overlays allowed) builds an overlay; its report counts
            // the build and the artifact's bytes, B's counts nothing.
            try await fixture.db.withOperator(fixture.operatorID, logger: Self.logger) { connection in
                try await connection.query(
                    "UPDATE tenants SET tier_id = 'enterprise' WHERE id = \(fixture.tenantA)", logger: Self.logger)
            }
            let upload = try await CanonAPITests.upload(
                fixture.client, "/admin/v1/canon", token: alpha, type: "application/json",
                body:
                    #"[{"id": "a.one", "kind": "definition", "title": "A", "body": "Alpha's own.", "status": "Proven"}]"#
            )
            #expect(upload.status == .accepted, "\(String(buffer: upload.body))")
            let version = try #require(try AdminAPITests.json(upload)["id"] as? String)
            let built = try await CanonAPITests.built(fixture.client, "/admin/v1/canon", token: alpha, id: version)
            #expect(built["state"] as? String == "ready", "\(built)")
            let withCanon = try #require(try await Self.report(fixture.client, token: alpha, "").report)
            #expect(withCanon.canon.builds == 1 && withCanon.canon.failedBuilds == 0)
            #expect(withCanon.canon.storedBytes > 0)
            let other = try #require(
                try await Self.report(fixture.client, token: ops, "?tenant_id=\(fixture.tenantB)").report)
            #expect(other.canon == UsageReport.Canon(builds: 0, failedBuilds: 0, storedBytes: 0))

            let month = try await Self.report(fixture.client, token: alpha, "?period=2020-02")
            #expect(
                month.report?.totals.queries == 0
                    && month.report?.to.timeIntervalSince(month.report!.from) == 29 * 86_400)
            for path in ["/admin/v1/usage/verify", "/admin/v1/tenants/\(fixture.tenantA)/usage/rebuild"] {
                let refused = try await AdminAPITests.send(
                    fixture.client, .post, path, token: alpha,
                    json: #"{"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}"#)
                #expect(refused.status == .forbidden, "\(path)")
            }
            let unaligned = try await AdminAPITests.send(
                fixture.client, .post, "/admin/v1/usage/verify", token: ops,
                json: #"{"from": "2026-01-01T00:10:00Z", "to": "2026-01-02T00:00:00Z"}"#)
            #expect(unaligned.status == .unprocessableContent)
            let oldRebuild = try await AdminAPITests.send(
                fixture.client, .post, "/admin/v1/tenants/\(fixture.tenantA)/usage/rebuild", token: ops,
                json: #"{"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"}"#)
            #expect(oldRebuild.status == .unprocessableContent, "\(String(buffer: oldRebuild.body))")

            // As the application role: a tenant's scope shows its rows only; no scope shows none;
            // writes are refused.
            try await fixture.db.withTenant(fixture.tenantA, logger: Self.logger) { connection in
                for table in UsageSchema.tables {
                    let tenants = try await connection.query(
                        "SELECT DISTINCT tenant_id FROM \(unescaped: table)", logger: Self.logger
                    ).collect().map { try $0.decode(UUID.self) }
                    #expect(tenants == [fixture.tenantA], "\(table)")
                }
            }
            try await fixture.db.unscoped(logger: Self.logger) { connection in
                for table in UsageSchema.tables {
                    let rows = try await AuditTrailTests.count(connection, "SELECT count(*) FROM \(unescaped: table)")
                    #expect(rows == 0, "\(table)")
                }
            }
            await #expect(throws: PSQLError.self) {
                try await fixture.db.withTenant(fixture.tenantA, logger: Self.logger) { connection in
                    try await connection.query("UPDATE usage_daily SET queries = 0", logger: Self.logger)
                }
            }
            await #expect(throws: PSQLError.self) {
                try await fixture.db.withTenant(fixture.tenantA, logger: Self.logger) { connection in
                    _ = try await connection.query(
                        "SELECT * FROM zaas_usage_verify(now() - interval '1 day', now())", logger: Self.logger
                    ).collect()
                }
            }
        }
    }

    @Test("a database upgraded with events already stored gets them rolled up by the migration, once")
    func upgradeBackfills() async throws {
        try await TestDatabase.withFresh { database in
            let before = Migrator(
                migrations: Migrations.all.filter { $0.version < 23 }, applicationRole: TestEnvironment.shared.appUser,
                logger: Self.logger)
            _ = try await withPostgresClient(database.owner) { try await before.migrate(client: $0) }
            let now = Date()
            let events = try await withPostgresClient(database.app) { client in
                let db = ScopedDatabase(client: client)
                let tenant = try await IsolationTests.seedTenant(db, slug: "early")
                let events = Self.script(tenants: [tenant.id], keys: [tenant.id: [UUID(), UUID()]], now: now)
                let reply = try await AuditIngestController(store: AuditStore(client: client)).ingest(
                    try events.map(AuditTrailTests.line), node: "node-1", logger: Self.logger)
                #expect(reply.stored == events.count)
                return events
            }
            let after = Migrator(applicationRole: TestEnvironment.shared.appUser, logger: Self.logger)
            let report = try await withPostgresClient(database.owner) { try await after.migrate(client: $0) }
            #expect(report.applied.contains(23))
            try await withPostgresClient(database.app) { client in
                try await ScopedDatabase(client: client).withOperator(UUID(), logger: Self.logger) { connection in
                    let queries = try await AuditTrailTests.count(
                        connection, "SELECT coalesce(sum(queries), 0)::bigint FROM usage_hourly")
                    #expect(queries == events.count)
                    let from = Self.hour(now.addingTimeInterval(-80 * 3600))
                    let to = Self.hour(now).addingTimeInterval(3600)
                    let differences = try await AuditTrailTests.count(
                        connection, "SELECT count(*) FROM zaas_usage_verify(\(from), \(to))")
                    #expect(differences == 0)
                }
            }
        }
    }

}
