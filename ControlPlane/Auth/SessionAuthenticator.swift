import Foundation
import Hummingbird
import Logging
import Shared

/// Reads `Authorization: Bearer zsess_…` and, when the session is current, puts its principal on
/// the context. No header leaves the context anonymous (protected routes then answer 401); a bad
/// or expired token is 401 at once.
struct SessionAuthenticator: RouterMiddleware {
    typealias Context = AdminRequestContext

    let auth: AuthService

    func handle(
        _ request: Request,
        context: AdminRequestContext,
        next: (Request, AdminRequestContext) async throws -> Response
    ) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            return try await next(request, context)
        }
        guard header.hasPrefix("Bearer "), let token = SessionToken(parsing: header.dropFirst(7)) else {
            throw Problem.unauthenticated
        }
        var context = context
        let (principal, sessionID) = try await self.auth.resolve(token: token, logger: context.logger)
        context.principal = principal
        context.sessionID = sessionID
        switch principal {
        case .platformOperator(let id):
            context.logger[metadataKey: "operator"] = .string(id.uuidString.lowercased())
        case .tenantAdmin(let id, let tenantID, _):
            context.logger[metadataKey: "tenant"] = .string(tenantID.uuidString.lowercased())
            context.logger[metadataKey: "admin"] = .string(id.uuidString.lowercased())
        }
        return try await next(request, context)
    }
}
