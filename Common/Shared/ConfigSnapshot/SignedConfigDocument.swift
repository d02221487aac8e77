import Crypto
import Foundation
import NIOCore

/// The wire and disk form of a `ConfigUpdate`: compact, stable binary, signed with Ed25519.
///
/// ```
/// "ZCFG"  format:u16  kind:u8  payload-length:u32  payload  signature:64 bytes
/// ```
/// Integers are big-endian; the signature covers everything before it. Field order is fixed by
/// the format version, so the same update always encodes to the same bytes. A reader refuses
/// another format version, a wrong or missing signature, and any byte it cannot account for.
public enum SignedConfigDocument {
    public static let magic: [UInt8] = Array("ZCFG".utf8)
    /// 4: documents carry `validUntil` after `createdAt`. 5: the settings carry the model catalog.
    /// 6: a tenant's policy carries its routing threshold. 7: and a byte of flags (bit 0: the
    /// tenant keeps raw questions). 8: the same layout; a catalog entry's class and a policy's
    /// classes may be `large-local`, which readers of 7 refuse. 9: a policy's flags are followed by
    /// its asynchronous model classes.
    public static let formatVersion: UInt16 = 9
    /// Formats this build still reads: a node upgraded while the control plane is away starts from
    /// the document it kept on disk (format 4 has no model catalog: it reads as empty; formats 4
    /// and 5 have no routing thresholds: every tenant has the default; formats before 7 have no
    /// policy flags: no tenant keeps raw questions; formats before 9 have no asynchronous classes).
    public static let readableFormatVersions: ClosedRange<UInt16> = 4...9
    public static let headerLength = 4 + 2 + 1 + 4
    public static let signatureLength = 64
    /// Refused before reading further: far above what 1M keys need.
    public static let maximumPayloadLength = 1 << 30
    public static let mediaType = "application/vnd.zaas.config"

    static let kindFull: UInt8 = 1
    static let kindDelta: UInt8 = 2

    public static func encode(_ update: ConfigUpdate, signedWith key: ConfigSigningKey) -> [UInt8] {
        var payload = ByteBuffer()
        let kind: UInt8
        switch update {
        case .full(let snapshot):
            kind = kindFull
            payload.writeSnapshot(snapshot)
        case .delta(let delta):
            kind = kindDelta
            payload.writeDelta(delta)
        }
        var document: [UInt8] = []
        document.reserveCapacity(headerLength + payload.readableBytes + signatureLength)
        document += magic
        document += [UInt8(formatVersion >> 8), UInt8(formatVersion & 0xFF), kind]
        let length = UInt32(payload.readableBytes)
        document += [
            UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF),
        ]
        document += payload.readableBytesView
        document += key.sign(document)
        return document
    }

    /// Checks framing and signature, then decodes. Throws before decoding anything unsigned.
    public static func decode(_ bytes: some Collection<UInt8>, verifyingWith key: ConfigVerificationKey)
        throws(ConfigDocumentError) -> ConfigUpdate
    {
        let (length, kind, format) = try readHeader(bytes)
        let document = Array(bytes)
        guard document.count >= headerLength + length + signatureLength else { throw .truncated }
        guard document.count == headerLength + length + signatureLength else { throw .trailingBytes }
        let signed = document[0..<(headerLength + length)]
        let signature = document[(headerLength + length)...]
        guard key.isValidSignature(Array(signature), for: signed) else { throw .badSignature }

        var payload = ByteBuffer(bytes: document[headerLength..<(headerLength + length)])
        do {
            let update: ConfigUpdate
            switch kind {
            case kindFull: update = .full(try payload.readSnapshot(format: format))
            case kindDelta: update = .delta(try payload.readDelta(format: format))
            default: throw ConfigDocumentError.malformed("unknown document kind \(kind)")
            }
            guard payload.readableBytes == 0 else { throw ConfigDocumentError.trailingBytes }
            return update
        } catch let error as ConfigDocumentError {
            throw error
        } catch {
            throw .malformed("\(error)")
        }
    }

    /// The total length of the document starting at `bytes`' start, once its header is readable;
    /// nil when fewer than `headerLength` bytes are there. Used to split a journal of documents.
    public static func documentLength(_ bytes: some Collection<UInt8>) throws(ConfigDocumentError) -> Int? {
        guard bytes.count >= headerLength else { return nil }
        let (length, _, _) = try readHeader(bytes)
        return headerLength + length + signatureLength
    }

    private static func readHeader(_ bytes: some Collection<UInt8>) throws(ConfigDocumentError) -> (
        Int, UInt8, UInt16
    ) {
        let header = Array(bytes.prefix(headerLength))
        guard header.count >= 4 else { throw header.isEmpty ? .truncated : .notAConfigDocument }
        guard Array(header[0..<4]) == magic else { throw .notAConfigDocument }
        guard header.count == headerLength else { throw .truncated }
        let format = UInt16(header[4]) << 8 | UInt16(header[5])
        guard readableFormatVersions.contains(format) else { throw .unsupportedFormatVersion(format) }
        let length = Int(header[7]) << 24 | Int(header[8]) << 16 | Int(header[9]) << 8 | Int(header[10])
        guard length <= maximumPayloadLength else { throw .malformed("payload length \(length) is too large") }
        return (length, header[6], format)
    }
}

public enum ConfigDocumentError: Error, Sendable, Equatable, CustomStringConvertible {
    case notAConfigDocument
    case unsupportedFormatVersion(UInt16)
    case truncated
    case trailingBytes
    case badSignature
    case malformed(String)

    public var description: String {
        switch self {
        case .notAConfigDocument: "not a ZaaS config document (bad magic)"
        case .unsupportedFormatVersion(let version):
            "config format version \(version) is not supported (this build reads \(SignedConfigDocument.readableFormatVersions))"
        case .truncated: "config document is truncated"
        case .trailingBytes: "config document has bytes after its end"
        case .badSignature: "config document signature does not verify with the configured public key"
        case .malformed(let why): "config document is malformed: \(why)"
        }
    }
}

/// The control plane's Ed25519 key that signs config documents (32-byte seed, hex, from config).
public struct ConfigSigningKey: Sendable {
    private let key: Curve25519.Signing.PrivateKey

    public init(hexSeed: String) throws(ConfigKeyError) {
        guard let seed = Hex.decode(hexSeed), seed.count == 32,
            let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed)
        else { throw ConfigKeyError.invalidSigningKey }
        self.key = key
    }

    public init() { self.key = Curve25519.Signing.PrivateKey() }

    public var verificationKey: ConfigVerificationKey {
        ConfigVerificationKey(key: self.key.publicKey)
    }

    /// The seed, hex, for writing into configuration (key generation only).
    public var hexSeed: String { Hex.encode(self.key.rawRepresentation) }

    func sign(_ bytes: [UInt8]) -> [UInt8] {
        // Ed25519 signing only fails on a broken private key, which `init` rules out.
        Array((try? self.key.signature(for: bytes)) ?? Data(count: SignedConfigDocument.signatureLength))
    }
}

/// The public half, configured on every node.
public struct ConfigVerificationKey: Sendable, Equatable {
    fileprivate let key: Curve25519.Signing.PublicKey

    fileprivate init(key: Curve25519.Signing.PublicKey) { self.key = key }

    public init(hex: String) throws(ConfigKeyError) {
        guard let raw = Hex.decode(hex), raw.count == 32,
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw)
        else { throw ConfigKeyError.invalidVerificationKey }
        self.key = key
    }

    public var hex: String { Hex.encode(self.key.rawRepresentation) }

    func isValidSignature(_ signature: [UInt8], for bytes: ArraySlice<UInt8>) -> Bool {
        signature.count == SignedConfigDocument.signatureLength && self.key.isValidSignature(signature, for: bytes)
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.key.rawRepresentation == rhs.key.rawRepresentation
    }
}

public enum ConfigKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidSigningKey
    case invalidVerificationKey

    public var description: String {
        switch self {
        case .invalidSigningKey: "an Ed25519 signing key is 64 lower-case hex digits (its 32-byte seed)"
        case .invalidVerificationKey: "an Ed25519 public key is 64 lower-case hex digits"
        }
    }
}

// MARK: - Field encoding

extension ByteBuffer {
    fileprivate mutating func writeSnapshot(_ snapshot: NodeConfigSnapshot) {
        self.writeInteger(snapshot.version)
        self.writeDate(snapshot.createdAt)
        self.writeDate(snapshot.validUntil)
        self.writeSettings(snapshot.settings)
        self.writeInteger(UInt32(snapshot.tenants.count))
        for tenant in snapshot.tenants { self.writeTenant(tenant) }
        self.writeInteger(UInt32(snapshot.keys.count))
        for key in snapshot.keys { self.writeKey(key) }
    }

    fileprivate mutating func readSnapshot(format: UInt16) throws(ConfigDocumentError) -> NodeConfigSnapshot {
        let version: Int64 = try self.read()
        let createdAt = try self.readDate()
        let validUntil = try self.readDate()
        let settings = try self.readSettings(format: format)
        let tenants = try self.readArray { buffer throws(ConfigDocumentError) in try buffer.readTenant(format: format) }
        let keys = try self.readArray { buffer throws(ConfigDocumentError) in try buffer.readKey() }
        return NodeConfigSnapshot(
            version: version, createdAt: createdAt, validUntil: validUntil, settings: settings, tenants: tenants,
            keys: keys)
    }

    fileprivate mutating func writeDelta(_ delta: ConfigDelta) {
        self.writeInteger(delta.fromVersion)
        self.writeInteger(delta.toVersion)
        self.writeDate(delta.createdAt)
        self.writeDate(delta.validUntil)
        self.writeSettings(delta.settings)
        self.writeInteger(UInt32(delta.upsertedTenants.count))
        for tenant in delta.upsertedTenants { self.writeTenant(tenant) }
        self.writeInteger(UInt32(delta.removedTenants.count))
        for id in delta.removedTenants { self.writeUUID(id) }
        self.writeInteger(UInt32(delta.upsertedKeys.count))
        for key in delta.upsertedKeys { self.writeKey(key) }
        self.writeInteger(UInt32(delta.removedKeys.count))
        for id in delta.removedKeys { self.writeUUID(id) }
    }

    fileprivate mutating func readDelta(format: UInt16) throws(ConfigDocumentError) -> ConfigDelta {
        let from: Int64 = try self.read()
        let to: Int64 = try self.read()
        guard to > from else { throw .malformed("delta goes from version \(from) to \(to)") }
        return ConfigDelta(
            fromVersion: from,
            toVersion: to,
            createdAt: try self.readDate(),
            validUntil: try self.readDate(),
            settings: try self.readSettings(format: format),
            upsertedTenants: try self.readArray { buffer throws(ConfigDocumentError) in
                try buffer.readTenant(format: format)
            },
            removedTenants: try self.readArray { buffer throws(ConfigDocumentError) in try buffer.readUUID() },
            upsertedKeys: try self.readArray { buffer throws(ConfigDocumentError) in try buffer.readKey() },
            removedKeys: try self.readArray { buffer throws(ConfigDocumentError) in try buffer.readUUID() }
        )
    }

    private mutating func writeSettings(_ settings: DataPlaneSettings) {
        self.writeInteger(settings.usageReportIntervalMilliseconds)
        self.writeOptional(settings.baseCanon) { $0.writeCanon($1) }
        self.writeInteger(UInt32(settings.models.count))
        for model in settings.models { self.writeModel(model) }
    }

    private mutating func readSettings(format: UInt16) throws(ConfigDocumentError) -> DataPlaneSettings {
        let interval: UInt32 = try self.read()
        let base = try self.readOptional { buffer throws(ConfigDocumentError) in try buffer.readCanon() }
        let models =
            format >= 5 ? try self.readArray { buffer throws(ConfigDocumentError) in try buffer.readModel() } : []
        guard models.count <= ModelCatalogRules.maximumEntries else {
            throw .malformed("the model catalog has \(models.count) entries")
        }
        return DataPlaneSettings(usageReportIntervalMilliseconds: interval, baseCanon: base, models: models)
    }

    private mutating func writeModel(_ model: ModelBackend) {
        self.writeUUID(model.id)
        self.writeShortString(model.name)
        self.writeShortString(model.modelClass.rawValue)
        self.writeShortString(model.api.rawValue)
        self.writeShortString(model.baseURL)
        self.writeShortString(model.upstreamModel)
        self.writeOptional(model.credentialName) { $0.writeShortString($1) }
        self.writeInteger(model.timeoutMilliseconds)
        self.writeInteger(model.maxConcurrency)
        self.writeInteger(model.contextWindow)
        self.writeInteger(model.inputNanoDollarsPer1K)
        self.writeInteger(model.outputNanoDollarsPer1K)
        self.writeInteger(UInt8(model.enabled ? 1 : 0))
    }

    /// A catalog entry, held to the same rules as the admin API (a node never dials what an
    /// operator could not have entered).
    private mutating func readModel() throws(ConfigDocumentError) -> ModelBackend {
        let id = try self.readUUID()
        let name = try self.readShortString()
        guard ModelCatalogRules.isValidName(name) else { throw .malformed("model name is not valid") }
        guard let modelClass = ModelClass(rawValue: try self.readShortString()) else {
            throw .malformed("unknown model class")
        }
        guard let api = ModelProtocol(rawValue: try self.readShortString()) else {
            throw .malformed("unknown model protocol")
        }
        let baseURL = try self.readShortString()
        if let problem = ModelCatalogRules.problemWithBaseURL(baseURL) { throw .malformed("model base URL \(problem)") }
        let upstream = try self.readShortString()
        guard (1...200).contains(upstream.utf8.count) else { throw .malformed("upstream model name length") }
        let credential = try self.readOptional { buffer throws(ConfigDocumentError) in try buffer.readShortString() }
        if let credential, !ModelCatalogRules.isValidCredentialName(credential) {
            throw .malformed("credential name is not valid")
        }
        let timeout: UInt32 = try self.read()
        let concurrency: UInt16 = try self.read()
        let window: UInt32 = try self.read()
        let input: UInt64 = try self.read()
        let output: UInt64 = try self.read()
        guard ModelCatalogRules.timeoutMilliseconds.contains(timeout),
            ModelCatalogRules.maxConcurrency.contains(concurrency), ModelCatalogRules.contextWindow.contains(window),
            input <= ModelCatalogRules.maximumNanoDollarsPer1K, output <= ModelCatalogRules.maximumNanoDollarsPer1K
        else { throw .malformed("model \(name): a limit or price is out of range") }
        return ModelBackend(
            id: id, name: name, modelClass: modelClass, api: api, baseURL: baseURL, upstreamModel: upstream,
            credentialName: credential, timeoutMilliseconds: timeout, maxConcurrency: concurrency,
            contextWindow: window, inputNanoDollarsPer1K: input, outputNanoDollarsPer1K: output,
            enabled: try self.readBool())
    }

    private mutating func writeCanon(_ canon: CanonReference) {
        self.writeUUID(canon.versionID)
        self.writeShortString(canon.label)
        self.writeShortString(canon.sha256)
        self.writeInteger(canon.byteCount)
    }

    private mutating func readCanon() throws(ConfigDocumentError) -> CanonReference {
        let versionID = try self.readUUID()
        let label = try self.readShortString()
        let sha256 = try self.readShortString()
        guard Hex.isLowercase(sha256, count: 64)
        else { throw .malformed("canon artifact hash is not 64 lower-case hex digits") }
        return CanonReference(versionID: versionID, label: label, sha256: sha256, byteCount: try self.read())
    }

    private mutating func writeTenant(_ tenant: TenantConfig) {
        self.writeUUID(tenant.id)
        self.writeShortString(tenant.slug)
        self.writeInteger(tenant.status.rawValue)
        let policy = tenant.policy
        self.writeShortString(policy.tier)
        self.writeInteger(policy.queriesPerHour)
        self.writeOptional(policy.tenantQueriesPerHour) { $0.writeInteger($1) }
        self.writeInteger(policy.modelClasses.rawValue)
        self.writeInteger(policy.maxCitations)
        self.writeInteger(policy.cacheTTLSeconds)
        self.writeInteger(policy.auditRetentionDays)
        self.writeInteger(UInt8(policy.canonUpdatesAllowed ? 1 : 0))
        self.writeOptional(policy.semanticCacheThreshold) { $0.writeInteger(UInt16(($1 * 10_000).rounded())) }
        self.writeOptional(policy.routingThreshold) { $0.writeInteger(UInt16(($1 * 10_000).rounded())) }
        self.writeInteger(UInt8(policy.storeRawQuestions ? 1 : 0))
        self.writeInteger(policy.asyncModelClasses.rawValue)
        self.writeOptional(tenant.canon) { $0.writeCanon($1) }
    }

    private mutating func readTenant(format: UInt16) throws(ConfigDocumentError) -> TenantConfig {
        let id = try self.readUUID()
        let slug = try self.readShortString()
        guard let status = TenantConfig.Status(rawValue: try self.read()) else {
            throw .malformed("unknown tenant status")
        }
        let tier = try self.readShortString()
        let queriesPerHour: UInt32 = try self.read()
        let tenantQueriesPerHour: UInt32? = try self.readOptional { buffer throws(ConfigDocumentError) in
            try buffer.read()
        }
        let modelClasses = ModelClasses(rawValue: try self.read())
        let maxCitations: UInt16 = try self.read()
        let cacheTTL: UInt32 = try self.read()
        let retention: UInt16 = try self.read()
        let canonUpdates = try self.readBool()
        let threshold: UInt16? = try self.readOptional { buffer throws(ConfigDocumentError) in try buffer.read() }
        if let threshold, !(8000...10_000).contains(threshold) {
            throw ConfigDocumentError.malformed("semantic cache threshold \(threshold) out of range")
        }
        let routing: UInt16? =
            format >= 6 ? try self.readOptional { buffer throws(ConfigDocumentError) in try buffer.read() } : nil
        if let routing, routing > 10_000 {
            throw ConfigDocumentError.malformed("routing threshold \(routing) out of range")
        }
        let flags: UInt8 = format >= 7 ? try self.read() : 0
        guard flags & ~1 == 0 else { throw ConfigDocumentError.malformed("unknown policy flags \(flags)") }
        let asyncClasses = ModelClasses(rawValue: format >= 9 ? try self.read() : 0)
        guard asyncClasses.names.count == asyncClasses.rawValue.nonzeroBitCount else {
            throw ConfigDocumentError.malformed("unknown asynchronous model classes \(asyncClasses.rawValue)")
        }
        let canon = try self.readOptional { buffer throws(ConfigDocumentError) in try buffer.readCanon() }
        return TenantConfig(
            id: id, slug: slug, status: status,
            policy: TenantPolicy(
                tier: tier, queriesPerHour: queriesPerHour, tenantQueriesPerHour: tenantQueriesPerHour,
                modelClasses: modelClasses, maxCitations: maxCitations, cacheTTLSeconds: cacheTTL,
                auditRetentionDays: retention, canonUpdatesAllowed: canonUpdates,
                semanticCacheThreshold: threshold.map { Float($0) / 10_000 },
                routingThreshold: routing.map { Float($0) / 10_000 }, storeRawQuestions: flags & 1 == 1,
                asyncModelClasses: asyncClasses
            ),
            canon: canon
        )
    }

    private mutating func writeKey(_ key: KeyConfig) {
        self.writeUUID(key.id)
        self.writeUUID(key.tenantID)
        self.writeShortString(key.keyID)
        self.writeInteger(UInt8(key.environment == .live ? 1 : 2))
        self.writeInteger(UInt8(key.digest.count))
        self.writeBytes(key.digest)
        self.writeInteger(key.scopes.rawValue)
        self.writeOptional(key.expiresAt) { $0.writeDate($1) }
        self.writeOptional(key.revokedAt) { $0.writeDate($1) }
    }

    private mutating func readKey() throws(ConfigDocumentError) -> KeyConfig {
        let id = try self.readUUID()
        let tenantID = try self.readUUID()
        let keyID = try self.readShortString()
        let environment: APIKey.Environment
        switch try self.read() as UInt8 {
        case 1: environment = .live
        case 2: environment = .test
        default: throw .malformed("unknown key environment")
        }
        let digestLength: UInt8 = try self.read()
        guard digestLength == 32, let digest = self.readBytes(length: 32) else {
            throw .malformed("key digest is not 32 bytes")
        }
        return KeyConfig(
            id: id, tenantID: tenantID, keyID: keyID, environment: environment, digest: digest,
            scopes: KeyScopes(rawValue: try self.read()),
            expiresAt: try self.readOptional { buffer throws(ConfigDocumentError) in try buffer.readDate() },
            revokedAt: try self.readOptional { buffer throws(ConfigDocumentError) in try buffer.readDate() }
        )
    }

    // MARK: Primitives

    private mutating func read<T: FixedWidthInteger>() throws(ConfigDocumentError) -> T {
        guard let value = self.readInteger(as: T.self) else { throw .truncated }
        return value
    }

    private mutating func readBool() throws(ConfigDocumentError) -> Bool {
        switch try self.read() as UInt8 {
        case 0: return false
        case 1: return true
        default: throw .malformed("boolean is neither 0 nor 1")
        }
    }

    private mutating func writeDate(_ date: Date) {
        self.writeInteger(Int64((date.timeIntervalSince1970 * 1000).rounded()))
    }

    private mutating func readDate() throws(ConfigDocumentError) -> Date {
        let milliseconds: Int64 = try self.read()
        return Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    private mutating func writeUUID(_ id: UUID) {
        withUnsafeBytes(of: id.uuid) { _ = self.writeBytes($0) }
    }

    private mutating func readUUID() throws(ConfigDocumentError) -> UUID {
        guard let bytes = self.readBytes(length: 16) else { throw .truncated }
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }

    /// Length (u16) and UTF-8 bytes.
    private mutating func writeShortString(_ string: String) {
        let utf8 = Array(string.utf8.prefix(Int(UInt16.max)))
        self.writeInteger(UInt16(utf8.count))
        self.writeBytes(utf8)
    }

    private mutating func readShortString() throws(ConfigDocumentError) -> String {
        let length: UInt16 = try self.read()
        guard let bytes = self.readBytes(length: Int(length)) else { throw .truncated }
        guard let string = String(validating: bytes, as: UTF8.self) else { throw .malformed("string is not UTF-8") }
        return string
    }

    private mutating func writeOptional<T>(_ value: T?, _ write: (inout ByteBuffer, T) -> Void) {
        if let value {
            self.writeInteger(UInt8(1))
            write(&self, value)
        } else {
            self.writeInteger(UInt8(0))
        }
    }

    private mutating func readOptional<T>(
        _ read: (inout ByteBuffer) throws(ConfigDocumentError) -> T
    ) throws(ConfigDocumentError) -> T? {
        try self.readBool() ? try read(&self) : nil
    }

    private mutating func readArray<T>(
        _ read: (inout ByteBuffer) throws(ConfigDocumentError) -> T
    ) throws(ConfigDocumentError) -> [T] {
        let count: UInt32 = try self.read()
        // Every element takes at least 16 bytes, so a count beyond that is corruption, not a reason
        // to reserve gigabytes.
        guard Int(count) <= self.readableBytes / 16 + 1 else {
            throw .malformed("element count \(count) exceeds payload")
        }
        var elements: [T] = []
        elements.reserveCapacity(Int(count))
        for _ in 0..<count { elements.append(try read(&self)) }
        return elements
    }
}

// MARK: Audit export manifests

/// Audit exports' manifests are signed with the same key as config documents, over a prefix of
/// their own, so a manifest's signature can never pass for a document's or the other way round.
extension ConfigSigningKey {
    public func signExportManifest(_ manifest: [UInt8]) -> [UInt8] {
        self.sign(AuditExportManifest.signingPrefix + manifest)
    }
}

extension ConfigVerificationKey {
    public func verifiesExportManifest(_ manifest: [UInt8], signature: [UInt8]) -> Bool {
        let signed = AuditExportManifest.signingPrefix + manifest
        return self.isValidSignature(signature, for: signed[...])
    }
}
