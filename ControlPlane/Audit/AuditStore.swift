import Foundation
import Logging
import PostgresNIO
import Shared

/// The audit trail's SQL (migration 19's functions).
struct AuditStore: Sendable {
    let client: PostgresClient

    struct IngestOutcome: Sendable, Equatable {
        /// Rows written (the others of the batch were held already, or their tenant is unknown).
        var stored: Int
        var unknownTenants: Set<UUID>
    }

    /// Stores a batch of checked events (canonical JSON) shipped by node `node`. A conflict with
    /// a concurrent transaction (a deadlock) is tried again, twice: the batch is stored once
    /// whatever happens (its events' keys make a repeat harmless).
    func ingest(node: String, events: [String], logger: Logger) async throws -> IngestOutcome {
        guard !events.isEmpty else { return IngestOutcome(stored: 0, unknownTenants: []) }
        var attempt = 0
        while true {
            do {
                // In an explicit transaction: the batch may be acknowledged (its segment deleted by
                // the node) only once committed, and an autocommit statement's row arrives before
                // its commit.
                return try await ScopedDatabase(client: self.client).unscoped(logger: logger) { connection in
                    let rows = try await connection.query(
                        "SELECT stored, unknown_tenants FROM zaas_audit_ingest(\(node), \(events))", logger: logger)
                    var outcome = IngestOutcome(stored: 0, unknownTenants: [])
                    for try await (stored, unknown) in rows.decode((Int32, [UUID]).self) {
                        outcome = IngestOutcome(stored: Int(stored), unknownTenants: Set(unknown))
                    }
                    return outcome
                }
            } catch let error as PSQLError where error.isTransientConflict && attempt < 2 {
                attempt += 1
                logger.notice("audit ingest conflicted with another transaction; trying again")
            }
        }
    }

    struct Maintenance: Sendable, Equatable {
        var created: Int
        var dropped: Int
        /// False when another control plane held the upkeep's lock.
        var ran: Bool
    }

    /// Makes the partitions of the coming days and drops those past the longest retention.
    func maintain(daysAhead: Int, unattributedDays: Int, logger: Logger) async throws -> Maintenance {
        let rows = try await self.client.queryRows(
            """
            SELECT created, dropped, ran FROM zaas_audit_maintain(\(Int32(daysAhead)), \(Int32(unattributedDays)))
            """, logger: logger)
        var maintenance = Maintenance(created: 0, dropped: 0, ran: false)
        for try await (created, dropped, ran) in rows.decode((Int32, Int32, Bool).self) {
            maintenance = Maintenance(created: Int(created), dropped: Int(dropped), ran: ran)
        }
        return maintenance
    }

    /// Deletes up to `batch` events past their retention; how many went.
    func expire(batch: Int, unattributedDays: Int, logger: Logger) async throws -> Int {
        let rows = try await self.client.queryRows(
            "SELECT zaas_audit_expire(\(Int32(batch)), \(Int32(unattributedDays)))", logger: logger)
        var removed = 0
        for try await count in rows.decode(Int32.self) { removed = Int(count) }
        return removed
    }
}

extension AuditStore {
    /// What a list of events is narrowed to; nil fields do not narrow.
    struct Filter: Sendable, Equatable {
        var from: Date
        var to: Date
        var tenant: UUID?
        var outcome: String?
        var key: UUID?
        var model: String?
        var cache: String?
        var kind: String?
    }

    /// Where a page starts: after the event at (`time`, `id`), newest first.
    struct Cursor: Sendable, Equatable {
        var time: Date
        var id: UUID

        /// `<microseconds since 1970>.<id>`.
        var text: String {
            "\(Int64((self.time.timeIntervalSince1970 * 1_000_000).rounded())).\(self.id.lowercased)"
        }

        init(time: Date, id: UUID) {
            self.time = time
            self.id = id
        }

        init?(text: String) {
            let parts = text.split(separator: ".", maxSplits: 1)
            guard parts.count == 2, let micros = Int64(parts[0]), let id = UUID(uuidString: String(parts[1])) else {
                return nil
            }
            self.init(time: Date(timeIntervalSince1970: Double(micros) / 1_000_000), id: id)
        }
    }

    /// A page of events (their canonical JSON), newest first, in the connection's scope (row-level
    /// security decides whose), and the cursor of the next page.
    static func list(
        _ filter: Filter, after cursor: Cursor?, limit: Int, connection: PostgresConnection, logger: Logger
    ) async throws -> (events: [String], next: Cursor?) {
        let rows = try await connection.query(
            """
            SELECT time, id, event::text FROM audit_events
            WHERE time >= \(filter.from) AND time < \(filter.to)
              AND (\(filter.tenant)::uuid IS NULL OR tenant_id = \(filter.tenant))
              AND (\(filter.outcome)::text IS NULL OR outcome = \(filter.outcome))
              AND (\(filter.key)::uuid IS NULL OR key_id = \(filter.key))
              AND (\(filter.model)::text IS NULL OR model_used = \(filter.model))
              AND (\(filter.cache)::text IS NULL OR cache = \(filter.cache))
              AND (\(filter.kind)::text IS NULL OR kind = \(filter.kind))
              AND (\(cursor?.time)::timestamptz IS NULL OR (time, id) < (\(cursor?.time), \(cursor?.id)))
            ORDER BY time DESC, id DESC
            LIMIT \(Int32(limit + 1))
            """, logger: logger)
        var page: [(Date, UUID, String)] = []
        for try await row in rows.decode((Date, UUID, String).self) { page.append(row) }
        guard page.count > limit else { return (page.map(\.2), nil) }
        let last = page[limit - 1]
        return (page.prefix(limit).map(\.2), Cursor(time: last.0, id: last.1))
    }
}
