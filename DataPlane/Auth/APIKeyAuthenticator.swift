import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import Shared

/// Authenticates every request of the group it is added to, requiring `scopes`.
struct APIKeyAuthenticator: RouterMiddleware {
    typealias Context = DataPlaneRequestContext

    let verifier: KeyVerifier
    let store: ConfigStore
    let usage: KeyUsageRecorder
    let requiredScopes: KeyScopes
    /// Records refusals in the audit trail, on the routes whose requests are audited (queries).
    var audit: AuditRecorder? = nil
    let rejected = Counter(label: "zaas_auth_rejected_total")

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let result = self.verifier.verify(
            authorization: request.headers[.authorization],
            tenantHeader: request.headers[.tenantID],
            requiredScopes: self.requiredScopes,
            state: self.store.current
        )
        switch result {
        case .success(let caller):
            self.usage.record(caller.key.id)
            var context = context
            context.caller = caller
            context.logger[metadataKey: "tenant"] = .string(caller.tenant.id.uuidString.lowercased())
            context.logger[metadataKey: "key"] = .string(caller.key.keyID)
            return try await next(request, context)
        case .failure(let failure):
            self.rejected.increment()
            let problem: Problem
            var owner: (tenant: UUID, key: UUID)? = nil
            switch failure {
            case .unauthenticated: problem = .invalidAPIKey
            case .notReady: problem = .notReady
            case .missingScope(let missing):
                problem = .forbidden("This API key lacks the scope \(missing.names.joined(separator: ", ")).")
                owner = self.verifier.owner(of: request.headers[.authorization], state: self.store.current)
            case .wrongTenant:
                problem = .forbidden("X-Tenant-ID names a tenant other than the API key's.")
                owner = self.verifier.owner(of: request.headers[.authorization], state: self.store.current)
            }
            // A refusal goes out even when its event cannot be recorded.
            try? self.audit?.unanswered(
                .init(error: problem), caller: nil, owner: owner, requestID: request.headers[.requestID], total: .zero)
            throw problem
        }
    }
}

extension Problem {
    static var invalidAPIKey: Problem {
        Problem(
            slug: "invalid-api-key",
            title: "Unauthorized",
            status: .unauthorized,
            detail: "Send a valid, active API key as `Authorization: Bearer zaas_…`.",
            headers: [.wwwAuthenticate: "Bearer"]
        )
    }

    static var notReady: Problem {
        Problem(
            slug: "not-ready",
            title: "Service Unavailable",
            status: .serviceUnavailable,
            detail: "This node has no configuration yet. Try another node or retry shortly.",
            headers: [.retryAfter: "1"]
        )
    }
}
