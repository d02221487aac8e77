import Foundation

/// Everything a data-plane node enforces, as of one version of the control plane's change log.
///
/// The control plane builds it from PostgreSQL; nodes receive it signed (`SignedConfigDocument`),
/// keep it on disk and answer every request from it, so they go on serving while the control
/// plane is away.
public struct NodeConfigSnapshot: Sendable, Equatable {
    /// The change-log version this snapshot is current to.
    public var version: Int64
    /// When the control plane built it.
    public var createdAt: Date
    /// After this, a node refuses the document from the network (an old signed document cannot
    /// be replayed to bring back revoked keys); see `ConfigValidity`.
    public var validUntil: Date
    public var settings: DataPlaneSettings
    /// Tenants that are not deleted, with their policy resolved (tier plus quota policy).
    public var tenants: [TenantConfig]
    /// Keys that are neither revoked nor expired at build time, of tenants that are not deleted.
    public var keys: [KeyConfig]

    public init(
        version: Int64, createdAt: Date, validUntil: Date? = nil, settings: DataPlaneSettings,
        tenants: [TenantConfig], keys: [KeyConfig]
    ) {
        self.version = version
        self.createdAt = createdAt
        self.validUntil = validUntil ?? createdAt.addingTimeInterval(ConfigValidity.defaultSeconds)
        self.settings = settings
        self.tenants = tenants
        self.keys = keys
    }
}

/// What changed between two versions: applied to a state at `fromVersion`, it gives `toVersion`.
public struct ConfigDelta: Sendable, Equatable {
    public var fromVersion: Int64
    public var toVersion: Int64
    public var createdAt: Date
    /// After this, a node refuses the document from the network (an old signed document cannot
    /// be replayed to bring back revoked keys); see `ConfigValidity`.
    public var validUntil: Date
    public var settings: DataPlaneSettings
    /// Tenants created or changed (status, tier, quota policy, canon pointer): the whole record.
    public var upsertedTenants: [TenantConfig]
    /// Tenants deleted; their keys go with them.
    public var removedTenants: [UUID]
    public var upsertedKeys: [KeyConfig]
    /// Keys revoked, expired or deleted.
    public var removedKeys: [UUID]

    public init(
        fromVersion: Int64, toVersion: Int64, createdAt: Date, validUntil: Date? = nil, settings: DataPlaneSettings,
        upsertedTenants: [TenantConfig] = [], removedTenants: [UUID] = [],
        upsertedKeys: [KeyConfig] = [], removedKeys: [UUID] = []
    ) {
        self.fromVersion = fromVersion
        self.toVersion = toVersion
        self.createdAt = createdAt
        self.validUntil = validUntil ?? createdAt.addingTimeInterval(ConfigValidity.defaultSeconds)
        self.settings = settings
        self.upsertedTenants = upsertedTenants
        self.removedTenants = removedTenants
        self.upsertedKeys = upsertedKeys
        self.removedKeys = removedKeys
    }
}

/// One answer of the watch: a whole snapshot, or the changes since the version the node holds.
public enum ConfigUpdate: Sendable, Equatable {
    case full(NodeConfigSnapshot)
    case delta(ConfigDelta)

    public var version: Int64 {
        switch self {
        case .full(let snapshot): snapshot.version
        case .delta(let delta): delta.toVersion
        }
    }
}

/// Settings the control plane hands every node with the configuration.
public struct DataPlaneSettings: Sendable, Equatable {
    /// How often nodes report which keys were used (last-used times), in milliseconds.
    public var usageReportIntervalMilliseconds: UInt32
    /// The published platform base canon every tenant answers from (under its own overlay).
    public var baseCanon: CanonReference?
    /// The model catalog, whole (it is small), ordered by name.
    public var models: [ModelBackend]

    public init(usageReportIntervalMilliseconds: UInt32, baseCanon: CanonReference? = nil, models: [ModelBackend] = [])
    {
        self.usageReportIntervalMilliseconds = usageReportIntervalMilliseconds
        self.baseCanon = baseCanon
        self.models = models
    }
}

/// A published canon version: what nodes fetch (by hash) and load.
public struct CanonReference: Sendable, Equatable, Hashable {
    public var versionID: UUID
    /// Shown in citations (`base-v3`, `acme-v2`).
    public var label: String
    /// SHA-256 of the artifact, lower-case hex.
    public var sha256: String
    public var byteCount: UInt64

    public init(versionID: UUID, label: String, sha256: String, byteCount: UInt64) {
        self.versionID = versionID
        self.label = label
        self.sha256 = sha256
        self.byteCount = byteCount
    }
}

public struct TenantConfig: Sendable, Equatable {
    public enum Status: UInt8, Sendable {
        case active = 1
        case suspended = 2
    }

    public var id: UUID
    public var slug: String
    public var status: Status
    public var policy: TenantPolicy
    /// The tenant's published overlay, searched above the base canon; nil when it has none.
    public var canon: CanonReference?

    public init(id: UUID, slug: String, status: Status, policy: TenantPolicy, canon: CanonReference?) {
        self.id = id
        self.slug = slug
        self.status = status
        self.policy = policy
        self.canon = canon
    }
}

/// A tenant's limits: its tier's, overridden field by field by its quota policy.
public struct TenantPolicy: Sendable, Equatable {
    public var tier: String
    /// The per-key bucket.
    public var queriesPerHour: UInt32
    /// The optional tenant-wide bucket.
    public var tenantQueriesPerHour: UInt32?
    public var modelClasses: ModelClasses
    public var maxCitations: UInt16
    public var cacheTTLSeconds: UInt32
    public var auditRetentionDays: UInt16
    public var canonUpdatesAllowed: Bool
    /// The cosine similarity a cached question must reach to be served for another, when the
    /// tenant's quota policy sets one (nil: the node's `cache.semantic_threshold`). Carried in
    /// 1/10 000ths.
    public var semanticCacheThreshold: Float?
    /// The complexity estimate at or above which `auto` answers in the cloud class, when the
    /// tenant's quota policy sets one (nil: `defaultRoutingThreshold`). Carried in 1/10 000ths.
    public var routingThreshold: Float?
    /// Whether the tenant opted in to keeping raw questions (audit events, the answer cache);
    /// otherwise they are kept redacted and fingerprinted (docs/audit.md).
    public var storeRawQuestions: Bool
    /// The classes whose answers are given asynchronously when a request does not say `async`
    /// (`async_model_classes`; docs/airllm.md).
    public var asyncModelClasses: ModelClasses

    public static let defaultRoutingThreshold: Float = 0.5

    public init(
        tier: String, queriesPerHour: UInt32, tenantQueriesPerHour: UInt32?, modelClasses: ModelClasses,
        maxCitations: UInt16, cacheTTLSeconds: UInt32, auditRetentionDays: UInt16, canonUpdatesAllowed: Bool,
        semanticCacheThreshold: Float? = nil, routingThreshold: Float? = nil, storeRawQuestions: Bool = false,
        asyncModelClasses: ModelClasses = []
    ) {
        self.tier = tier
        self.queriesPerHour = queriesPerHour
        self.tenantQueriesPerHour = tenantQueriesPerHour
        self.modelClasses = modelClasses
        self.maxCitations = maxCitations
        self.cacheTTLSeconds = cacheTTLSeconds
        self.auditRetentionDays = auditRetentionDays
        self.canonUpdatesAllowed = canonUpdatesAllowed
        self.semanticCacheThreshold = semanticCacheThreshold
        self.routingThreshold = routingThreshold
        self.storeRawQuestions = storeRawQuestions
        self.asyncModelClasses = asyncModelClasses
    }
}

/// A set of flags that the database and the APIs spell as names (`["query", "stats:read"]`).
public protocol NamedFlags: OptionSet, Sendable, Hashable where RawValue == UInt8, Element == Self {
    /// Every flag with its name, in the order names are listed.
    static var names: [(String, Self)] { get }
}

extension NamedFlags {
    /// nil when a name is unknown.
    public init?(names: some Sequence<String>) {
        var flags = Self()
        for name in names {
            guard let match = Self.names.first(where: { $0.0 == name }) else { return nil }
            flags.insert(match.1)
        }
        self = flags
    }

    public var names: [String] { Self.names.filter { self.contains($0.1) }.map(\.0) }
}

public struct ModelClasses: NamedFlags {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let local = ModelClasses(rawValue: 1 << 0)
    public static let cloud = ModelClasses(rawValue: 1 << 1)
    public static let largeLocal = ModelClasses(rawValue: 1 << 2)

    public static let names: [(String, ModelClasses)] = [
        ("local", .local), ("cloud", .cloud), ("large-local", .largeLocal),
    ]
}

/// What a key may do.
public struct KeyScopes: NamedFlags {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let query = KeyScopes(rawValue: 1 << 0)
    public static let canonWrite = KeyScopes(rawValue: 1 << 1)
    public static let statsRead = KeyScopes(rawValue: 1 << 2)

    public static let names: [(String, KeyScopes)] = [
        ("query", .query), ("canon:write", .canonWrite), ("stats:read", .statsRead),
    ]
}

public struct KeyConfig: Sendable, Equatable {
    /// The record's id (the admin API's key id).
    public var id: UUID
    public var tenantID: UUID
    /// The public part of the key text that finds this record.
    public var keyID: String
    public var environment: APIKey.Environment
    /// HMAC-SHA-256 of the secret under the pepper (`APIKeyDigester`).
    public var digest: [UInt8]
    public var scopes: KeyScopes
    public var expiresAt: Date?
    /// Set in the future while a rotated key's grace period runs.
    public var revokedAt: Date?

    public init(
        id: UUID, tenantID: UUID, keyID: String, environment: APIKey.Environment, digest: [UInt8],
        scopes: KeyScopes, expiresAt: Date?, revokedAt: Date?
    ) {
        self.id = id
        self.tenantID = tenantID
        self.keyID = keyID
        self.environment = environment
        self.digest = digest
        self.scopes = scopes
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
    }

    /// Whether the key is within its validity at `date` (not expired, not past its revocation).
    public func isValid(at date: Date) -> Bool {
        if let expiresAt, expiresAt <= date { return false }
        if let revokedAt, revokedAt <= date { return false }
        return true
    }
}

/// How long a signed config document may be accepted from the network, and the clock skew allowed.
///
/// A node refuses a document from the control plane that expired, that claims to be issued in
/// the future (beyond the skew), or whose full snapshot is older than the configuration it holds.
/// Documents read back from the node's own disk at start are accepted whatever their age: they
/// were checked when received, and static stability needs them when the control plane is away.
public enum ConfigValidity {
    public static let defaultSeconds: TimeInterval = 86_400
    public static let allowedSkewSeconds: TimeInterval = 300

    public enum Refusal: Error, Equatable, CustomStringConvertible {
        case expired(validUntil: Date)
        case issuedInTheFuture(createdAt: Date)
        case older(version: Int64, holding: Int64)

        public var description: String {
            switch self {
            case .expired(let until):
                "the document expired at \(until) (replayed, or the control plane's clock is wrong)"
            case .issuedInTheFuture(let at): "the document claims to be issued at \(at), in the future"
            case .older(let version, let holding):
                "the snapshot is version \(version), older than the \(holding) this node holds (replayed, or the database was restored: an operator advances the version with `zaasctl nodes advance-config`)"
            }
        }
    }

    /// Why a document issued at `createdAt`, valid until `validUntil`, must be refused at `now`.
    public static func check(createdAt: Date, validUntil: Date, now: Date = Date()) throws(Refusal) {
        guard createdAt.timeIntervalSince(now) <= Self.allowedSkewSeconds else {
            throw .issuedInTheFuture(createdAt: createdAt)
        }
        guard validUntil.timeIntervalSince(now) >= -Self.allowedSkewSeconds else {
            throw .expired(validUntil: validUntil)
        }
    }
}
