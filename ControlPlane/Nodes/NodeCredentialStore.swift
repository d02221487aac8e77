import Crypto
import Foundation
import HTTPTypes
import Logging
import NIOCore
import PostgresNIO
import Shared

/// A node's credential: `znode_` and 64 hex digits (256 random bits), bound to one node id.
/// Only its SHA-256 is stored; with that much entropy a plain hash is enough.
struct NodeToken: Sendable, Equatable {
    static let prefix = "znode_"
    let text: String

    static func generate() -> NodeToken {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return NodeToken(text: Self.prefix + Hex.encode(bytes))
    }

    /// Parses a presented token; anything else is nil (and the caller answers 401).
    init?(parsing text: some StringProtocol) {
        guard text.hasPrefix(Self.prefix), Hex.isLowercase(String(text.dropFirst(Self.prefix.count)), count: 64)
        else { return nil }
        self.text = String(text)
    }

    private init(text: String) {
        self.text = text
    }

    var digest: [UInt8] { Array(SHA256.hash(data: Array(self.text.utf8))) }
}

/// Node credentials in PostgreSQL (migration 14): issued, listed and revoked by operators,
/// looked up by digest on every internal request. SQL only; `NodeController` is its HTTP.
struct NodeCredentialStore: Sendable {
    struct Credential: Sendable, Encodable {
        let id: UUID
        let nodeId: String
        let createdAt: Date
        let lastUsedAt: Date?
        let revokedAt: Date?
        let status: String
        /// Obtained by the node itself with the enrollment secret, not issued by an operator.
        let enrolled: Bool
    }

    let database: ScopedDatabase
    var client: PostgresClient { self.database.client }
    /// At most this many credentials are active at once (`nodes.max_credentials`): the bound on
    /// how many node ids can register.
    let maximumActive: Int

    /// A new credential for `nodeID`; with `replace`, the node's other credentials are revoked in
    /// the same transaction (a restart with a fresh credential). Without it, the old ones stay
    /// valid until revoked, so a credential can be rotated without a gap. Without an operator, the
    /// node enrolled itself (`EnrollmentController`).
    func issue(nodeID: String, operatorID: UUID?, replace: Bool, logger: Logger) async throws -> (Credential, NodeToken)
    {
        let token = NodeToken.generate()
        let id = UUID()
        let maximum = self.maximumActive
        return try await self.database.unscoped(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext('node_credentials'))", logger: logger)
            if replace {
                try await connection.query(
                    "UPDATE node_credentials SET revoked_at = now() WHERE node_id = \(nodeID) AND revoked_at IS NULL",
                    logger: logger)
            }
            var active = 0
            for try await count in try await connection.query(
                "SELECT count(*)::int8 FROM node_credentials WHERE revoked_at IS NULL", logger: logger
            ).decode(Int.self) { active = count }
            guard active < maximum else { throw Problem.nodeCredentialLimit(maximum) }
            let rows = try await connection.query(
                """
                INSERT INTO node_credentials (id, node_id, token_digest, created_by, enrolled)
                VALUES (\(id), \(nodeID), \(ByteBuffer(bytes: token.digest)), \(operatorID), \(operatorID == nil))
                RETURNING \(unescaped: Self.columns)
                """,
                logger: logger)
            for try await row in rows.decode(Self.Row.self) { return (Self.credential(row), token) }
            throw CanonStoreError.unexpected("the credential insert returned no row")
        }
    }

    func list(logger: Logger) async throws -> [Credential] {
        let rows = try await self.client.queryRows(
            "SELECT \(unescaped: Self.columns) FROM node_credentials ORDER BY node_id, created_at", logger: logger)
        var credentials: [Credential] = []
        for try await row in rows.decode(Self.Row.self) { credentials.append(Self.credential(row)) }
        return credentials
    }

    /// Revokes one credential (again: no change); nil when there is no such credential.
    func revoke(id: UUID, logger: Logger) async throws -> Credential? {
        let rows = try await self.client.queryRows(
            """
            UPDATE node_credentials SET revoked_at = coalesce(revoked_at, now()) WHERE id = \(id)
            RETURNING \(unescaped: Self.columns)
            """,
            logger: logger)
        for try await row in rows.decode(Self.Row.self) { return Self.credential(row) }
        return nil
    }

    /// Revokes an enrolled credential its own node hands back as it stops; nil when it is not an
    /// active enrolled credential.
    func release(id: UUID, logger: Logger) async throws -> Credential? {
        let rows = try await self.client.queryRows(
            """
            UPDATE node_credentials SET revoked_at = now() WHERE id = \(id) AND enrolled AND revoked_at IS NULL
            RETURNING \(unescaped: Self.columns)
            """,
            logger: logger)
        for try await row in rows.decode(Self.Row.self) { return Self.credential(row) }
        return nil
    }

    /// Revokes the enrolled credentials older than `after` whose node has not been seen for
    /// `after` (a pod killed before it could hand its credential back), and returns them.
    func retireEnrolled(after: Duration, logger: Logger) async throws -> [Credential] {
        let seconds = Double(after.components.seconds)
        let rows = try await self.client.queryRows(
            """
            UPDATE node_credentials c SET revoked_at = now()
            WHERE c.enrolled AND c.revoked_at IS NULL AND c.created_at < now() - make_interval(secs => \(seconds))
              AND NOT EXISTS (
                  SELECT 1 FROM data_plane_nodes d
                  WHERE d.id = c.node_id AND d.last_seen_at > now() - make_interval(secs => \(seconds)))
            RETURNING \(unescaped: Self.columns)
            """,
            logger: logger)
        var retired: [Credential] = []
        for try await row in rows.decode(Self.Row.self) { retired.append(Self.credential(row)) }
        return retired
    }

    /// The credential id and node id of an active credential with this digest; marks it used
    /// (at most once a minute, so authentication does not write on every request).
    func authenticate(digest: [UInt8], logger: Logger) async throws -> NodeIdentity? {
        let rows = try await self.client.queryRows(
            """
            WITH found AS (
                SELECT id, node_id, last_used_at FROM node_credentials
                WHERE token_digest = \(ByteBuffer(bytes: digest)) AND revoked_at IS NULL
            ), touched AS (
                UPDATE node_credentials c SET last_used_at = now() FROM found
                WHERE c.id = found.id AND (found.last_used_at IS NULL OR found.last_used_at < now() - interval '1 minute')
            )
            SELECT id, node_id FROM found
            """,
            logger: logger)
        for try await (id, nodeID) in rows.decode((UUID, String).self) {
            return NodeIdentity(credentialID: id, nodeID: nodeID)
        }
        return nil
    }

    private static let columns = "id, node_id, created_at, last_used_at, revoked_at, enrolled"
    private typealias Row = (UUID, String, Date, Date?, Date?, Bool)

    private static func credential(_ row: Row) -> Credential {
        Credential(
            id: row.0, nodeId: row.1, createdAt: row.2, lastUsedAt: row.3, revokedAt: row.4,
            status: row.4 == nil ? "active" : "revoked", enrolled: row.5)
    }
}

/// Who a node is once its credential is verified.
public struct NodeIdentity: Sendable, Equatable {
    public let credentialID: UUID
    public let nodeID: String
}

extension Problem {
    static func nodeCredentialLimit(_ maximum: Int) -> Problem {
        Problem(
            slug: "node-credential-limit", title: "Conflict", status: .conflict,
            detail: "At most \(maximum) node credentials may be active (nodes.max_credentials); revoke unused ones.")
    }
}
