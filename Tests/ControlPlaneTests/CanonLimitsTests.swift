import Canon
import Foundation
import HTTPTypes
import Logging
import PostgresNIO
import Shared
import TestSupport
import Testing

@testable import ControlPlane

/// What one tenant's canon uploads and updates may cost everyone: builds waiting, versions per
/// hour, versions kept, uploads read at once, and the order builds are taken in. On a migrated
/// database with no builder running, so queued versions stay queued until a test says otherwise.
@Suite("canon limits: pending builds, versions per hour, pruning, concurrent uploads, fair build order")
struct CanonLimitsTests {
    static let logger = Logger(label: "test.canon-limits")

    struct Fixture: Sendable {
        let store: CanonStore
        let owner: PostgresClient.Configuration
        let tenants: [UUID]
    }

    static func withStore(
        limits: CanonLimits, _ body: @escaping @Sendable (Fixture) async throws -> Void
    ) async throws {
        try await TestDatabase.withFresh { database in
            _ = try await withPostgresClient(database.owner) { owner in
                try await Migrator(applicationRole: TestEnvironment.shared.appUser, logger: logger).migrate(
                    client: owner)
            }
            try await withPostgresClient(database.app) { client in
                let db = ScopedDatabase(client: client)
                var tenants: [UUID] = []
                for slug in ["alpha", "beta"] {
                    let tenant = UUID()
                    tenants.append(tenant)
                    try await db.withOperator(UUID(), logger: logger) { connection in
                        try await connection.query(
                            "INSERT INTO tenants (id, name, slug, tier_id) VALUES (\(tenant), \(slug), \(slug), 'enterprise')",
                            logger: logger)
                    }
                }
                try await body(
                    Fixture(store: CanonStore(database: db, limits: limits), owner: database.owner, tenants: tenants))
            }
        }
    }

    static func entries(_ id: String) -> [LocatedEntry] {
        let json = #"[{"id": "\#(id)", "kind": "definition", "title": "T", "body": "B.", "status": "Proven"}]"#
        return CanonParser(limits: .init(maximumFileBytes: 1 << 20)).parse(
            file: "t.json", bytes: Array(json.utf8), format: .json
        ).entries
    }

    @discardableResult
    static func create(_ fixture: Fixture, tenant: UUID, _ id: String = "e.one") async throws -> CanonVersionBody {
        try await fixture.store.create(
            owner: .admin(tenant: tenant, admin: UUID()), entries: entries(id), parentID: nil, publishWhenReady: false,
            logger: logger)
    }

    static func slug(of action: () async throws -> Void) async -> String? {
        do {
            try await action()
            return nil
        } catch let problem as Problem {
            return problem.slug
        } catch {
            return "\(error)"
        }
    }

    /// Marks every pending version built, each with an artifact of its own, as the builder would.
    static func finishBuilds(_ fixture: Fixture) async throws {
        try await withPostgresClient(fixture.owner) { owner in
            try await owner.query(
                """
                WITH pending AS (SELECT id, md5(id::text) || md5(id::text) AS sha256 FROM canon_versions
                                 WHERE state IN ('queued', 'building')),
                     stored AS (INSERT INTO canon_artifacts (sha256, bytes, byte_count)
                                SELECT sha256, '\\x00', 1 FROM pending RETURNING sha256)
                UPDATE canon_versions v SET state = 'ready', artifact_sha256 = p.sha256 FROM pending p WHERE v.id = p.id
                """)
        }
    }

    @Test("a tenant with its builds still waiting gets 429 canon-builds-pending; another tenant is not held back")
    func pendingBuilds() async throws {
        let limits = CanonLimits(
            maximumPendingBuilds: 2, maximumVersionsPerHour: 100, keptUnpublishedVersions: 20,
            maximumConcurrentUploads: 2)
        try await Self.withStore(limits: limits) { fixture in
            let (alpha, beta) = (fixture.tenants[0], fixture.tenants[1])
            try await Self.create(fixture, tenant: alpha)
            try await Self.create(fixture, tenant: alpha)
            #expect(await Self.slug { try await Self.create(fixture, tenant: alpha) } == "canon-builds-pending")
            try await Self.create(fixture, tenant: beta)
            try await Self.finishBuilds(fixture)
            try await Self.create(fixture, tenant: alpha)
        }
    }

    @Test("past the versions-per-hour limit: 429 canon-update-rate with a Retry-After within the hour")
    func versionsPerHour() async throws {
        let limits = CanonLimits(
            maximumPendingBuilds: 100, maximumVersionsPerHour: 3, keptUnpublishedVersions: 20,
            maximumConcurrentUploads: 2)
        try await Self.withStore(limits: limits) { fixture in
            let alpha = fixture.tenants[0]
            for _ in 0..<3 { try await Self.create(fixture, tenant: alpha) }
            do {
                try await Self.create(fixture, tenant: alpha)
                Issue.record("a fourth version within the hour was accepted")
            } catch let problem as Problem {
                #expect(problem.slug == "canon-update-rate")
                let retryAfter = try #require(problem.headers[.retryAfter].flatMap { Int($0) })
                #expect((1...3600).contains(retryAfter))
            }
            // Each tenant has its own count.
            try await Self.create(fixture, tenant: fixture.tenants[1])
        }
    }

    @Test(
        "versions never published beyond the newest N are deleted, with their artifacts; published and logged ones stay"
    )
    func pruning() async throws {
        let limits = CanonLimits(
            maximumPendingBuilds: 100, maximumVersionsPerHour: 100, keptUnpublishedVersions: 2,
            maximumConcurrentUploads: 2)
        try await Self.withStore(limits: limits) { fixture in
            let alpha = fixture.tenants[0]
            let first = try await Self.create(fixture, tenant: alpha, "e.first")
            try await withPostgresClient(fixture.owner) { owner in
                // The first version built and published (its artifact stays with it).
                try await owner.query(
                    """
                    WITH artifact AS (
                        INSERT INTO canon_artifacts (sha256, bytes, byte_count)
                        VALUES (repeat('a', 64), '\\x00', 1) RETURNING sha256
                    )
                    UPDATE canon_versions SET state = 'ready', artifact_sha256 = (SELECT sha256 FROM artifact)
                    WHERE id = \(UUID(uuidString: first.id)!)
                    """)
                try await owner.query(
                    """
                    INSERT INTO canon_publications (tenant_id, version_id, published_by)
                    VALUES (\(alpha), \(UUID(uuidString: first.id)!), 'test')
                    """)
            }
            var made: [String] = []
            for index in 0..<5 {
                made.append(try await Self.create(fixture, tenant: alpha, "e.\(index)").id)
                try await Self.finishBuilds(fixture)
            }
            let remaining = try await withPostgresClient(fixture.owner) { owner in
                var ids: [String] = []
                for try await id in try await owner.query(
                    "SELECT id FROM canon_versions WHERE tenant_id = \(alpha) ORDER BY number"
                ).decode(UUID.self) { ids.append(id.uuidString.lowercased()) }
                return ids
            }
            // Published v1, and the newest two never published (the one just made is pruned on the next create).
            #expect(remaining == [first.id.lowercased()] + made.suffix(3).map { $0.lowercased() })
            let artifacts = try await withPostgresClient(fixture.owner) { owner in
                var count = 0
                for try await value in try await owner.query("SELECT count(*)::int8 FROM canon_artifacts").decode(
                    Int.self)
                { count = value }
                return count
            }
            #expect(artifacts == 4)  // the published version's and the three kept versions'; none orphaned
        }
    }

    @Test("the builder takes the oldest version of the tenant it served least recently")
    func fairBuildOrder() async throws {
        try await Self.withStore(limits: .standard) { fixture in
            let (alpha, beta) = (fixture.tenants[0], fixture.tenants[1])
            try await withPostgresClient(fixture.owner) { owner in
                // Alpha was served a minute ago and has two queued; beta queued one later, never served.
                try await owner.query(
                    """
                    INSERT INTO canon_versions (tenant_id, number, label, entry_count, created_by, state, created_at, claimed_at)
                    VALUES (\(alpha), 1, 'alpha-v1', 1, 'test', 'ready', now() - interval '2 minutes', now() - interval '1 minute'),
                           (\(alpha), 2, 'alpha-v2', 1, 'test', 'queued', now() - interval '50 seconds', NULL),
                           (\(alpha), 3, 'alpha-v3', 1, 'test', 'queued', now() - interval '40 seconds', NULL),
                           (\(beta), 1, 'beta-v1', 1, 'test', 'queued', now() - interval '30 seconds', NULL)
                    """)
            }
            var order: [String] = []
            for _ in 0..<3 {
                let label = try await withPostgresClient(fixture.owner) { owner in
                    var label = ""
                    for try await value in try await owner.query(
                        "SELECT label FROM zaas_canon_claim_build(60)"
                    ).decode(String.self) { label = value }
                    return label
                }
                order.append(label)
            }
            #expect(order == ["beta-v1", "alpha-v2", "alpha-v3"])
        }
    }

    @Test(
        "uploads read at once per tenant are bounded: past it 429 canon-uploads-busy; other tenants and the base canon pass"
    )
    func uploadGate() async throws {
        let gate = UploadGate(maximumPerTenant: 1)
        let tenant = UUID()
        let (entered, enteredContinuation) = AsyncStream<Void>.makeStream()
        let (release, releaseContinuation) = AsyncStream<Void>.makeStream()
        async let held: Void = gate.withPlace(tenant: tenant) {
            enteredContinuation.yield()
            for await _ in release { break }
        }
        for await _ in entered { break }
        #expect(await Self.slug { try await gate.withPlace(tenant: tenant) {} } == "canon-uploads-busy")
        #expect(await Self.slug { try await gate.withPlace(tenant: UUID()) {} } == nil)
        #expect(await Self.slug { try await gate.withPlace(tenant: nil) {} } == nil)
        releaseContinuation.yield()
        try await held
        #expect(await Self.slug { try await gate.withPlace(tenant: tenant) {} } == nil)
    }
}
