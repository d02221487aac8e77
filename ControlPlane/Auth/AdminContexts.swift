import Foundation
import Hummingbird
import Shared

/// Who is calling the admin API, once their session is verified.
public enum Principal: Sendable, Equatable {
    case platformOperator(id: UUID)
    case tenantAdmin(id: UUID, tenantID: UUID, role: AdminRole)
}

public enum AdminRole: String, Sendable, Codable, CaseIterable {
    case admin
    case viewer
}

/// The control plane's request context. `SessionAuthenticator` fills in the principal; routes
/// then run in one of the child contexts below, where it is a non-optional value.
public struct AdminRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?
    public var sessionID: UUID?
    /// The data-plane node calling the internal API, once `NodeAuthenticator` verified its credential.
    public var node: NodeIdentity?
    /// The client's IP address as the connection shows it ("unknown" when there is none, as in
    /// router tests), for sign-in throttling.
    public let clientAddress: String

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.clientAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    /// Admin bodies are small; anything bigger is refused with 413 before it is read.
    public var maxUploadSize: Int { 64 * 1024 }
}

/// Any signed-in caller.
public struct AuthenticatedContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let principal: Principal
    public let sessionID: UUID

    public init(context: AdminRequestContext) throws {
        guard let principal = context.principal, let sessionID = context.sessionID else {
            throw Problem.unauthenticated
        }
        self.coreContext = context.coreContext
        self.principal = principal
        self.sessionID = sessionID
    }

    public var maxUploadSize: Int { 64 * 1024 }
}

/// A platform operator.
public struct OperatorContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let operatorID: UUID

    public init(context: AdminRequestContext) throws {
        guard let principal = context.principal else { throw Problem.unauthenticated }
        guard case .platformOperator(let id) = principal else { throw Problem.forbidden("Operators only.") }
        self.coreContext = context.coreContext
        self.operatorID = id
    }

    public var maxUploadSize: Int { 64 * 1024 }
}

/// An admin or viewer of one tenant; everything they touch is scoped to `tenantID`.
public struct TenantAdminContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let adminID: UUID
    public let tenantID: UUID
    public let role: AdminRole

    public init(context: AdminRequestContext) throws {
        guard let principal = context.principal else { throw Problem.unauthenticated }
        guard case .tenantAdmin(let id, let tenantID, let role) = principal else {
            throw Problem.forbidden("Tenant admins only; operators act on tenants under /admin/v1/tenants.")
        }
        self.coreContext = context.coreContext
        self.adminID = id
        self.tenantID = tenantID
        self.role = role
    }

    /// Viewers read; only admins write.
    public func requireAdmin() throws {
        guard self.role == .admin else { throw Problem.forbidden("This needs the admin role; viewers can only read.") }
    }

    public var maxUploadSize: Int { 64 * 1024 }
}

extension Problem {
    public static var unauthenticated: Problem {
        Problem(
            slug: "unauthenticated",
            title: "Unauthorized",
            status: .unauthorized,
            detail: "Sign in with POST /admin/v1/sessions and send the token as `Authorization: Bearer <token>`.",
            headers: [.wwwAuthenticate: "Bearer"]
        )
    }

    public static var invalidCredentials: Problem {
        Problem(
            slug: "invalid-credentials",
            title: "Unauthorized",
            status: .unauthorized,
            detail: "The email or password is wrong, or the account is locked for a while after repeated failures."
        )
    }

    public static func conflict(_ detail: String) -> Problem {
        Problem(slug: "conflict", title: "Conflict", status: .conflict, detail: detail)
    }

    public static var preconditionFailed: Problem {
        Problem(
            slug: "precondition-failed",
            title: "Precondition Failed",
            status: .preconditionFailed,
            detail: "The resource changed since you read it (If-Match does not match its ETag). Read it again."
        )
    }
}
