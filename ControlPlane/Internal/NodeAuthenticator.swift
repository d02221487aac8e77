import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Shared
import Synchronization

/// Checks the node's own credential on every route of the internal API (`InternalAPI`), before
/// any handler runs, and tells the handlers which node is calling (`NodeContext`).
struct NodeAuthenticator: RouterMiddleware {
    typealias Context = AdminRequestContext
    let credentials: NodeCredentialCache

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
            let token = NodeToken(parsing: header.dropFirst("Bearer ".count)),
            let identity = try await self.credentials.identity(of: token, logger: context.logger)
        else { throw Problem.nodeUnauthenticated }
        var context = context
        context.node = identity
        context.logger[metadataKey: "node"] = .string(identity.nodeID)
        return try await next(request, context)
    }
}

/// A node's calls on the internal API, once its credential is verified.
struct NodeContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    let node: NodeIdentity

    init(context: AdminRequestContext) throws {
        guard let node = context.node else { throw Problem.nodeUnauthenticated }
        self.coreContext = context.coreContext
        self.node = node
    }

    /// Small bodies by default; canon updates and cache batches read theirs with larger limits.
    var maxUploadSize: Int { 64 * 1024 }
}

/// Verified credentials for a few seconds, so a node's steady traffic (cache reads on Redis
/// misses, batches, watches) does not cost a database lookup each. A revocation made through this
/// process takes effect at once; one made through another control-plane replica within `lifetime`.
final class NodeCredentialCache: Sendable {
    let store: NodeCredentialStore
    let lifetime: Duration
    private let verified = Mutex<[[UInt8]: (identity: NodeIdentity, until: ContinuousClock.Instant)]>([:])

    init(store: NodeCredentialStore, lifetime: Duration = .seconds(10)) {
        self.store = store
        self.lifetime = lifetime
    }

    func identity(of token: NodeToken, logger: Logger) async throws -> NodeIdentity? {
        let digest = token.digest
        let now = ContinuousClock.now
        if let cached = self.verified.withLock({ $0[digest] }), cached.until > now { return cached.identity }
        guard let identity = try await self.store.authenticate(digest: digest, logger: logger) else {
            self.verified.withLock { _ = $0.removeValue(forKey: digest) }
            return nil
        }
        self.verified.withLock { entries in
            // Credentials are few; the bound only guards against a flood of distinct valid tokens.
            if entries.count >= 10_000 { entries.removeAll() }
            entries[digest] = (identity, now + self.lifetime)
        }
        return identity
    }

    /// Forgets a revoked credential at once.
    func forget(credentialID: UUID) {
        self.verified.withLock { entries in entries = entries.filter { $0.value.identity.credentialID != credentialID }
        }
    }
}

extension Problem {
    static var nodeUnauthenticated: Problem {
        Problem(
            slug: "node-unauthenticated",
            title: "Unauthorized",
            status: .unauthorized,
            detail:
                "Internal API: send this node's credential (`zaasctl nodes issue`) as `Authorization: Bearer <token>`.",
            headers: [.wwwAuthenticate: "Bearer"]
        )
    }

    /// A node acting under another node's id.
    static func nodeMismatch(_ claimed: String, _ node: NodeIdentity) -> Problem {
        Problem(
            slug: "node-id-mismatch", title: "Forbidden", status: .forbidden,
            detail: "This credential belongs to node \(node.nodeID), not \(claimed).")
    }
}
