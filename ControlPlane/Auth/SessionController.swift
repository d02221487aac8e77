import Foundation
import Hummingbird
import Shared

/// `POST /admin/v1/sessions` (sign in), `DELETE /admin/v1/sessions/current` (sign out),
/// `GET /admin/v1/me`.
struct SessionController: Sendable {
    let auth: AuthService
    /// Proxies whose `X-Forwarded-For` names the client whose failures are throttled.
    var trustedProxies: TrustedProxies = .none

    struct SignIn: Decodable {
        let email: String
        let password: String
    }

    struct PrincipalBody: Encodable {
        let kind: String
        let id: String
        let tenantId: String?
        let role: String

        init(_ principal: Principal) {
            switch principal {
            case .platformOperator(let id):
                self.kind = "operator"
                self.id = id.uuidString.lowercased()
                self.tenantId = nil
                self.role = "operator"
            case .tenantAdmin(let id, let tenantID, let role):
                self.kind = "tenant_admin"
                self.id = id.uuidString.lowercased()
                self.tenantId = tenantID.uuidString.lowercased()
                self.role = role.rawValue
            }
        }
    }

    struct SessionBody: Encodable {
        let token: String
        let expiresAt: Date
        let principal: PrincipalBody
    }

    func addRoutes(to router: Router<AdminRequestContext>) {
        router.post("/admin/v1/sessions") { request, context in
            let body = try await StrictJSON.decode(
                SignIn.self,
                from: request,
                context: context,
                allowedFields: ["email", "password"]
            )
            let forwarded = request.headers[values: .xForwardedFor]
            let address = ClientAddress.resolve(
                peer: context.clientAddress, forwardedFor: forwarded.isEmpty ? nil : forwarded.joined(separator: ","),
                trusted: self.trustedProxies)
            let session = try await self.auth.signIn(
                email: body.email, password: body.password, address: address, logger: context.logger)
            return try StrictJSON.response(
                SessionBody(
                    token: session.token.text, expiresAt: session.expiresAt, principal: .init(session.principal)),
                status: .created
            )
        }
        let signedIn = router.group("/admin/v1", context: AuthenticatedContext.self)
        signedIn.delete("/sessions/current") { _, context in
            try await self.auth.signOut(
                principal: context.principal, sessionID: context.sessionID, logger: context.logger)
            return Response(status: .noContent)
        }
        signedIn.get("/me") { _, context in
            try StrictJSON.response(PrincipalBody(context.principal))
        }
    }
}
