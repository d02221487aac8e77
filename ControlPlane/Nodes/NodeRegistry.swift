import Foundation
import Logging
import PostgresNIO
import Shared

/// Data-plane nodes as they last reported themselves (every watch request is a report), and the
/// last-used times they batch up. SQL only; `NodeController` and the internal API are its HTTP.
struct NodeRegistry: Sendable {
    struct Report: Sendable {
        let id: String
        let address: String
        let softwareVersion: String
        let configVersion: Int64
    }

    let client: PostgresClient
    /// A node not seen for this long no longer counts as live.
    let staleAfter: Duration

    static func isValidNodeID(_ id: String) -> Bool {
        (1...200).contains(id.utf8.count)
            && id.utf8.allSatisfy { byte in
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                    || [0x2E, 0x5F, 0x3A, 0x2D].contains(byte)
            }
    }

    /// Records the report and returns how many nodes are live now, this one included: nodes
    /// share a rate limit by this count while Redis is unreachable. Only nodes that hold an
    /// active credential count, and a node reports only under its credential's id, so the count
    /// is bounded by the credentials operators issued.
    func register(_ report: Report, logger: Logger) async throws -> Int {
        let staleSeconds = Double(self.staleAfter.components.seconds)
        // The CTE's insert is not visible to the count (one snapshot): others are counted, plus one.
        let rows = try await self.client.queryRows(
            """
            WITH registered AS (
                INSERT INTO data_plane_nodes (id, address, software_version, config_version)
                VALUES (\(report.id), \(report.address), \(report.softwareVersion), \(report.configVersion))
                ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address,
                    software_version = EXCLUDED.software_version, config_version = EXCLUDED.config_version,
                    last_seen_at = now()
                RETURNING id
            )
            SELECT (count(*) + 1)::int8 FROM data_plane_nodes d
            WHERE d.id <> \(report.id) AND d.last_seen_at > now() - make_interval(secs => \(staleSeconds))
              AND EXISTS (SELECT 1 FROM node_credentials c WHERE c.node_id = d.id AND c.revoked_at IS NULL)
            """,
            logger: logger
        )
        var live = 1
        for try await count in rows.decode(Int.self) { live = count }
        return live
    }

    /// A node as the registry last saw it, and whether it has been seen lately.
    struct Node: Sendable {
        let id: String
        let address: String
        let softwareVersion: String
        let configVersion: Int64
        let firstSeenAt: Date
        let lastSeenAt: Date
        let isStale: Bool
        /// No active credential: the node can no longer call the control plane.
        let isRevoked: Bool
    }

    /// Every node that ever registered, by id.
    func list(logger: Logger) async throws -> [Node] {
        let rows = try await self.client.queryRows(
            """
            SELECT id, address, software_version, config_version, first_seen_at, last_seen_at,
                   extract(epoch FROM now() - last_seen_at)::float8,
                   NOT EXISTS (SELECT 1 FROM node_credentials c WHERE c.node_id = d.id AND c.revoked_at IS NULL)
            FROM data_plane_nodes d ORDER BY id
            """,
            logger: logger
        )
        let staleSeconds = Double(self.staleAfter.components.seconds)
        var nodes: [Node] = []
        for try await (id, address, software, version, firstSeen, lastSeen, age, revoked) in rows.decode(
            (String, String, String, Int64, Date, Date, Double, Bool).self)
        {
            nodes.append(
                Node(
                    id: id, address: address, softwareVersion: software, configVersion: version,
                    firstSeenAt: firstSeen, lastSeenAt: lastSeen, isStale: age > staleSeconds, isRevoked: revoked))
        }
        return nodes
    }

    func recordUsage(_ usage: [(UUID, Date)], logger: Logger) async throws {
        guard !usage.isEmpty else { return }
        try await self.client.queryRows(
            "SELECT zaas_record_key_usage(\(usage.map(\.0)), \(usage.map(\.1)))", logger: logger)
    }
}
