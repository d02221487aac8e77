import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Shared
import Synchronization

/// The node's one way to the control plane's internal API (`InternalAPI`): it owns the URL, the
/// node credential, the timeouts and the HTTP client. Everything a node asks of the control plane
/// (configuration, canon artifacts, the persistent answer cache, canon updates, key usage) goes
/// through it.
///
/// Run as a service, it shuts its HTTP client down when the node stops; list it before the
/// services that call it, so it stops after them.
public final class ControlPlaneClient: Service, Sendable {
    public struct Settings: Sendable {
        /// The control plane's base URL, without a trailing slash.
        public var url: String
        /// The credential this node presents (`nodes.token`).
        public var nodeToken: String
        /// Connect timeout; each call adds its own allowance for the answer.
        public var timeout: Duration

        public init(url: String, nodeToken: String, timeout: Duration) {
            self.url = url.hasSuffix("/") ? String(url.dropLast()) : url
            self.nodeToken = nodeToken
            self.timeout = timeout
        }
    }

    /// An answer of any status, its body read whole (up to the call's limit).
    public struct Reply: Sendable {
        public let status: UInt
        public let headers: HTTPHeaders
        public let body: ByteBuffer
    }

    /// Who the node is, sent with every watch request: the control plane's node registry.
    public struct NodeReport: Sendable {
        public var id: String
        public var address: String
        public var softwareVersion: String = ZaaSBuild.version
    }

    public let settings: Settings
    let httpClient: HTTPClient
    private let ownsHTTPClient: Bool
    /// How the node obtains its credential when it enrolls for one (nil: it was given one).
    let enroller: NodeEnroller?
    /// The credential presented: the one given, or the one enrolled for last.
    private let credential: Mutex<String>
    /// The enrollment under way after a 401, which every call refused meanwhile waits for.
    private let renewal = Mutex<Task<String, any Error>?>(nil)

    /// With an HTTP client of its own, which fails a refused connection at once instead of
    /// retrying until the call's deadline: the node notices a control-plane outage in milliseconds.
    public init(settings: Settings, enroller: NodeEnroller? = nil) {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .init(settings.timeout)
        self.settings = settings
        self.httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.ownsHTTPClient = true
        self.enroller = enroller
        self.credential = Mutex(settings.nodeToken)
    }

    /// Over an HTTP client the caller owns and shuts down.
    public init(settings: Settings, httpClient: HTTPClient) {
        self.settings = settings
        self.httpClient = httpClient
        self.ownsHTTPClient = false
        self.enroller = nil
        self.credential = Mutex(settings.nodeToken)
    }

    /// For a node that enrolls: obtains its credential before the node starts (`NodeEnroller`).
    public func enroll() async throws {
        guard let enroller = self.enroller else { return }
        let token = try await enroller.credential(using: self)
        self.credential.withLock { $0 = token }
    }

    /// After a 401 to `rejected`: the credential to try again with. An enrolled node's credential
    /// may have been retired while it was out of touch with the control plane for long; it enrolls
    /// again, once for all the calls refused meanwhile.
    private func renewed(after rejected: String, by enroller: NodeEnroller) async throws -> String {
        let task = self.renewal.withLock { renewal -> Task<String, any Error> in
            let current = self.credential.withLock { $0 }
            if current != rejected { return Task { current } }
            if let running = renewal { return running }
            let task = Task {
                defer { self.renewal.withLock { $0 = nil } }
                enroller.logger.warning("the control plane refused this node's credential: enrolling again")
                let token = try await enroller.attempt(using: self)
                self.credential.withLock { $0 = token }
                return token
            }
            renewal = task
            return task
        }
        return try await task.value
    }

    public func run() async throws {
        try? await gracefulShutdown()
        try await self.shutdown()
    }

    /// Shuts down the HTTP client it made (for owners that do not run it as a service).
    public func shutdown() async throws {
        if self.ownsHTTPClient { try await self.httpClient.shutdown() }
    }

    // MARK: The internal API's calls

    /// `GET /internal/v1/config`: the update since `since` (a full snapshot when nil), held by
    /// the control plane up to `wait` when there is none yet. Any status is returned.
    func watch(since: Int64?, wait: Duration, node: NodeReport) async throws -> Reply {
        var query = [
            ("node_id", node.id), ("address", node.address), ("software_version", node.softwareVersion),
            ("wait", String(wait.components.seconds)),
        ]
        if let since { query.append(("since", String(since))) }
        return try await self.call(
            .GET, InternalAPI.config, query: query, allowance: wait + .seconds(5),
            maximumBytes: SignedConfigDocument.maximumPayloadLength + 1024)
    }

    /// `POST /internal/v1/enroll` with the fleet's enrollment secret; any status is returned.
    func enroll(nodeID: String, secret: String) async throws -> Reply {
        try await self.call(
            .POST, InternalAPI.enroll, body: ByteBuffer(bytes: try Self.encoder.encode(["node_id": nodeID])),
            bearer: secret, allowance: .seconds(5), maximumBytes: 64 * 1024)
    }

    /// `DELETE /internal/v1/enroll`: hands this node's enrolled credential back (one already
    /// retired is not enrolled for again just to be handed back).
    func leave() async throws {
        let reply = try await self.call(
            .DELETE, InternalAPI.enroll, bearer: self.credential.withLock { $0 }, allowance: .seconds(5),
            maximumBytes: 64 * 1024)
        guard reply.status == 204 || reply.status == 401 else { throw ControlPlaneError(reply) }
    }

    /// `POST /internal/v1/usage`.
    func report(_ usage: KeyUsageReport) async throws {
        try await self.expect(
            .noContent, .POST, InternalAPI.usage, body: try Self.encoder.encode(usage), allowance: .seconds(5))
    }

    /// `POST /internal/v1/audit`: audit events, one JSON object per line. Throws unless the
    /// control plane accounted for every event (stored, held already, or refused for good).
    func shipAudit(_ lines: [UInt8]) async throws -> AuditIngestReply {
        let reply = try await self.call(
            .POST, InternalAPI.audit, body: ByteBuffer(bytes: lines), contentType: "application/x-ndjson",
            allowance: .seconds(30), maximumBytes: 4 << 20)
        guard reply.status == 200 else { throw ControlPlaneError(reply) }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(AuditIngestReply.self, from: Data(reply.body.readableBytesView))
    }

    /// `GET /internal/v1/canon/artifacts/{sha256}`: the bytes, unverified (the caller checks the hash).
    func artifact(sha256: String, maximumBytes: Int) async throws -> ByteBuffer {
        let reply = try await self.call(
            .GET, InternalAPI.canonArtifact(sha256: sha256), allowance: .seconds(60), maximumBytes: maximumBytes)
        guard reply.status == 200 else { throw ControlPlaneError(reply) }
        return reply.body
    }

    /// `POST /internal/v1/cache`: answers for the persistent answer cache; which were stored
    /// and which refused for good.
    func store(_ answers: [AnswerCacheRecord]) async throws -> AnswerCacheStoreReply {
        let reply = try await self.call(
            .POST, InternalAPI.cache, body: ByteBuffer(bytes: try Self.encoder.encode(["entries": answers])),
            allowance: .seconds(5), maximumBytes: 1 << 20)
        guard reply.status == 200 else { throw ControlPlaneError(reply) }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(AnswerCacheStoreReply.self, from: Data(reply.body.readableBytesView))
    }

    /// `GET /internal/v1/cache/{tenant}/{digest}`: the body of an unexpired answer, nil when there is none.
    func cachedAnswer(tenant: UUID, digest: String) async throws -> ByteBuffer? {
        let reply = try await self.call(
            .GET, InternalAPI.cacheEntry(tenant: tenant, digest: digest), allowance: .zero, maximumBytes: 1 << 20)
        switch reply.status {
        case 200: return reply.body
        case 404: return nil
        default: throw ControlPlaneError(reply)
        }
    }

    /// `GET /internal/v1/stats/{tenant}`: the tenant's usage report for the period `query` names;
    /// the control plane's answer whatever its status.
    func stats(tenant: UUID, query: [(String, String)]) async throws -> Reply {
        try await self.call(
            .GET, InternalAPI.stats + "/" + tenant.lowercased, query: query, allowance: .seconds(10),
            maximumBytes: 8 << 20)
    }

    /// A tenant's canon update or version (`InternalAPI.canonUpdate`, `canonVersion`), as the
    /// key's tenant; the control plane's answer is returned whatever its status.
    func canon(
        _ method: HTTPMethod, _ path: String, tenant: UUID, key: UUID, body: ByteBuffer? = nil
    ) async throws -> Reply {
        try await self.call(
            method, path, query: [("tenant_id", tenant.lowercased), ("key_id", key.lowercased)], body: body,
            allowance: .seconds(30), maximumBytes: 4 << 20)
    }

    // MARK: Transport

    /// One request with the node credential; the whole call (connect, answer, body) must end within
    /// the connect timeout plus `allowance`.
    func call(
        _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: ByteBuffer? = nil,
        contentType: String = "application/json", bearer: String? = nil, allowance: Duration, maximumBytes: Int
    ) async throws -> Reply {
        var url = self.settings.url + path
        if !query.isEmpty {
            url += "?" + query.map { "\($0.0)=\(Self.escape($0.1))" }.joined(separator: "&")
        }
        let presented = bearer ?? self.credential.withLock { $0 }
        let reply = try await self.send(
            method, url, body: body, contentType: contentType, bearer: presented, allowance: allowance,
            maximumBytes: maximumBytes)
        guard reply.status == 401, bearer == nil, let enroller = self.enroller else { return reply }
        return try await self.send(
            method, url, body: body, contentType: contentType,
            bearer: try await self.renewed(after: presented, by: enroller), allowance: allowance,
            maximumBytes: maximumBytes)
    }

    private func send(
        _ method: HTTPMethod, _ url: String, body: ByteBuffer?, contentType: String, bearer: String,
        allowance: Duration, maximumBytes: Int
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(bearer)")
        if let body {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(body)
        }
        let response = try await self.httpClient.execute(request, timeout: .init(self.settings.timeout + allowance))
        let bytes = try await response.body.collect(upTo: maximumBytes)
        return Reply(status: response.status.code, headers: response.headers, body: bytes)
    }

    private func expect(
        _ status: HTTPResponseStatus, _ method: HTTPMethod, _ path: String, body: Data, allowance: Duration
    ) async throws {
        let reply = try await self.call(
            method, path, body: ByteBuffer(bytes: body), allowance: allowance, maximumBytes: 64 * 1024)
        guard reply.status == status.code else { throw ControlPlaneError(reply) }
    }

    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~"))) ?? ""
    }

    /// snake_case and ISO 8601, as the internal API reads bodies.
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()
}

/// The control plane answered, but not as the call expects.
public struct ControlPlaneError: Error, CustomStringConvertible {
    public let status: UInt
    public let body: String

    init(_ reply: ControlPlaneClient.Reply) {
        self.status = reply.status
        self.body = String(buffer: reply.body)
    }

    public var description: String { "the control plane answered \(self.status): \(self.body.prefix(300))" }

    /// The control plane refused the content of the request (malformed, too large, invalid):
    /// sending the same again gets the same answer. Other statuses (401 while a credential is
    /// being rotated, 404 from an older release, 429, 5xx) may pass later.
    public var isPermanent: Bool { [400, 413, 415, 422].contains(self.status) }
}
