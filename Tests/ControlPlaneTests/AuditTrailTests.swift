import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import PostgresNIO
import Shared
import TestSupport
import Testing

@testable import ControlPlane

/// The audit trail in PostgreSQL (migration 19): ingestion once per event, row-level security,
/// partitions and retention, against the real database as the application role.
@Suite("the audit trail in PostgreSQL: idempotent ingest, isolation, partitions and retention")
struct AuditTrailTests {
    static let logger = Logger(label: "test.audit")

    static func line(_ event: AuditEvent) throws -> [UInt8] {
        Array(try AuditEvent.encoder.encode(event))
    }

    static func event(tenant: UUID?, at time: Date = Date(), outcome: String = "answered") -> AuditEvent {
        AuditEvent(
            id: UUID.timeOrdered(at: time), time: time, kind: .query, tenantID: tenant, node: "node-1",
            outcome: outcome, status: outcome == "answered" ? 200 : 429,
            question: .init(text: "What is [email]?", redacted: true, fingerprint: String(repeating: "ab", count: 32)),
            timingsMs: ["total": 1.5])
    }

    static func count(
        _ connection: PostgresConnection,
        _ sql: PostgresQuery = "SELECT count(*) FROM audit_events WHERE kind = 'query'"
    )
        async throws -> Int
    {
        var total = 0
        for try await value in try await connection.query(sql, logger: logger).decode(Int64.self) { total = Int(value) }
        return total
    }

    /// `gzip -dc` of `bytes`.
    static func gunzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("\(UUID()).gz")
        try Data(bytes).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/gzip")
        process.arguments = ["-dc", file.path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "gzip could not read the export")
        return Array(data)
    }

    static func storedIDs(_ owner: PostgresClient.Configuration) async throws -> Set<UUID> {
        try await withPostgresClient(owner) { client in
            var ids: Set<UUID> = []
            for try await id in try await client.query("SELECT id FROM audit_events WHERE kind = 'query'").decode(
                UUID.self)
            {
                ids.insert(id)
            }
            return ids
        }
    }

    @Test(
        "each event is stored once: a batch sent again changes nothing; bad lines and unknown tenants are refused by index"
    )
    func idempotentIngest() async throws {
        try await IsolationTests.withDatabase { db, database in
            let first = try await IsolationTests.seedTenant(db, slug: "alpha")
            let second = try await IsolationTests.seedTenant(db, slug: "beta")
            let controller = AuditIngestController(store: AuditStore(client: db.client))
            let lines: [[UInt8]] = [
                try Self.line(Self.event(tenant: first.id)),
                try Self.line(Self.event(tenant: second.id, outcome: "refused")),
                Array(#"{"schema":1,"id":"not json"#.utf8),
                try Self.line(Self.event(tenant: UUID())),
                try Self.line(Self.event(tenant: first.id, at: Date().addingTimeInterval(3 * 86_400))),
                try Self.line(Self.event(tenant: nil, outcome: "refused")),
                try Self.line(
                    {
                        var bad = Self.event(tenant: first.id)
                        bad.outcome = "exploded"
                        return bad
                    }()),
            ]
            let reply = try await controller.ingest(lines, node: "node-1", logger: Self.logger)
            #expect(reply.stored == 3 && reply.duplicates == 0)
            #expect(reply.refused.map(\.index) == [2, 3, 4, 6])
            #expect(reply.refused[1].reason.hasPrefix("no tenant"))
            #expect(reply.refused[2].reason.contains("ahead of the control plane's clock"))

            let again = try await controller.ingest(lines, node: "node-2", logger: Self.logger)
            #expect(again.stored == 0 && again.duplicates == 3 && again.refused.map(\.index) == [2, 3, 4, 6])
            #expect(try await Self.storedIDs(database.owner).count == 3)
            // The node column is the shipping node's; the event keeps its own.
            let nodes = try await withPostgresClient(database.owner) { client in
                var nodes: [String] = []
                for try await node in try await client.query(
                    "SELECT DISTINCT node FROM audit_events WHERE kind = 'query'"
                ).decode(
                    String.self)
                {
                    nodes.append(node)
                }
                return nodes
            }
            #expect(nodes == ["node-1"])
        }
    }

    @Test("a tenant reads only its own events, the operator all, nobody else any; nothing writes but the functions")
    func isolation() async throws {
        try await IsolationTests.withDatabase { db, _ in
            let first = try await IsolationTests.seedTenant(db, slug: "alpha")
            let second = try await IsolationTests.seedTenant(db, slug: "beta")
            let store = AuditStore(client: db.client)
            _ = try await store.maintain(daysAhead: 2, unattributedDays: 30, logger: Self.logger)
            let lines = try [
                Self.event(tenant: first.id), Self.event(tenant: second.id), Self.event(tenant: second.id),
            ]
            .map(Self.line)
            _ = try await AuditIngestController(store: store).ingest(lines, node: "node-1", logger: Self.logger)

            #expect(try await db.withTenant(first.id, logger: Self.logger) { try await Self.count($0) } == 1)
            #expect(try await db.withTenant(second.id, logger: Self.logger) { try await Self.count($0) } == 2)
            #expect(
                try await db.withOperator(IsolationTests.operatorID, logger: Self.logger) { try await Self.count($0) }
                    == 3)
            #expect(try await db.unscoped(logger: Self.logger) { try await Self.count($0) } == 0)

            let today = Date().formatted(.iso8601.year().month().day().dateSeparator(.omitted))
            let refusals: [PostgresQuery] = [
                "INSERT INTO audit_events (time, id, kind, node, outcome, status, event) VALUES (now(), gen_random_uuid(), 'query', 'x', 'answered', 200, '{}')",
                "DELETE FROM audit_events",
                "UPDATE audit_events SET outcome = 'answered'",
                PostgresQuery(unsafeSQL: "SELECT count(*) FROM audit_events_p\(today)"),
                "SELECT count(*) FROM audit_events_default",
            ]
            for sql in refusals {
                await #expect(throws: PSQLError.self, "\(sql.sql)") {
                    try await db.withOperator(IsolationTests.operatorID, logger: Self.logger) { connection in
                        try await connection.query(sql, logger: Self.logger)
                    }
                }
            }
        }
    }

    @Test(
        "upkeep makes the coming days' partitions (moving waiting rows in), deletes events past each tenant's retention, drops partitions past the longest"
    )
    func retention() async throws {
        try await IsolationTests.withDatabase { db, database in
            let pro = try await IsolationTests.seedTenant(db, slug: "alpha")  // 30 days
            let free = try await IsolationTests.seedTenant(db, slug: "beta")
            // A deleted tenant's events follow its retention still (Pro, 30 days).
            let gone = try await IsolationTests.seedTenant(db, slug: "gamma")
            try await db.withOperator(IsolationTests.operatorID, logger: Self.logger) { connection in
                try await connection.query(
                    "UPDATE tenants SET tier_id = 'free' WHERE id = \(free.id)", logger: Self.logger)  // 7 days
                try await connection.query(
                    "UPDATE tenants SET status = 'deleted' WHERE id = \(gone.id)", logger: Self.logger)
            }
            // A partition 400 days old (past the longest retention, 365 days): dropped.
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(identifier: "UTC")!
            let old = calendar.startOfDay(for: Date().addingTimeInterval(-400 * 86_400))
            let oldName = "audit_events_p" + old.formatted(.iso8601.year().month().day().dateSeparator(.omitted))
            try await withPostgresClient(database.owner) { client in
                let from = old.formatted(.iso8601)
                let to = old.addingTimeInterval(86_400).formatted(.iso8601)
                try await client.query(
                    PostgresQuery(
                        unsafeSQL:
                            "CREATE TABLE \(oldName) PARTITION OF audit_events FOR VALUES FROM ('\(from)') TO ('\(to)')"
                    ))
            }
            let day: TimeInterval = 86_400
            let now = Date()
            let kept = [
                Self.event(tenant: pro.id, at: now.addingTimeInterval(-20 * day)),
                Self.event(tenant: free.id, at: now.addingTimeInterval(-5 * day)),
                Self.event(tenant: nil, at: now.addingTimeInterval(-10 * day), outcome: "refused"),
                Self.event(tenant: pro.id, at: now),
                Self.event(tenant: gone.id, at: now.addingTimeInterval(-20 * day)),
            ]
            let expired = [
                Self.event(tenant: pro.id, at: now.addingTimeInterval(-40 * day)),
                Self.event(tenant: free.id, at: now.addingTimeInterval(-10 * day)),
                Self.event(tenant: nil, at: now.addingTimeInterval(-40 * day), outcome: "refused"),
                Self.event(tenant: pro.id, at: now.addingTimeInterval(-400 * day)),
                Self.event(tenant: gone.id, at: now.addingTimeInterval(-40 * day)),
            ]
            let store = AuditStore(client: db.client)
            let reply = try await AuditIngestController(store: store).ingest(
                try (kept + expired).map(Self.line), node: "node-1", logger: Self.logger)
            #expect(reply.stored == 10)

            let upkeep = AuditMaintenance(
                store: store, settings: .init(daysAhead: 2, unattributedRetentionDays: 30), logger: Self.logger)
            let (maintenance, removed) = try #require(await upkeep.runOnce())
            #expect(maintenance.ran && maintenance.created == 4 && maintenance.dropped == 1)
            #expect(removed == 4, "the 400-day-old event went with its partition")
            #expect(try await Self.storedIDs(database.owner) == Set(kept.map(\.id)))
            // Today's event waited in the default partition; it now lives in today's.
            let home = try await withPostgresClient(database.owner) { client in
                var names: [String] = []
                let rows = try await client.query(
                    "SELECT tableoid::regclass::text FROM audit_events WHERE id = \(kept[3].id)")
                for try await name in rows.decode(String.self) { names.append(name) }
                let dropped = try await client.query(PostgresQuery(unsafeSQL: "SELECT to_regclass('\(oldName)')::text"))
                for try await name in dropped.decode(String?.self) { names.append(name ?? "gone") }
                return names
            }
            let today = "audit_events_p" + now.formatted(.iso8601.year().month().day().dateSeparator(.omitted))
            #expect(home == [today, "gone"])
            // A second round finds nothing to do.
            let (second, none) = try #require(await upkeep.runOnce())
            #expect(second.created == 0 && second.dropped == 0 && none == 0)
        }
    }

    @Test(
        "the admin API lists events newest first, page by page: a tenant admin its own tenant's, an operator any; filters narrow; bad parameters are 422"
    )
    func readingAPI() async throws {
        try await AdminAPITests.withAPI { fixture in
            let now = Date()
            var events: [AuditEvent] = []
            for index in 0..<5 {
                events.append(Self.event(tenant: fixture.tenantA, at: now.addingTimeInterval(Double(-index * 60))))
            }
            events.append(Self.event(tenant: fixture.tenantA, at: now.addingTimeInterval(-30), outcome: "refused"))
            events.append(Self.event(tenant: fixture.tenantB, at: now.addingTimeInterval(-10)))
            events.append(Self.event(tenant: nil, at: now.addingTimeInterval(-20), outcome: "refused"))
            let reply = try await AuditIngestController(store: AuditStore(client: fixture.db.client)).ingest(
                try events.map(Self.line), node: "node-a", logger: Self.logger)
            #expect(reply.stored == 8)

            let viewer = try await AdminAPITests.signIn(fixture.client, "viewer@alpha.example")
            func list(_ query: String, token: String) async throws -> (status: Int, ids: [String], next: String?) {
                let response = try await AdminAPITests.send(
                    fixture.client, .get, "/admin/v1/audit/events\(query)", token: token)
                let body = try AdminAPITests.json(response)
                let ids = (body["items"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                return (Int(response.status.code), ids, body["next_cursor"] as? String)
            }
            let alpha = events.filter { $0.tenantID == fixture.tenantA }.sorted {
                ($0.time, $0.id.lowercased) > ($1.time, $1.id.lowercased)
            }
            // Pages of two, following the cursor, give every event of the tenant once, newest first.
            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try await list("?kind=query&limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""), token: viewer)
                #expect(page.status == 200 && page.ids.count <= 2)
                seen += page.ids
                cursor = page.next
            } while cursor != nil
            #expect(seen == alpha.map(\.id.lowercased))
            #expect(try await list("?outcome=refused", token: viewer).ids == [events[5].id.lowercased])
            #expect(try await list("?tenant_id=\(fixture.tenantB)", token: viewer).status == 403)

            let ops = try await AdminAPITests.signIn(fixture.client, "ops@zaas.example")
            #expect(try await list("?kind=query", token: ops).ids.count == 8)
            #expect(
                try await list("?kind=query&tenant_id=\(fixture.tenantB)", token: ops).ids == [events[6].id.lowercased])
            let older = now.addingTimeInterval(-150).formatted(.iso8601)
            #expect(
                try await list("?to=\(older)", token: ops).ids == [events[3].id.lowercased, events[4].id.lowercased])

            for bad in [
                "?limit=0", "?limit=501", "?cursor=nope", "?from=yesterday", "?outcome=exploded", "?cache=hot",
                "?key_id=1", "?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            ] {
                let response = try await AdminAPITests.send(
                    fixture.client, .get, "/admin/v1/audit/events\(bad)", token: ops)
                #expect(response.status == .unprocessableContent, "\(bad)")
                #expect(try AdminAPITests.problemType(response) == AdminAPITests.type("validation-failed"), "\(bad)")
            }
            let anonymous = try await AdminAPITests.send(fixture.client, .get, "/admin/v1/audit/events")
            #expect(anonymous.status == .unauthorized)
        }
    }

    @Test(
        "a compliance export: NDJSON (gzip) and CSV of the tenant's period, a manifest whose signature verifies; tampering is detected; exports are audited"
    )
    func export() async throws {
        try await AdminAPITests.withAPI { fixture in
            let now = Date()
            var events: [AuditEvent] = []
            for index in 0..<7 {
                var event = Self.event(tenant: fixture.tenantA, at: now.addingTimeInterval(Double(-index * 60)))
                event.question?.text = "Is \"x, y\" the \(index)th?\nOr =SUM(A1)"
                events.append(event)
            }
            events.append(Self.event(tenant: fixture.tenantB, at: now.addingTimeInterval(-30)))
            events.append(Self.event(tenant: fixture.tenantA, at: now.addingTimeInterval(-3 * 86_400)))
            _ = try await AuditIngestController(store: AuditStore(client: fixture.db.client)).ingest(
                try events.map(Self.line), node: "node-a", logger: Self.logger)
            let inPeriod = events.prefix(7).sorted { ($0.time, $0.id.lowercased) < ($1.time, $1.id.lowercased) }

            let admin = try await AdminAPITests.signIn(fixture.client, "admin@alpha.example")
            let period =
                #"{"from": "\#(now.addingTimeInterval(-86_400).formatted(.iso8601))", "to": "\#(now.addingTimeInterval(60).formatted(.iso8601))"}"#
            let created = try await AdminAPITests.send(
                fixture.client, .post, "/admin/v1/audit/exports", token: admin, json: period)
            #expect(created.status == .accepted, "\(String(buffer: created.body))")
            let id = try #require(try AdminAPITests.json(created)["id"] as? String)
            #expect(created.headers[.location] == "/admin/v1/audit/exports/\(id)")
            let viewer = try await AdminAPITests.signIn(fixture.client, "viewer@alpha.example")
            #expect(
                try await AdminAPITests.send(
                    fixture.client, .post, "/admin/v1/audit/exports", token: viewer, json: period
                )
                .status == .forbidden)
            let ops = try await AdminAPITests.signIn(fixture.client, "ops@zaas.example")
            #expect(
                try await AdminAPITests.send(fixture.client, .post, "/admin/v1/audit/exports", token: ops, json: period)
                    .status == .unprocessableContent, "an operator names the tenant")

            let signing = try ConfigSigningKey(hexSeed: TestEnvironment.shared.configSigningKey)
            let worker = AuditExportWorker(
                database: fixture.db, signingKey: signing, pollInterval: .seconds(1), logger: Self.logger)
            await worker.runOnce()
            var export: [String: Any] = [:]
            _ = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                export = try AdminAPITests.json(
                    try await AdminAPITests.send(fixture.client, .get, "/admin/v1/audit/exports/\(id)", token: admin))
                return export["status"] as? String == "done"
            }
            #expect(export["status"] as? String == "done", "\(export)")
            let manifestBytes = Array((try #require(export["manifest"] as? String)).utf8)
            let signatureText = try #require(export["signature"] as? String)
            let signature = try #require(Hex.decode(signatureText))
            let key = try ConfigVerificationKey(hex: TestEnvironment.shared.configPublicKey)
            let manifest = try AuditExportManifest.verified(manifestBytes, signature: signature, key: key)
            #expect(manifest.tenantID == fixture.tenantA && manifest.eventSchema == 1)
            #expect(export["events"] as? Int == Int(manifest.events))

            var files: [String: [UInt8]] = [:]
            for name in ["events.ndjson.gz", "events.csv"] {
                let response = try await AdminAPITests.send(
                    fixture.client, .get, "/admin/v1/audit/exports/\(id)/files/\(name)", token: admin)
                #expect(response.status == .ok)
                files[name] = Array(response.body.readableBytesView)
                try manifest.check(name: name, contents: files[name]!)
            }
            // The NDJSON, unzipped by gzip itself, holds the period's events in order.
            let gunzip = try Self.gunzip(files["events.ndjson.gz"]!)
            let lines = String(decoding: gunzip, as: UTF8.self).split(separator: "\n")
            let exported = try lines.map { try AuditEvent.decoder.decode(AuditEvent.self, from: Data($0.utf8)) }
            #expect(exported.filter { $0.kind == .query }.map(\.id) == inPeriod.map(\.id))
            // And the period's changes: the export's own request, the tenant's creation.
            #expect(exported.count == Int(manifest.events))
            #expect(exported.filter { $0.outcome == "audit_export_requested" }.count == 1)
            #expect(exported.contains { $0.change?.entity == "tenants" })
            #expect(exported.allSatisfy { $0.tenantID == fixture.tenantA })
            let csv = String(decoding: files["events.csv"]!, as: UTF8.self)
            #expect(csv.hasPrefix(AuditCSV.header + "\n"))
            #expect(csv.contains(#""Is ""x, y"" the 0th?"#), "quotes doubled, the field quoted")
            #expect(csv.contains("'=SUM(A1)") == false && csv.contains("Or =SUM(A1)"), "a formula only mid-field")

            // Tampering: a changed count breaks the signature; a changed byte breaks the digest.
            var forged = manifestBytes
            let text = String(decoding: forged, as: UTF8.self).replacingOccurrences(
                of: #""events":\#(manifest.events)"#, with: #""events":\#(manifest.events - 1)"#)
            forged = Array(text.utf8)
            #expect(forged != manifestBytes)
            #expect(throws: AuditExportManifest.VerificationError.badSignature) {
                try AuditExportManifest.verified(forged, signature: signature, key: key)
            }
            var changed = files["events.csv"]!
            changed[changed.count / 2] ^= 0x01
            #expect(throws: AuditExportManifest.VerificationError.fileMismatch("events.csv")) {
                try manifest.check(name: "events.csv", contents: changed)
            }
            #expect(throws: AuditExportManifest.VerificationError.badSignature) {
                try AuditExportManifest.verified(
                    manifestBytes, signature: signature, key: ConfigSigningKey().verificationKey)
            }

            // Another tenant's admin cannot see it; the request is in the tenant's audit trail.
            let other = try await AdminAPITests.signIn(fixture.client, "admin@beta.example")
            #expect(
                try await AdminAPITests.send(fixture.client, .get, "/admin/v1/audit/exports/\(id)", token: other).status
                    == .notFound)
            let trail = try AdminAPITests.json(
                try await AdminAPITests.send(fixture.client, .get, "/admin/v1/audit/events?kind=admin", token: admin))
            let audited = (trail["items"] as? [[String: Any]] ?? []).first {
                $0["outcome"] as? String == "audit_export_requested"
            }
            #expect(audited?["outcome"] as? String == "audit_export_requested")
            #expect((audited?["actor"] as? String)?.hasPrefix("admin:") == true)
        }
    }

    @Test("an operator erases a tenant's events of a period; the erasure is in the operator audit; nobody else may")
    func erasure() async throws {
        try await AdminAPITests.withAPI { fixture in
            let now = Date()
            let events = [
                Self.event(tenant: fixture.tenantA, at: now.addingTimeInterval(-600)),
                Self.event(tenant: fixture.tenantA, at: now.addingTimeInterval(-300)),
                Self.event(tenant: fixture.tenantA, at: now.addingTimeInterval(-86_400)),
                Self.event(tenant: fixture.tenantB, at: now.addingTimeInterval(-300)),
            ]
            _ = try await AuditIngestController(store: AuditStore(client: fixture.db.client)).ingest(
                try events.map(Self.line), node: "node-a", logger: Self.logger)
            // The bounds as the query carries them (whole seconds), so the count below is of the same period.
            let (from, to) = (
                now.addingTimeInterval(-1200).formatted(.iso8601), now.addingTimeInterval(60).formatted(.iso8601)
            )
            let (fromTime, toTime) = (try Date(from, strategy: .iso8601), try Date(to, strategy: .iso8601))
            let period = "from=\(from)&to=\(to)"
            let path = "/admin/v1/tenants/\(fixture.tenantA)/audit/events?\(period)"
            let admin = try await AdminAPITests.signIn(fixture.client, "admin@alpha.example")
            #expect(try await AdminAPITests.send(fixture.client, .delete, path, token: admin).status == .forbidden)
            let ops = try await AdminAPITests.signIn(fixture.client, "ops@zaas.example")
            let bad = try await AdminAPITests.send(
                fixture.client, .delete, "/admin/v1/tenants/\(fixture.tenantA)/audit/events", token: ops)
            #expect(bad.status == .unprocessableContent)
            let unknown = try await AdminAPITests.send(
                fixture.client, .delete, "/admin/v1/tenants/\(UUID())/audit/events?\(period)", token: ops)
            #expect(unknown.status == .notFound)

            // Every event of the tenant in the period goes: the two queries and the changes made
            // while the fixture was set up (the tenant's creation).
            let inPeriod = try await withPostgresClient(fixture.owner) { client in
                var count = 0
                for try await value in try await client.query(
                    """
                    SELECT count(*)::integer FROM audit_events WHERE tenant_id = \(fixture.tenantA)
                      AND time >= \(fromTime) AND time < \(toTime)
                    """
                ).decode(Int32.self) {
                    count = Int(value)
                }
                return count
            }
            #expect(inPeriod > 2)
            let erased = try await AdminAPITests.send(fixture.client, .delete, path, token: ops)
            #expect(erased.status == .ok)
            #expect(try AdminAPITests.json(erased)["erased"] as? Int == inPeriod)
            #expect(try await Self.storedIDs(fixture.owner) == Set([events[2].id, events[3].id]))
            let recorded = try await fixture.db.withOperator(fixture.operatorID, logger: Self.logger) { connection in
                var rows: [String] = []
                for try await (operation, row) in try await connection.query(
                    "SELECT operation, row_id FROM operator_audit WHERE table_name = 'audit_events' AND tenant_id = \(fixture.tenantA)",
                    logger: Self.logger
                ).decode((String, String).self) {
                    rows.append("\(operation) \(row)")
                }
                return rows
            }
            #expect(
                recorded.count == 1 && recorded[0].hasPrefix("erase ") && recorded[0].hasSuffix(": \(inPeriod) events"))
        }
    }
}
