import Canon
import Crypto
import Foundation
import HTTPTypes
import Logging
import PostgresNIO
import Shared

/// Whose canon: the platform's base canon (operators) or one tenant's overlay, and who acts.
enum CanonOwner: Sendable, Equatable {
    case base(operatorID: UUID)
    /// `actor` is recorded as the version's creator: `admin:<id>` or `key:<id>`.
    case tenant(UUID, actor: String)

    static func admin(tenant: UUID, admin: UUID) -> CanonOwner {
        .tenant(tenant, actor: "admin:" + admin.uuidString.lowercased())
    }

    /// A tenant's API key, acting through a node (`POST /api/v1/canon/update`).
    static func key(tenant: UUID, key: UUID) -> CanonOwner {
        .tenant(tenant, actor: "key:" + key.uuidString.lowercased())
    }

    var tenantID: UUID? {
        if case .tenant(let id, _) = self { id } else { nil }
    }

    var actor: String {
        switch self {
        case .base(let id): "operator:\(id.uuidString.lowercased())"
        case .tenant(_, let actor): actor
        }
    }
}

/// A canon version as the admin API shows it.
struct CanonVersionBody: Encodable, Sendable {
    struct Progress: Encodable, Sendable {
        let done: Int
        let total: Int
    }

    let id: String
    let number: Int
    let label: String
    let owner: String
    /// `queued`, `building`, `ready` or `failed`.
    let state: String
    let entryCount: Int
    let chunkCount: Int?
    let progress: Progress
    let artifactSha256: String?
    let error: String?
    /// What the build found worth telling (entries with sentences addressed to a model).
    let warnings: [CanonBuildWarning]
    let publishWhenReady: Bool
    let published: Bool
    let parentId: String?
    let createdBy: String
    let createdAt: Date
    let builtAt: Date?
}

struct CanonDiff: Encodable, Sendable {
    let from: String
    let to: String
    let added: [String]
    let changed: [String]
    let removed: [String]
}

/// Canon versions in PostgreSQL. Every call runs in the owner's scope (row-level security): a
/// tenant sees the base canon and its own versions, never another tenant's.
struct CanonStore: Sendable {
    let database: ScopedDatabase
    var limits: CanonLimits = .standard

    func scoped<Result: Sendable>(
        _ owner: CanonOwner, logger: Logger, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        switch owner {
        case .base(let operatorID): try await self.database.withOperator(operatorID, logger: logger, body)
        case .tenant(let tenantID, _): try await self.database.withTenant(tenantID, logger: logger, body)
        }
    }

    /// Stores a new version holding exactly `entries`, queued for building. Links must name an
    /// entry of the version itself or, for an overlay, of the published base canon.
    /// `problems` are those found while reading the upload; they are reported with the rest.
    func create(
        owner: CanonOwner, entries: [LocatedEntry], problems parseProblems: [CanonProblem] = [], parentID: UUID?,
        publishWhenReady: Bool, logger: Logger
    ) async throws -> CanonVersionBody {
        try await self.scoped(owner, logger: logger) { connection in
            let baseIDs =
                owner.tenantID == nil ? [] : try await Self.publishedEntryIDs(base: connection, logger: logger)
            let problems = parseProblems + CanonParser.validate(entries, knownIDs: baseIDs)
            guard problems.isEmpty else { throw Problem.canonInvalid(problems) }
            guard !entries.isEmpty else {
                throw Problem.canonInvalid([CanonProblem(file: "upload", line: nil, message: "holds no entries")])
            }
            // One version number at a time per owner.
            let lockKey = "canon:" + (owner.tenantID?.uuidString ?? "base")
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(lockKey)))", logger: logger)
            if let tenantID = owner.tenantID {
                try await Self.requireRoom(
                    tenantID: tenantID, limits: self.limits, connection: connection, logger: logger)
            }
            let prefix: String
            if let tenantID = owner.tenantID {
                var slug: String?
                for try await (value) in try await connection.query(
                    "SELECT slug FROM tenants WHERE id = \(tenantID)", logger: logger
                ).decode(String.self) { slug = value }
                guard let slug else { throw Problem.notFound("The tenant no longer exists.") }
                prefix = slug
            } else {
                prefix = "base"
            }
            let tenantID = owner.tenantID
            var number = 1
            for try await (value) in try await connection.query(
                "SELECT coalesce(max(number), 0) + 1 FROM canon_versions WHERE tenant_id IS NOT DISTINCT FROM \(tenantID)",
                logger: logger
            ).decode(Int.self) { number = value }
            let label = "\(prefix)-v\(number)"
            let id = UUID()
            try await connection.query(
                """
                INSERT INTO canon_versions (id, tenant_id, number, label, parent_id, entry_count, publish_when_ready,
                                            created_by, progress_total)
                VALUES (\(id), \(tenantID), \(number), \(label), \(parentID), \(entries.count), \(publishWhenReady),
                        \(owner.actor), 0)
                """,
                logger: logger)
            try await Self.insert(
                entries: entries, version: id, tenantID: tenantID, connection: connection, logger: logger)
            try await connection.query(
                "SELECT zaas_canon_prune(\(tenantID), \(Int32(self.limits.keptUnpublishedVersions)))", logger: logger)
            guard let body = try await Self.fetch(id: id, connection: connection, logger: logger) else {
                throw CanonStoreError.vanished
            }
            return body
        }
    }

    /// A tenant's new version must fit its share: not too many builds waiting, not too many
    /// versions this hour (counted in the database, so exact across control-plane replicas; the
    /// caller holds the owner's advisory lock).
    static func requireRoom(
        tenantID: UUID, limits: CanonLimits, connection: PostgresConnection, logger: Logger
    ) async throws {
        let rows = try await connection.query(
            """
            SELECT count(*) FILTER (WHERE state IN ('queued', 'building'))::int8,
                   count(*) FILTER (WHERE created_at > now() - interval '1 hour')::int8,
                   ceil(extract(epoch FROM min(created_at) FILTER (WHERE created_at > now() - interval '1 hour')
                        + interval '1 hour' - now()))::int8
            FROM canon_versions WHERE tenant_id = \(tenantID)
            """,
            logger: logger)
        for try await (pending, lastHour, wait) in rows.decode((Int, Int, Int?).self) {
            guard pending < limits.maximumPendingBuilds else {
                throw Problem.canonBuildsPending(pending: pending)
            }
            guard lastHour < limits.maximumVersionsPerHour else {
                throw Problem.canonVersionRate(limits.maximumVersionsPerHour, retryAfter: max(1, wait ?? 60))
            }
        }
    }

    static func insert(
        entries: [LocatedEntry], version: UUID, tenantID: UUID?, connection: PostgresConnection, logger: Logger
    ) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        // Batches of 1000 rows, each one statement over arrays.
        for start in stride(from: 0, to: entries.count, by: 1000) {
            let batch = entries[start..<min(start + 1000, entries.count)]
            let ids = batch.map(\.entry.id)
            let ordinals = batch.indices.map { $0 }
            let kinds = batch.map(\.entry.kind.rawValue)
            let titles = batch.map(\.entry.title)
            let bodies = batch.map(\.entry.body)
            let statuses = batch.map(\.entry.status.rawValue)
            let tags = try batch.map { String(decoding: try encoder.encode($0.entry.tags), as: UTF8.self) }
            let links = try batch.map { String(decoding: try encoder.encode($0.entry.links), as: UTF8.self) }
            let sources = batch.map { $0.entry.source ?? "" }
            let files = batch.map(\.file)
            let lines = batch.map(\.line)
            let digests = try batch.map { Hex.encode(Array(SHA256.hash(data: try encoder.encode($0.entry)))) }
            try await connection.query(
                """
                INSERT INTO canon_entries (version_id, tenant_id, entry_id, ordinal, kind, title, body, status, tags,
                                           links, source, file, line, content_sha256)
                SELECT \(version), \(tenantID), u.entry_id, u.ordinal, u.kind, u.title, u.body, u.status,
                       ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)),
                       ARRAY(SELECT jsonb_array_elements_text(u.links::jsonb)),
                       nullif(u.source, ''), u.file, u.line, decode(u.digest, 'hex')
                FROM unnest(\(ids)::text[], \(ordinals)::integer[], \(kinds)::text[], \(titles)::text[],
                            \(bodies)::text[], \(statuses)::text[], \(tags)::text[], \(links)::text[],
                            \(sources)::text[], \(files)::text[], \(lines)::integer[], \(digests)::text[])
                     AS u(entry_id, ordinal, kind, title, body, status, tags, links, source, file, line, digest)
                """,
                logger: logger)
        }
    }

    static func publishedEntryIDs(base connection: PostgresConnection, logger: Logger) async throws -> Set<String> {
        var ids: Set<String> = []
        let rows = try await connection.query(
            """
            SELECT e.entry_id FROM canon_publications p JOIN canon_entries e ON e.version_id = p.version_id
            WHERE p.tenant_id IS NULL
            """,
            logger: logger)
        for try await id in rows.decode(String.self) { ids.insert(id) }
        return ids
    }

    static let columns = """
        v.id, v.number, v.label, v.tenant_id, v.state, v.entry_count, v.chunk_count, v.progress_done,
        v.progress_total, v.artifact_sha256, v.error, v.publish_when_ready,
        (p.version_id IS NOT NULL), v.parent_id, v.created_by, v.created_at, v.built_at, v.warnings::text
        """

    static let from = """
        FROM canon_versions v
        LEFT JOIN canon_publications p ON p.version_id = v.id AND p.tenant_id IS NOT DISTINCT FROM v.tenant_id
        """

    typealias Row = (
        UUID, Int, String, UUID?, String, Int, Int?, Int, Int, String?, String?, Bool, Bool, UUID?, String, Date,
        Date?, String
    )

    static func body(_ row: Row) -> CanonVersionBody {
        CanonVersionBody(
            id: row.0.uuidString.lowercased(), number: row.1, label: row.2,
            owner: row.3 == nil ? "base" : "tenant", state: row.4, entryCount: row.5, chunkCount: row.6,
            progress: .init(done: row.7, total: row.8), artifactSha256: row.9, error: row.10,
            warnings: (try? JSONDecoder().decode([CanonBuildWarning].self, from: Data(row.17.utf8))) ?? [],
            publishWhenReady: row.11, published: row.12, parentId: row.13?.uuidString.lowercased(),
            createdBy: row.14, createdAt: row.15, builtAt: row.16)
    }

    static func fetch(id: UUID, connection: PostgresConnection, logger: Logger) async throws -> CanonVersionBody? {
        let rows = try await connection.query(
            "SELECT \(unescaped: columns) \(unescaped: from) WHERE v.id = \(id)", logger: logger)
        for try await row in rows.decode(Row.self) { return Self.body(row) }
        return nil
    }

    /// The owner's versions, newest first.
    func list(owner: CanonOwner, logger: Logger) async throws -> [CanonVersionBody] {
        let tenantID = owner.tenantID
        return try await self.scoped(owner, logger: logger) { connection in
            let rows = try await connection.query(
                """
                SELECT \(unescaped: Self.columns) \(unescaped: Self.from)
                WHERE v.tenant_id IS NOT DISTINCT FROM \(tenantID) ORDER BY v.number DESC LIMIT 200
                """,
                logger: logger)
            var versions: [CanonVersionBody] = []
            for try await row in rows.decode(Row.self) { versions.append(Self.body(row)) }
            return versions
        }
    }

    /// One of the owner's versions; another owner's is 404.
    func version(owner: CanonOwner, id: UUID, logger: Logger) async throws -> CanonVersionBody {
        try await self.scoped(owner, logger: logger) { connection in
            try await Self.owned(id, owner: owner, connection: connection, logger: logger)
        }
    }

    static func owned(_ id: UUID, owner: CanonOwner, connection: PostgresConnection, logger: Logger) async throws
        -> CanonVersionBody
    {
        guard let version = try await Self.fetch(id: id, connection: connection, logger: logger),
            (version.owner == "base") == (owner.tenantID == nil)
        else { throw Problem.notFound("No such canon version.") }
        return version
    }

    /// The entries of one version, in upload order.
    func entries(owner: CanonOwner, version: UUID, logger: Logger) async throws -> [LocatedEntry] {
        try await self.scoped(owner, logger: logger) { connection in
            _ = try await Self.owned(version, owner: owner, connection: connection, logger: logger)
            return try await Self.entries(version: version, connection: connection, logger: logger)
        }
    }

    static func entries(version: UUID, connection: PostgresConnection, logger: Logger) async throws -> [LocatedEntry] {
        let rows = try await connection.query(
            """
            SELECT entry_id, kind, title, body, status, tags, links, source, file, line
            FROM canon_entries WHERE version_id = \(version) ORDER BY ordinal
            """,
            logger: logger)
        var entries: [LocatedEntry] = []
        for try await (id, kind, title, body, status, tags, links, source, file, line) in rows.decode(
            (String, String, String, String, String, [String], [String], String?, String, Int?).self)
        {
            guard let kind = CanonEntry.Kind(rawValue: kind), let status = CanonEntry.Status(rawValue: status) else {
                throw CanonStoreError.unexpected("kind or status of \(id)")
            }
            entries.append(
                LocatedEntry(
                    entry: CanonEntry(
                        id: id, kind: kind, title: title, body: body, status: status, tags: tags, links: links,
                        source: source),
                    file: file, line: line ?? 0))
        }
        return entries
    }

    /// What changed from `from` to `to` (both the owner's).
    func diff(owner: CanonOwner, from: UUID, to: UUID, logger: Logger) async throws -> CanonDiff {
        try await self.scoped(owner, logger: logger) { connection in
            let fromVersion = try await Self.owned(from, owner: owner, connection: connection, logger: logger)
            let toVersion = try await Self.owned(to, owner: owner, connection: connection, logger: logger)
            let rows = try await connection.query(
                """
                SELECT coalesce(a.entry_id, b.entry_id),
                       CASE WHEN a.entry_id IS NULL THEN 'added' WHEN b.entry_id IS NULL THEN 'removed'
                            ELSE 'changed' END
                FROM (SELECT entry_id, content_sha256 FROM canon_entries WHERE version_id = \(from)) a
                FULL JOIN (SELECT entry_id, content_sha256 FROM canon_entries WHERE version_id = \(to)) b
                    ON a.entry_id = b.entry_id
                WHERE a.entry_id IS NULL OR b.entry_id IS NULL OR a.content_sha256 <> b.content_sha256
                ORDER BY 1
                """,
                logger: logger)
            var added: [String] = []
            var changed: [String] = []
            var removed: [String] = []
            for try await (id, change) in rows.decode((String, String).self) {
                switch change {
                case "added": added.append(id)
                case "removed": removed.append(id)
                default: changed.append(id)
                }
            }
            return CanonDiff(
                from: fromVersion.label, to: toVersion.label, added: added, changed: changed, removed: removed)
        }
    }

    /// Points the owner at a ready version (publish, or rollback to it).
    func publish(owner: CanonOwner, id: UUID, action: String, logger: Logger) async throws -> CanonVersionBody {
        try await self.scoped(owner, logger: logger) { connection in
            let version = try await Self.owned(id, owner: owner, connection: connection, logger: logger)
            try await Self.publish(
                version: version, id: id, owner: owner, action: action, connection: connection, logger: logger)
            return try await Self.owned(id, owner: owner, connection: connection, logger: logger)
        }
    }

    static func publish(
        version: CanonVersionBody, id: UUID, owner: CanonOwner, action: String, connection: PostgresConnection,
        logger: Logger
    ) async throws {
        guard version.state == "ready" else {
            throw Problem(
                slug: "canon-not-ready", title: "Canon Version Not Ready", status: .conflict,
                detail: "Version \(version.label) is \(version.state); only a ready version can be published.")
        }
        let tenantID = owner.tenantID
        let lockKey = "canon:" + (tenantID?.uuidString ?? "base")
        try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(lockKey)))", logger: logger)
        try await connection.query(
            """
            INSERT INTO canon_publications (tenant_id, version_id, published_by)
            VALUES (\(tenantID), \(id), \(owner.actor))
            ON CONFLICT (tenant_id) DO UPDATE
                SET version_id = EXCLUDED.version_id, published_at = now(), published_by = EXCLUDED.published_by
            """,
            logger: logger)
        try await connection.query(
            """
            INSERT INTO canon_publication_log (tenant_id, version_id, action, by)
            VALUES (\(tenantID), \(id), \(action), \(owner.actor))
            """,
            logger: logger)
    }

    /// Points the owner back at the version published before the current one.
    func rollback(owner: CanonOwner, logger: Logger) async throws -> CanonVersionBody {
        let tenantID = owner.tenantID
        return try await self.scoped(owner, logger: logger) { connection in
            guard let current = try await Self.published(tenantID: tenantID, connection: connection, logger: logger)
            else {
                throw Problem(
                    slug: "canon-nothing-to-roll-back", title: "Nothing To Roll Back", status: .conflict,
                    detail: "No canon version is published.")
            }
            var previous: UUID?
            for try await id in try await connection.query(
                """
                SELECT l.version_id FROM canon_publication_log l JOIN canon_versions v ON v.id = l.version_id
                WHERE l.tenant_id IS NOT DISTINCT FROM \(tenantID) AND l.version_id <> \(current) AND v.state = 'ready'
                  AND l.id < (SELECT max(id) FROM canon_publication_log
                              WHERE tenant_id IS NOT DISTINCT FROM \(tenantID) AND version_id = \(current))
                ORDER BY l.id DESC LIMIT 1
                """,
                logger: logger
            ).decode(UUID.self) { previous = id }
            guard let previous else {
                throw Problem(
                    slug: "canon-nothing-to-roll-back", title: "Nothing To Roll Back", status: .conflict,
                    detail: "No version was published before the current one.")
            }
            let version = try await Self.owned(previous, owner: owner, connection: connection, logger: logger)
            try await Self.publish(
                version: version, id: previous, owner: owner, action: "rollback", connection: connection, logger: logger
            )
            return try await Self.owned(previous, owner: owner, connection: connection, logger: logger)
        }
    }

    /// The owner's published version, if any.
    func published(owner: CanonOwner, logger: Logger) async throws -> UUID? {
        let tenantID = owner.tenantID
        return try await self.scoped(owner, logger: logger) { connection in
            try await Self.published(tenantID: tenantID, connection: connection, logger: logger)
        }
    }

    /// The version published for `tenantID` (nil: the base canon's), if any.
    static func published(tenantID: UUID?, connection: PostgresConnection, logger: Logger) async throws -> UUID? {
        var current: UUID?
        for try await id in try await connection.query(
            "SELECT version_id FROM canon_publications WHERE tenant_id IS NOT DISTINCT FROM \(tenantID)",
            logger: logger
        ).decode(UUID.self) { current = id }
        return current
    }

    /// An artifact's bytes by SHA-256, whoever owns the version (nodes fetch by hash).
    func artifact(sha256: String, logger: Logger) async throws -> ByteBuffer? {
        let rows = try await self.database.client.queryRows("SELECT zaas_canon_artifact(\(sha256))", logger: logger)
        for try await bytes in rows.decode(ByteBuffer?.self) { return bytes }
        return nil
    }

    /// Whether a key may act for a tenant now (`zaas_key_may_act`, migration 14).
    enum KeyVerdict: String {
        case ok
        case unknown
        case inactiveKey = "inactive-key"
        case missingScope = "missing-scope"
        case inactiveTenant = "inactive-tenant"
    }

    /// Whether `key` may act for `tenant` with `scope` now, or why not.
    func keyMayAct(tenant: UUID, key: UUID, scope: String, logger: Logger) async throws -> KeyVerdict {
        let rows = try await self.database.client.queryRows(
            "SELECT zaas_key_may_act(\(tenant), \(key), \(scope))", logger: logger)
        for try await verdict in rows.decode(String.self) { return KeyVerdict(rawValue: verdict) ?? .unknown }
        return .unknown
    }

    /// Whether the tenant's tier or quota policy allows canon updates (Enterprise).
    func canonUpdatesAllowed(tenantID: UUID, logger: Logger) async throws -> Bool {
        try await self.database.withTenant(tenantID, logger: logger) { connection in
            var allowed = false
            for try await value in try await connection.query(
                """
                SELECT coalesce(p.canon_updates_allowed, tr.canon_updates_allowed)
                FROM tenants t JOIN tiers tr ON tr.id = t.tier_id LEFT JOIN quota_policies p ON p.tenant_id = t.id
                WHERE t.id = \(tenantID)
                """,
                logger: logger
            ).decode(Bool.self) { allowed = value }
            return allowed
        }
    }
}

enum CanonStoreError: Error {
    case vanished
    case unexpected(String)
}

extension Problem {
    static func canonBuildsPending(pending: Int) -> Problem {
        Problem(
            slug: "canon-builds-pending", title: "Too Many Requests", status: .tooManyRequests,
            detail: "\(pending) versions of this tenant are still queued or building; try again when one is done.",
            headers: [.retryAfter: "30"])
    }

    static func canonVersionRate(_ limit: Int, retryAfter seconds: Int) -> Problem {
        Problem(
            slug: "canon-update-rate", title: "Too Many Requests", status: .tooManyRequests,
            detail: "At most \(limit) canon versions per tenant per hour (uploads and updates together).",
            headers: [.retryAfter: String(seconds)])
    }

    static var canonUploadsBusy: Problem {
        Problem(
            slug: "canon-uploads-busy", title: "Too Many Requests", status: .tooManyRequests,
            detail: "This tenant already has uploads being read; send the next when they are done.",
            headers: [.retryAfter: "5"])
    }

    /// An upload with problems: every one listed, with file and line; nothing stored.
    static func canonInvalid(_ problems: [CanonProblem]) -> Problem {
        let shown = problems.prefix(1000)
        return Problem(
            slug: "canon-invalid", title: "Invalid Canon Upload", status: .unprocessableContent,
            detail: "\(problems.count) problem\(problems.count == 1 ? "" : "s"); nothing was stored."
                + (problems.count > shown.count ? " The first \(shown.count) are listed." : ""),
            extensions: [
                "problems": .array(
                    shown.map { problem in
                        var object: [String: ProblemValue] = [
                            "file": .string(problem.file), "message": .string(problem.message),
                        ]
                        if let line = problem.line { object["line"] = .int(line) }
                        return .object(object)
                    })
            ])
    }
}
