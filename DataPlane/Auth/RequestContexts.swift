import Hummingbird
import Shared

/// The data plane's request context. `APIKeyAuthenticator` fills in the caller; routes behind it
/// run in `AuthenticatedRequestContext`, where it is non-optional.
public struct DataPlaneRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var caller: Caller?

    public init(source: Source) {
        self.coreContext = .init(source: source)
    }
}

/// A request whose API key checked out: tenant, key and resolved policy are plain values.
public struct AuthenticatedRequestContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let caller: Caller

    public init(context: DataPlaneRequestContext) throws {
        guard let caller = context.caller else { throw Problem.invalidAPIKey }
        self.coreContext = context.coreContext
        self.caller = caller
    }

    public var tenant: TenantConfig { self.caller.tenant }
    public var key: KeyConfig { self.caller.key }
    public var policy: TenantPolicy { self.caller.policy }
}
