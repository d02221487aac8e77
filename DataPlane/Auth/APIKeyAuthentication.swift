import Common
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Synchronization

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

/// Authenticates every request of the group it is added to, requiring `scopes`.
struct APIKeyAuthenticator: RouterMiddleware {
    typealias Context = DataPlaneRequestContext

    let verifier: KeyVerifier
    let store: ConfigStore
    let usage: KeyUsageRecorder
    let requiredScopes: KeyScopes
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
            switch failure {
            case .unauthenticated: throw Problem.invalidAPIKey
            case .notReady: throw Problem.notReady
            case .missingScope(let missing):
                throw Problem.forbidden("This API key lacks the scope \(missing.names.joined(separator: ", ")).")
            case .wrongTenant:
                throw Problem.forbidden("X-Tenant-ID names a tenant other than the API key's.")
            }
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

/// Last-used times of keys, gathered in memory and reported to the control plane in batches:
/// never a database write per request.
public final class KeyUsageRecorder: Service, Sendable {
    private let pending = Mutex<[UUID: Date]>([:])
    private let send: @Sendable ([(UUID, Date)]) async throws -> Void
    private let interval: @Sendable () -> Duration
    private let logger: Logger
    static let batchSize = 500

    init(
        interval: @escaping @Sendable () -> Duration,
        logger: Logger,
        send: @escaping @Sendable ([(UUID, Date)]) async throws -> Void
    ) {
        self.interval = interval
        self.logger = logger
        self.send = send
    }

    func record(_ keyID: UUID, at date: Date = Date()) {
        self.pending.withLock { $0[keyID] = date }
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.interval())
                await self.flush()
            }
        }
        // What was used since the last report goes out before the node stops.
        await self.flush()
    }

    /// Sends what is pending; on failure it is kept (merged with newer uses) for the next round.
    func flush() async {
        let batch = self.pending.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        guard !batch.isEmpty else { return }
        let entries = batch.map { ($0.key, $0.value) }
        var sent = 0
        do {
            while sent < entries.count {
                let chunk = Array(entries[sent..<min(sent + Self.batchSize, entries.count)])
                try await self.send(chunk)
                sent += chunk.count
            }
        } catch {
            self.logger.warning(
                "cannot report key usage; keeping it for the next round",
                metadata: ["error": "\(String(describing: error))", "keys": "\(entries.count - sent)"])
            self.pending.withLock { pending in
                for (id, date) in entries[sent...] where (pending[id] ?? .distantPast) < date {
                    pending[id] = date
                }
            }
        }
    }
}
