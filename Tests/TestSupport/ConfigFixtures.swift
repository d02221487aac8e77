import Foundation
import Shared

/// Configuration documents for tests, signed with the stack's key (or another one).
public enum ConfigFixtures {
    public static var signingKey: ConfigSigningKey {
        // The stack's key, so documents verify on nodes configured with its public key.
        try! ConfigSigningKey(hexSeed: TestEnvironment.shared.configSigningKey)
    }

    public static let settings = DataPlaneSettings(usageReportIntervalMilliseconds: 1000)

    public static func policy(tier: String = "pro", queriesPerHour: UInt32 = 100) -> TenantPolicy {
        TenantPolicy(
            tier: tier, queriesPerHour: queriesPerHour, tenantQueriesPerHour: nil, modelClasses: [.local, .cloud],
            maxCitations: 5, cacheTTLSeconds: 900, auditRetentionDays: 30, canonUpdatesAllowed: false)
    }

    public static func tenant(_ id: UUID = UUID(), slug: String = "lab", status: TenantConfig.Status = .active)
        -> TenantConfig
    {
        TenantConfig(id: id, slug: slug, status: status, policy: policy(), canon: nil)
    }

    /// A key record and the text a caller would present for it.
    public static func key(
        tenant: UUID,
        scopes: KeyScopes = [.query],
        environment: APIKey.Environment = .live,
        expiresAt: Date? = nil,
        revokedAt: Date? = nil,
        pepper: String = TestEnvironment.testPepper
    ) -> (record: KeyConfig, text: String) {
        let key = APIKey.generate(environment: environment)
        let digester = try! APIKeyDigester(pepper: Hex.decode(pepper)!)
        return (
            KeyConfig(
                id: UUID(), tenantID: tenant, keyID: key.keyID, environment: environment,
                digest: digester.digest(key.secret), scopes: scopes, expiresAt: expiresAt, revokedAt: revokedAt),
            key.text
        )
    }

    public static func snapshot(version: Int64, tenants: [TenantConfig], keys: [KeyConfig]) -> NodeConfigSnapshot {
        NodeConfigSnapshot(
            version: version, createdAt: Date(timeIntervalSince1970: 1_800_000_000), settings: settings,
            tenants: tenants, keys: keys)
    }

    /// Writes `snapshot`, signed, as a node's saved configuration in `directory`.
    public static func writeSnapshot(
        _ snapshot: NodeConfigSnapshot, to directory: String, signedWith key: ConfigSigningKey = signingKey
    ) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let document = SignedConfigDocument.encode(.full(snapshot), signedWith: key)
        try Data(document).write(to: URL(fileURLWithPath: directory + "/config.snapshot"))
    }

    public static func temporaryDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("zaas-test-\(UUID().uuidString)").path
    }
}
