import Crypto
import Foundation

/// What an audit export holds, signed by the control plane (docs/audit.md, "Export"): the tenant
/// and period, how many events, the event schema, and each file's size and SHA-256. An auditor
/// checks the signature with the control plane's public key, then each file's digest.
public struct AuditExportManifest: Codable, Sendable, Equatable {
    /// The manifest's own format.
    public static let formatVersion = 1
    static let signingPrefix: [UInt8] = Array("zaas-audit-export-v1\n".utf8)

    public struct File: Codable, Sendable, Equatable {
        public var name: String
        public var bytes: Int64
        public var sha256: String

        public init(name: String, bytes: Int64, sha256: String) {
            self.name = name
            self.bytes = bytes
            self.sha256 = sha256
        }
    }

    public var format: Int
    public var exportID: UUID
    public var tenantID: UUID
    public var from: Date
    public var to: Date
    public var events: Int64
    public var eventSchema: Int
    public var createdAt: Date
    public var files: [File]
    /// The public key (hex) whose private half signed this manifest.
    public var signingKey: String

    public init(
        exportID: UUID, tenantID: UUID, from: Date, to: Date, events: Int64, createdAt: Date, files: [File],
        signingKey: String
    ) {
        self.format = Self.formatVersion
        self.exportID = exportID
        self.tenantID = tenantID
        self.from = from
        self.to = to
        self.events = events
        self.eventSchema = AuditEvent.schemaVersion
        self.createdAt = createdAt
        self.files = files
        self.signingKey = signingKey
    }

    enum CodingKeys: String, CodingKey {
        case format, from, to, events, files
        case exportID = "export_id"
        case tenantID = "tenant_id"
        case eventSchema = "event_schema"
        case createdAt = "created_at"
        case signingKey = "signing_key"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.format, forKey: .format)
        try container.encode(self.exportID.lowercased, forKey: .exportID)
        try container.encode(self.tenantID.lowercased, forKey: .tenantID)
        try container.encode(self.from, forKey: .from)
        try container.encode(self.to, forKey: .to)
        try container.encode(self.events, forKey: .events)
        try container.encode(self.eventSchema, forKey: .eventSchema)
        try container.encode(self.createdAt, forKey: .createdAt)
        try container.encode(self.files, forKey: .files)
        try container.encode(self.signingKey, forKey: .signingKey)
    }

    /// The bytes that are signed: JSON with sorted keys, times to the millisecond.
    public func encoded() throws -> [UInt8] {
        Array(try AuditEvent.encoder.encode(self))
    }

    public enum VerificationError: Error, Equatable, CustomStringConvertible {
        case badSignature
        case unreadable(String)
        case missingFile(String)
        case fileMismatch(String)

        public var description: String {
            switch self {
            case .badSignature: "the manifest's signature does not verify with the given key"
            case .unreadable(let why): "the manifest cannot be read: \(why)"
            case .missingFile(let name): "\(name) is missing"
            case .fileMismatch(let name): "\(name) does not match the manifest (size or SHA-256)"
            }
        }
    }

    /// The manifest whose bytes and signature verify with `key`; throws otherwise.
    public static func verified(
        _ bytes: [UInt8], signature: [UInt8], key: ConfigVerificationKey
    ) throws(VerificationError) -> AuditExportManifest {
        guard key.verifiesExportManifest(bytes, signature: signature) else { throw .badSignature }
        do {
            return try AuditEvent.decoder.decode(AuditExportManifest.self, from: Data(bytes))
        } catch {
            throw .unreadable("\(error)")
        }
    }

    /// Checks a file's size and digest against the manifest's entry for it.
    public func check(name: String, contents: [UInt8]) throws(VerificationError) {
        guard let entry = self.files.first(where: { $0.name == name }) else { throw .missingFile(name) }
        guard entry.bytes == Int64(contents.count), entry.sha256 == Hex.encode(SHA256.hash(data: contents)) else {
            throw .fileMismatch(name)
        }
    }
}
