import Foundation
import HTTPTypes

/// The control plane's internal API, which data-plane nodes call with the node credential
/// (`Authorization: Bearer <nodes.token>`). Both sides take its paths and headers from here.
///
/// - `GET config?since=N&wait=S&node_id=…&address=…&software_version=…`: the signed config
///   update from version N (a full snapshot without `since`), or 204 after `wait` seconds.
/// - `POST usage`: keys' last-used times (`KeyUsageReport`).
/// - `POST cache`, `GET cache/{tenant}/{digest}`: the persistent answer cache (`AnswerCacheRecord`).
/// - `POST audit`: audit events from a node's spool, one JSON object per line
///   (`application/x-ndjson`), stored once each (`AuditIngestReply`).
/// - `GET canon/artifacts/{sha256}`: a canon artifact's bytes.
/// - `POST canon/update`, `GET canon/versions/{id}` (`?tenant_id=…&key_id=…`): a tenant's canon
///   update made through the public API, and its progress.
public enum InternalAPI {
    /// Every internal path starts with this.
    public static let root = "/internal/v1"

    public static let config = root + "/config"
    public static let usage = root + "/usage"
    public static let cache = root + "/cache"
    public static let audit = root + "/audit"
    /// `/{tenant}`: a tenant's usage report, for `GET /api/v1/stats`.
    public static let stats = root + "/stats"
    public static let canonArtifacts = root + "/canon/artifacts"
    public static let canonUpdate = root + "/canon/update"
    public static let canonVersions = root + "/canon/versions"
    /// `POST` with the fleet's enrollment secret: a new node's credential (`NodeEnrollment`);
    /// `DELETE` with the node's credential: handed back as the node stops.
    public static let enroll = root + "/enroll"

    public static func cacheEntry(tenant: UUID, digest: String) -> String {
        "\(cache)/\(tenant.lowercased)/\(digest)"
    }

    public static func canonArtifact(sha256: String) -> String { "\(canonArtifacts)/\(sha256)" }

    public static func canonVersion(_ id: UUID) -> String { "\(canonVersions)/\(id.lowercased)" }
}

extension HTTPField.Name {
    /// On every watch answer: the config version the answer brings (or, on 204, the newest).
    public static let zaasConfigVersion = Self("ZaaS-Config-Version")!
    /// On every watch answer: how many nodes the registry counts live, the asking node included.
    public static let zaasLiveNodes = Self("ZaaS-Live-Nodes")!
    /// On an artifact: its SHA-256, which the node checks before using a byte of it.
    public static let zaasArtifactSHA256 = Self("ZaaS-Artifact-SHA256")!
}

/// A credential a node obtained by enrolling (`POST /internal/v1/enroll`; snake_case).
public struct NodeEnrollment: Codable, Sendable, Equatable {
    public var nodeId: String
    /// `znode_` and 64 hex digits, shown once.
    public var token: String

    public init(nodeId: String, token: String) {
        self.nodeId = nodeId
        self.token = token
    }
}

/// Keys' last-used times, batched by a node (`POST /internal/v1/usage`; snake_case, ISO 8601).
public struct KeyUsageReport: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var id: UUID
        public var lastUsedAt: Date

        public init(id: UUID, lastUsedAt: Date) {
            self.id = id
            self.lastUsedAt = lastUsedAt
        }
    }

    /// At most this many keys per report.
    public static let maximumKeys = 500

    public var nodeId: String
    public var keys: [Entry]

    public init(nodeId: String, keys: [Entry]) {
        self.nodeId = nodeId
        self.keys = keys
    }
}

/// An entry of a batch that the control plane refused for good, by its index in the batch, and why.
public struct BatchRefusal: Codable, Sendable, Equatable {
    public var index: Int
    public var reason: String

    public init(index: Int, reason: String) {
        self.index = index
        self.reason = reason
    }
}

/// The control plane's answer to a batch of audit events (`POST /internal/v1/audit`): how many
/// were stored, how many it held already (a batch sent again), and which it refused for good.
/// Every event of the batch is one of the three; the node may delete what it sent.
public struct AuditIngestReply: Codable, Sendable, Equatable {
    /// At most this many events per batch, and this many bytes.
    public static let maximumEvents = 2000
    public static let maximumBytes = 16 << 20

    public var stored: Int
    public var duplicates: Int
    public var refused: [BatchRefusal]

    public init(stored: Int, duplicates: Int, refused: [BatchRefusal]) {
        self.stored = stored
        self.duplicates = duplicates
        self.refused = refused
    }
}
