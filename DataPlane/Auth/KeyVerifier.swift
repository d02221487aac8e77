import Foundation
import Shared

/// Who is calling, once their API key checked out against the configuration the node holds.
public struct Caller: Sendable {
    public let tenant: TenantConfig
    public let key: KeyConfig
    public let configVersion: Int64

    public var policy: TenantPolicy { self.tenant.policy }
}

/// Checks `Authorization: Bearer zaas_…` against a configuration state. In process, no I/O:
/// a dictionary lookup and one HMAC-SHA-256.
public struct KeyVerifier: Sendable {
    public enum Failure: Error, Equatable {
        /// No key, a malformed key, an unknown/revoked/expired key or a suspended tenant: one 401,
        /// so a caller learns nothing about which.
        case unauthenticated
        case missingScope(KeyScopes)
        case wrongTenant
        /// The node holds no configuration yet.
        case notReady
    }

    let digester: APIKeyDigester

    public init(digester: APIKeyDigester) {
        self.digester = digester
    }

    public func verify(
        authorization: String?,
        tenantHeader: String?,
        requiredScopes: KeyScopes,
        state: ConfigState?,
        now: Date = Date()
    ) -> Result<Caller, Failure> {
        guard let state else { return .failure(.notReady) }
        guard let authorization, authorization.utf8.count > 7 else { return .failure(.unauthenticated) }
        // The scheme is case-insensitive (RFC 9110 §11.1); the key itself is exact.
        var bytes = Array(authorization.utf8)
        guard bytes.count > 7, Self.isBearerScheme(bytes) else { return .failure(.unauthenticated) }
        bytes.removeFirst(7)
        guard let presented = try? APIKey(utf8: &bytes) else { return .failure(.unauthenticated) }
        // Digest before the lookup's outcome is known, so an unknown key id costs the same.
        let digest = self.digester.digest(presented.secret)
        guard let key = state.keys[presented.keyID],
            constantTimeEqual(digest, key.digest),
            key.environment == presented.environment,
            let tenant = Self.activeTenant(of: key, state: state, now: now)
        else { return .failure(.unauthenticated) }
        guard key.scopes.isSuperset(of: requiredScopes) else {
            return .failure(.missingScope(requiredScopes.subtracting(key.scopes)))
        }
        if let tenantHeader, UUID(uuidString: tenantHeader) != tenant.id {
            return .failure(.wrongTenant)
        }
        return .success(Caller(tenant: tenant, key: key, configVersion: state.version))
    }

    /// The key's tenant when the key is still valid (not expired or revoked) and its tenant active.
    public static func activeTenant(of key: KeyConfig, state: ConfigState, now: Date = Date()) -> TenantConfig? {
        guard key.isValid(at: now), let tenant = state.tenants[key.tenantID], tenant.status == .active else {
            return nil
        }
        return tenant
    }

    /// The tenant and key record of the key in `authorization`, without checking it: for the
    /// audit event of a request `verify` refused with 403 (which it does only for a key that
    /// checked out).
    public func owner(of authorization: String?, state: ConfigState?) -> (tenant: UUID, key: UUID)? {
        guard let authorization, let state else { return nil }
        var bytes = Array(authorization.utf8)
        guard bytes.count > 7, Self.isBearerScheme(bytes) else { return nil }
        bytes.removeFirst(7)
        guard let presented = try? APIKey(utf8: &bytes), let key = state.keys[presented.keyID] else { return nil }
        return (key.tenantID, key.id)
    }

    private static func isBearerScheme(_ bytes: [UInt8]) -> Bool {
        let scheme: [UInt8] = Array("bearer ".utf8)
        for index in 0..<7 where bytes[index] | (index < 6 ? 0x20 : 0) != scheme[index] { return false }
        return true
    }
}
