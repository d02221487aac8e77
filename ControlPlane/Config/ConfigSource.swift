import Foundation
import Logging
import PostgresNIO
import Shared

/// Builds what nodes enforce from PostgreSQL: full snapshots, and deltas from the change log.
///
/// Each build is one REPEATABLE READ transaction, so the version it is stamped with and the rows it
/// read are the same moment: versions are handed out under the counter's row lock in commit order,
/// so a snapshot that sees version N sees every change up to N and none after.
public struct ConfigSource: Sendable {
    public struct Head: Sendable, Equatable {
        public var version: Int64
        /// Change-log entries up to here were compacted away: a node behind it needs a full snapshot.
        public var compactedThrough: Int64
    }

    let client: PostgresClient
    let settings: DataPlaneSettings
    /// How long a document built now may be accepted by nodes.
    let validity: Duration

    public init(
        client: PostgresClient, settings: DataPlaneSettings,
        validity: Duration = .seconds(Int64(ConfigValidity.defaultSeconds))
    ) {
        self.client = client
        self.settings = settings
        self.validity = validity
    }

    /// The issue time and end of validity of a document built now.
    private var stamps: (createdAt: Date, validUntil: Date) {
        let now = Date()
        return (now, now.addingTimeInterval(TimeInterval(self.validity.components.seconds)))
    }

    public func head(logger: Logger) async throws -> Head {
        try await self.client.withOpenConnection { connection in
            try await Self.head(connection: connection, logger: logger)
        }
    }

    /// Moves the version past `past` (migration 13): the new version, which every node gets as a
    /// full snapshot.
    public func advance(past: Int64, logger: Logger) async throws -> Int64 {
        let rows = try await self.client.queryRows("SELECT zaas_config_advance(\(past))", logger: logger)
        for try await version in rows.decode(Int64.self) { return version }
        throw ConfigSourceError.missingHead
    }

    /// The whole configuration as of now.
    public func snapshot(logger: Logger) async throws -> NodeConfigSnapshot {
        try await self.consistentRead(logger: logger) { connection, head in
            try await self.snapshot(at: head, connection: connection, logger: logger)
        }
    }

    /// The update that takes a node from `since` to now: a delta when the change log still covers
    /// `since`, otherwise (when the node holds nothing, is behind the compacted log, or is ahead of
    /// the log, as after a database restore) a full snapshot. nil when nothing changed after `since`.
    public func update(since: Int64?, logger: Logger) async throws -> ConfigUpdate? {
        try await self.consistentRead(logger: logger) { connection, head in
            guard let since, since >= head.compactedThrough, since <= head.version else {
                return .full(try await self.snapshot(at: head, connection: connection, logger: logger))
            }
            if since == head.version { return nil }
            var tenantIDs: Set<UUID> = []
            var tiers: Set<String> = []
            var keyIDs: Set<UUID> = []
            let changes = try await connection.query(
                "SELECT entity, entity_id FROM zaas_config_changes(\(since), \(head.version))", logger: logger)
            for try await (entity, entityID) in changes.decode((String, String).self) {
                switch entity {
                case "tiers": tiers.insert(entityID)
                case "tenants", "quota_policies": if let id = UUID(uuidString: entityID) { tenantIDs.insert(id) }
                case "api_keys": if let id = UUID(uuidString: entityID) { keyIDs.insert(id) }
                case "canon_publications":
                    // The base canon travels in the settings, which every delta carries.
                    if let id = UUID(uuidString: entityID) { tenantIDs.insert(id) }
                case "model_backends": break  // the whole catalog travels in the settings too
                default: logger.warning("unknown entity in the config change log", metadata: ["entity": "\(entity)"])
                }
            }
            // A tier change re-sends every tenant of the tier, each with its canon.
            let canon = try await Self.canon(
                tenants: tiers.isEmpty ? tenantIDs : nil, connection: connection, logger: logger)
            let tenants =
                tenantIDs.isEmpty && tiers.isEmpty
                ? []
                : try await Self.tenants(
                    ids: tenantIDs, tiers: tiers, canon: canon.tenants, connection: connection, logger: logger)
            let keys = keyIDs.isEmpty ? [] : try await Self.keys(ids: keyIDs, connection: connection, logger: logger)
            let presentTenants = Set(tenants.map(\.id))
            let presentKeys = Set(keys.map(\.id))
            let stamps = self.stamps
            return .delta(
                ConfigDelta(
                    fromVersion: since,
                    toVersion: head.version,
                    createdAt: stamps.createdAt,
                    validUntil: stamps.validUntil,
                    settings: self.settings(
                        base: canon.base,
                        models: try await ModelCatalogStore.all(connection: connection, logger: logger)),
                    upsertedTenants: tenants,
                    removedTenants: tenantIDs.subtracting(presentTenants).sorted { $0.uuidString < $1.uuidString },
                    upsertedKeys: keys,
                    removedKeys: keyIDs.subtracting(presentKeys).sorted { $0.uuidString < $1.uuidString }
                ))
        }
    }

    private func consistentRead<Result: Sendable>(
        logger: Logger,
        _ body: (PostgresConnection, Head) async throws -> Result
    ) async throws -> Result {
        try await self.client.withOpenConnection { connection in
            try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            do {
                let head = try await Self.head(connection: connection, logger: logger)
                let result = try await body(connection, head)
                try await connection.query("COMMIT", logger: logger)
                return result
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    private static func head(connection: PostgresConnection, logger: Logger) async throws -> Head {
        let rows = try await connection.query(
            "SELECT version, compacted_through FROM zaas_config_head()", logger: logger)
        for try await (version, compacted) in rows.decode((Int64, Int64).self) {
            return Head(version: version, compactedThrough: compacted)
        }
        throw ConfigSourceError.missingHead
    }

    private func snapshot(at head: Head, connection: PostgresConnection, logger: Logger) async throws
        -> NodeConfigSnapshot
    {
        let canon = try await Self.canon(tenants: nil, connection: connection, logger: logger)
        let stamps = self.stamps
        return NodeConfigSnapshot(
            version: head.version,
            createdAt: stamps.createdAt,
            validUntil: stamps.validUntil,
            settings: self.settings(
                base: canon.base, models: try await ModelCatalogStore.all(connection: connection, logger: logger)),
            tenants: try await Self.tenants(
                ids: nil, tiers: nil, canon: canon.tenants, connection: connection, logger: logger),
            keys: try await Self.keys(ids: nil, connection: connection, logger: logger)
        )
    }

    private func settings(base: CanonReference?, models: [ModelBackend]) -> DataPlaneSettings {
        var settings = self.settings
        settings.baseCanon = base
        settings.models = models
        return settings
    }

    /// The published canon versions: the base canon's, and those of the given tenants (all when nil).
    private static func canon(tenants: Set<UUID>?, connection: PostgresConnection, logger: Logger) async throws
        -> (base: CanonReference?, tenants: [UUID: CanonReference])
    {
        let idList = tenants.map { Array($0) }
        let rows = try await connection.query(
            "SELECT tenant_id, version_id, label, artifact_sha256, byte_count FROM zaas_config_canon(\(idList))",
            logger: logger)
        var base: CanonReference?
        var byTenant: [UUID: CanonReference] = [:]
        for try await (tenant, version, label, sha256, byteCount) in rows.decode(
            (UUID?, UUID, String, String, Int64).self)
        {
            let reference = CanonReference(
                versionID: version, label: label, sha256: sha256, byteCount: UInt64(clamping: byteCount))
            if let tenant { byTenant[tenant] = reference } else { base = reference }
        }
        return (base, byTenant)
    }

    private static func tenants(
        ids: Set<UUID>?, tiers: Set<String>?, canon: [UUID: CanonReference], connection: PostgresConnection,
        logger: Logger
    ) async throws -> [TenantConfig] {
        let idList = ids.map { Array($0) }
        let tierList = tiers.map { Array($0) }
        let rows = try await connection.query(
            """
            SELECT id, slug, status, tier_id, queries_per_hour, tenant_queries_per_hour, model_classes,
                   max_citations, cache_ttl_seconds, audit_retention_days, canon_updates_allowed
            FROM zaas_config_tenants(\(idList), \(tierList))
            """,
            logger: logger
        )
        // The quota policies' settings only nodes read (migration 20).
        var settings: [UUID: (semantic: Float?, routing: Float?, raw: Bool?, async: ModelClasses)] = [:]
        let settingRows = try await connection.query(
            """
            SELECT tenant_id, semantic_cache_threshold, routing_threshold, store_raw_questions, async_model_classes
            FROM zaas_config_policy_settings(\(idList))
            """, logger: logger)
        for try await (tenant, semantic, routing, raw, asyncNames) in settingRows.decode(
            (UUID, Float?, Float?, Bool?, [String]?).self)
        {
            guard let async = ModelClasses(names: asyncNames ?? []) else {
                throw ConfigSourceError.unexpectedValue(
                    "asynchronous model classes \(asyncNames ?? []) of tenant \(tenant)")
            }
            settings[tenant] = (semantic, routing, raw, async)
        }
        var tenants: [TenantConfig] = []
        for try await row in rows.decode(
            (UUID, String, String, String, Int32, Int32?, [String], Int32, Int32, Int32, Bool).self)
        {
            let (id, slug, status, tier, perHour, tenantPerHour, classes, citations, ttl, retention, canonUpdates) = row
            guard let modelClasses = ModelClasses(names: classes) else {
                throw ConfigSourceError.unexpectedValue("model classes \(classes) of tenant \(id)")
            }
            tenants.append(
                TenantConfig(
                    id: id,
                    slug: slug,
                    status: status == "active" ? .active : .suspended,
                    policy: TenantPolicy(
                        tier: tier,
                        queriesPerHour: UInt32(clamping: perHour),
                        tenantQueriesPerHour: tenantPerHour.map { UInt32(clamping: $0) },
                        modelClasses: modelClasses,
                        maxCitations: UInt16(clamping: citations),
                        cacheTTLSeconds: UInt32(clamping: ttl),
                        auditRetentionDays: UInt16(clamping: retention),
                        canonUpdatesAllowed: canonUpdates,
                        semanticCacheThreshold: settings[id]?.semantic,
                        routingThreshold: settings[id]?.routing,
                        storeRawQuestions: settings[id]?.raw ?? false,
                        asyncModelClasses: settings[id]?.async ?? []
                    ),
                    canon: canon[id]
                ))
        }
        return tenants
    }

    private static func keys(ids: Set<UUID>?, connection: PostgresConnection, logger: Logger) async throws
        -> [KeyConfig]
    {
        let idList = ids.map { Array($0) }
        let rows = try await connection.query(
            """
            SELECT id, tenant_id, key_id, environment, secret_digest, scopes, expires_at, revoked_at
            FROM zaas_config_keys(\(idList))
            """,
            logger: logger
        )
        var keys: [KeyConfig] = []
        for try await row in rows.decode((UUID, UUID, String, String, ByteBuffer, [String], Date?, Date?).self) {
            let (id, tenantID, keyID, environment, digest, scopeNames, expiresAt, revokedAt) = row
            guard let environment = APIKey.Environment(rawValue: environment),
                let scopes = KeyScopes(names: scopeNames)
            else { throw ConfigSourceError.unexpectedValue("environment or scopes of key \(id)") }
            keys.append(
                KeyConfig(
                    id: id, tenantID: tenantID, keyID: keyID, environment: environment,
                    digest: Array(digest.readableBytesView), scopes: scopes, expiresAt: expiresAt, revokedAt: revokedAt
                ))
        }
        return keys
    }
}

enum ConfigSourceError: Error, CustomStringConvertible {
    case missingHead
    case unexpectedValue(String)

    var description: String {
        switch self {
        case .missingHead: "config_version has no row (migrations incomplete?)"
        case .unexpectedValue(let what): "unexpected value in the database: \(what)"
        }
    }
}
