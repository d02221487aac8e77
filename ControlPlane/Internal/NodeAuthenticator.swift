import Crypto
import HTTPTypes
import Hummingbird
import Shared

/// Checks the node credential on every route of the internal API (`InternalAPI`), before any
/// handler runs: one check for everything nodes call.
struct NodeAuthenticator<Context: RequestContext>: RouterMiddleware {
    let credential: NodeCredential

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        try self.credential.authenticate(request)
        return try await next(request, context)
    }
}

/// The shared secret nodes present as `Authorization: Bearer <token>`; compared in constant time
/// (digests of equal length, so not even the token's length leaks).
struct NodeCredential: Sendable {
    private let digest: [UInt8]

    init(token: String) {
        self.digest = Array(SHA256.hash(data: Array(token.utf8)))
    }

    func authenticate(_ request: Request) throws {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw Problem.nodeUnauthenticated
        }
        let presented = Array(SHA256.hash(data: Array(header.dropFirst("Bearer ".count).utf8)))
        guard constantTimeEqual(presented, self.digest) else { throw Problem.nodeUnauthenticated }
    }
}

extension Problem {
    static var nodeUnauthenticated: Problem {
        Problem(
            slug: "node-unauthenticated",
            title: "Unauthorized",
            status: .unauthorized,
            detail: "Internal API: send the node credential as `Authorization: Bearer <token>`.",
            headers: [.wwwAuthenticate: "Bearer"]
        )
    }
}
