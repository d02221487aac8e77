import Foundation
import Hummingbird
import Shared

/// `GET /api/v1/key`: what the calling key is and what its tenant may do, as this node enforces it.
/// Any valid key may ask; clients use it to check a key and read their limits.
struct KeyInfoController: Sendable {
    struct KeyInfo: Encodable {
        struct Limits: Encodable {
            let queriesPerHour: UInt32
            let tenantQueriesPerHour: UInt32?
            let modelClasses: [String]
            let maxCitations: UInt16
            let cacheTtlSeconds: UInt32
            let canonUpdatesAllowed: Bool
        }
        let keyId: String
        let id: String
        let tenantId: String
        let tenantSlug: String
        let environment: String
        let scopes: [String]
        let expiresAt: Date?
        let tier: String
        let limits: Limits
        let configVersion: Int64
    }

    func addRoutes(to group: RouterGroup<AuthenticatedRequestContext>) {
        group.get("/key") { _, context in
            let caller = context.caller
            let policy = caller.policy
            let validUntil = [caller.key.expiresAt, caller.key.revokedAt].compactMap { $0 }.min()
            return try JSONResponse.make(
                KeyInfo(
                    keyId: caller.key.keyID,
                    id: caller.key.id.uuidString.lowercased(),
                    tenantId: caller.tenant.id.uuidString.lowercased(),
                    tenantSlug: caller.tenant.slug,
                    environment: caller.key.environment.rawValue,
                    scopes: caller.key.scopes.names,
                    expiresAt: validUntil,
                    tier: policy.tier,
                    limits: .init(
                        queriesPerHour: policy.queriesPerHour,
                        tenantQueriesPerHour: policy.tenantQueriesPerHour,
                        modelClasses: policy.modelClasses.names,
                        maxCitations: policy.maxCitations,
                        cacheTtlSeconds: policy.cacheTTLSeconds,
                        canonUpdatesAllowed: policy.canonUpdatesAllowed
                    ),
                    configVersion: caller.configVersion
                ))
        }
    }
}
