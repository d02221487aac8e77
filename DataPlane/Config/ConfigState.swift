import Foundation
import Shared
import Synchronization

/// One version of the configuration, indexed for the request path. Immutable: a new version is a
/// new value, swapped in whole by `ConfigStore`, so a request sees one version from start to end.
public final class ConfigState: Sendable {
    public let version: Int64
    /// When the control plane built the document this version came from.
    public let createdAt: Date
    public let settings: DataPlaneSettings
    public let tenants: [UUID: TenantConfig]
    /// By the public key id in the key text: the request path's lookup.
    public let keys: [String: KeyConfig]
    /// Record id → key id, for removals.
    let keyIDs: [UUID: String]

    public init(snapshot: NodeConfigSnapshot) {
        self.version = snapshot.version
        self.createdAt = snapshot.createdAt
        self.settings = snapshot.settings
        var tenants: [UUID: TenantConfig] = [:]
        tenants.reserveCapacity(snapshot.tenants.count)
        for tenant in snapshot.tenants { tenants[tenant.id] = tenant }
        var keys: [String: KeyConfig] = [:]
        var keyIDs: [UUID: String] = [:]
        keys.reserveCapacity(snapshot.keys.count)
        keyIDs.reserveCapacity(snapshot.keys.count)
        for key in snapshot.keys {
            keys[key.keyID] = key
            keyIDs[key.id] = key.keyID
        }
        self.tenants = tenants
        self.keys = keys
        self.keyIDs = keyIDs
    }

    private init(
        version: Int64, createdAt: Date, settings: DataPlaneSettings, tenants: [UUID: TenantConfig],
        keys: [String: KeyConfig], keyIDs: [UUID: String]
    ) {
        self.version = version
        self.createdAt = createdAt
        self.settings = settings
        self.tenants = tenants
        self.keys = keys
        self.keyIDs = keyIDs
    }

    /// The state `delta` leads to. Refuses a delta that does not start at this version.
    public func applying(_ delta: ConfigDelta) throws(ConfigApplyError) -> ConfigState {
        guard delta.fromVersion == self.version else {
            throw ConfigApplyError.versionMismatch(held: self.version, deltaFrom: delta.fromVersion)
        }
        var tenants = self.tenants
        var keys = self.keys
        var keyIDs = self.keyIDs
        for tenant in delta.upsertedTenants { tenants[tenant.id] = tenant }
        if !delta.removedTenants.isEmpty {
            let removed = Set(delta.removedTenants)
            for id in removed { tenants[id] = nil }
            for (keyID, key) in keys where removed.contains(key.tenantID) {
                keys[keyID] = nil
                keyIDs[key.id] = nil
            }
        }
        for id in delta.removedKeys {
            if let keyID = keyIDs.removeValue(forKey: id) { keys[keyID] = nil }
        }
        for key in delta.upsertedKeys {
            // A key id never changes for a record, but be exact if it ever did.
            if let previous = keyIDs[key.id], previous != key.keyID { keys[previous] = nil }
            keys[key.keyID] = key
            keyIDs[key.id] = key.keyID
        }
        return ConfigState(
            version: delta.toVersion, createdAt: delta.createdAt, settings: delta.settings,
            tenants: tenants, keys: keys, keyIDs: keyIDs
        )
    }

    public func applying(_ update: ConfigUpdate) throws(ConfigApplyError) -> ConfigState {
        switch update {
        case .full(let snapshot): ConfigState(snapshot: snapshot)
        case .delta(let delta): try self.applying(delta)
        }
    }
}

public enum ConfigApplyError: Error, Equatable, CustomStringConvertible {
    case versionMismatch(held: Int64, deltaFrom: Int64)
    case noBase(deltaFrom: Int64)

    public var description: String {
        switch self {
        case .versionMismatch(let held, let from): "delta starts at version \(from) but this node holds \(held)"
        case .noBase(let from): "delta starts at version \(from) but this node holds no configuration"
        }
    }
}
