import Foundation
import TestSupport
import Testing

@testable import Shared

@Suite("signed config documents")
struct SignedConfigDocumentTests {
    static let key = ConfigSigningKey()

    static func sample() -> NodeConfigSnapshot {
        let tenantA = ConfigFixtures.tenant(slug: "alpha")
        var tenantB = ConfigFixtures.tenant(slug: "béta-ünïcode", status: .suspended)
        tenantB.policy.tenantQueriesPerHour = 5000
        tenantB.policy.semanticCacheThreshold = 0.97
        tenantB.policy.routingThreshold = 0.35
        tenantB.canon = CanonReference(
            versionID: UUID(), label: "béta-v7", sha256: String(repeating: "ab", count: 32), byteCount: 123_456)
        let keys = [
            ConfigFixtures.key(tenant: tenantA.id, scopes: [.query, .statsRead]).record,
            ConfigFixtures.key(
                tenant: tenantB.id, scopes: [.canonWrite], environment: .test,
                expiresAt: Date(timeIntervalSince1970: 1_900_000_000.123),
                revokedAt: Date(timeIntervalSince1970: 1_850_000_000)
            ).record,
        ]
        var snapshot = ConfigFixtures.snapshot(version: 42, tenants: [tenantA, tenantB], keys: keys)
        snapshot.settings.baseCanon = CanonReference(
            versionID: UUID(), label: "base-v3", sha256: String(repeating: "0f", count: 32), byteCount: 9)
        snapshot.settings.models = [
            ModelBackend(
                id: UUID(), name: "gpt-oss-120b", modelClass: .cloud, baseURL: "https://api.example.com/v1",
                upstreamModel: "openai/gpt-oss-120b", credentialName: "ZAAS_MODEL_EXAMPLE", timeoutMilliseconds: 45_000,
                maxConcurrency: 16, contextWindow: 131_072, inputNanoDollarsPer1K: 150_000,
                outputNanoDollarsPer1K: 600_000, enabled: false),
            ModelBackend(id: UUID(), name: "smollm2-135m", modelClass: .local, baseURL: "http://127.0.0.1:8090/v1"),
        ]
        return snapshot
    }

    @Test("a full snapshot and a delta come back exactly as they went in")
    func roundTrip() throws {
        let snapshot = Self.sample()
        let decoded = try SignedConfigDocument.decode(
            SignedConfigDocument.encode(.full(snapshot), signedWith: Self.key), verifyingWith: Self.key.verificationKey)
        #expect(decoded == .full(snapshot))

        let delta = ConfigDelta(
            fromVersion: 42, toVersion: 45, createdAt: Date(timeIntervalSince1970: 1_800_000_001),
            settings: ConfigFixtures.settings, upsertedTenants: [snapshot.tenants[0]], removedTenants: [UUID()],
            upsertedKeys: [snapshot.keys[1]], removedKeys: [UUID(), UUID()])
        let decodedDelta = try SignedConfigDocument.decode(
            SignedConfigDocument.encode(.delta(delta), signedWith: Self.key), verifyingWith: Self.key.verificationKey)
        #expect(decodedDelta == .delta(delta))
    }

    @Test("encoding is stable: the same update gives the same bytes")
    func stable() {
        let snapshot = Self.sample()
        let first = SignedConfigDocument.encode(.full(snapshot), signedWith: Self.key)
        let second = SignedConfigDocument.encode(.full(snapshot), signedWith: Self.key)
        #expect(first == second)
        #expect(Array(first.prefix(4)) == Array("ZCFG".utf8))
    }

    @Test("another key's signature, a flipped byte, a cut or padded document are refused")
    func refusals() throws {
        let document = SignedConfigDocument.encode(.full(Self.sample()), signedWith: Self.key)
        let verifier = Self.key.verificationKey

        let other = SignedConfigDocument.encode(.full(Self.sample()), signedWith: ConfigSigningKey())
        #expect(throws: ConfigDocumentError.badSignature) {
            try SignedConfigDocument.decode(other, verifyingWith: verifier)
        }
        for index in [12, document.count / 2, document.count - 70, document.count - 1] {
            var tampered = document
            tampered[index] ^= 0x01
            #expect(throws: ConfigDocumentError.badSignature) {
                try SignedConfigDocument.decode(tampered, verifyingWith: verifier)
            }
        }
        #expect(throws: ConfigDocumentError.truncated) {
            try SignedConfigDocument.decode(document.dropLast(10), verifyingWith: verifier)
        }
        #expect(throws: ConfigDocumentError.truncated) {
            try SignedConfigDocument.decode(document.prefix(8), verifyingWith: verifier)
        }
        #expect(throws: ConfigDocumentError.truncated) {
            try SignedConfigDocument.decode([UInt8](), verifyingWith: verifier)
        }
        #expect(throws: ConfigDocumentError.trailingBytes) {
            try SignedConfigDocument.decode(document + [0], verifyingWith: verifier)
        }
        #expect(throws: ConfigDocumentError.notAConfigDocument) {
            try SignedConfigDocument.decode(Array("{\"version\": 1}".utf8), verifyingWith: verifier)
        }
    }

    @Test("an unknown format version is refused with a clear error, before anything else")
    func unknownFormat() throws {
        var document = SignedConfigDocument.encode(.full(Self.sample()), signedWith: Self.key)
        document[4] = 0
        document[5] = 1
        #expect(throws: ConfigDocumentError.unsupportedFormatVersion(1)) {
            try SignedConfigDocument.decode(document, verifyingWith: Self.key.verificationKey)
        }
        #expect(
            ConfigDocumentError.unsupportedFormatVersion(1).description
                == "config format version 1 is not supported (this build reads 4...9)")
    }

    @Test("a correctly signed payload with garbage inside is refused as malformed, not a crash")
    func signedGarbage() throws {
        // A snapshot with no tenants and no keys ends with their two counts; claim a million tenants.
        let empty = ConfigFixtures.snapshot(version: 1, tenants: [], keys: [])
        var payload = Self.payload(of: SignedConfigDocument.encode(.full(empty), signedWith: Self.key))
        #expect(
            try SignedConfigDocument.decode(
                try Self.resign(payload: payload, kind: 1), verifyingWith: Self.key.verificationKey) == .full(empty))
        payload.replaceSubrange((payload.count - 8)..<(payload.count - 4), with: [0x00, 0x0F, 0x42, 0x40])
        let forged = try Self.resign(payload: payload, kind: 1)
        #expect(throws: ConfigDocumentError.malformed("element count 1000000 exceeds payload")) {
            try SignedConfigDocument.decode(forged, verifyingWith: Self.key.verificationKey)
        }
    }

    @Test("a format-4 document (before the model catalog), as a node kept it on disk, still reads, with no models")
    func formatFour() throws {
        var snapshot = ConfigFixtures.snapshot(version: 7, tenants: [], keys: [])
        snapshot.settings.baseCanon = nil
        snapshot.settings.models = []
        var payload = Self.payload(of: SignedConfigDocument.encode(.full(snapshot), signedWith: Self.key))
        // version, created, valid until (8 each), the usage interval (4), no base canon (1): then the
        // model count format 4 does not have.
        #expect(Array(payload[29..<33]) == [0, 0, 0, 0])
        payload.removeSubrange(29..<33)
        #expect(try Self.readAsOlder(payload, format: 4) == .full(snapshot))
    }

    @Test("a format-5 document (before routing thresholds) still reads: every tenant has the default threshold")
    func formatFive() throws {
        let snapshot = ConfigFixtures.snapshot(version: 8, tenants: [ConfigFixtures.tenant(slug: "alpha")], keys: [])
        var payload = Self.payload(of: SignedConfigDocument.encode(.full(snapshot), signedWith: Self.key))
        // The tenant ends with an absent semantic threshold, an absent routing threshold, no flags,
        // no asynchronous classes and no canon, then the key count: format 5 has neither the routing
        // threshold nor the flags nor the classes.
        #expect(Array(payload.suffix(9)) == [0, 0, 0, 0, 0, 0, 0, 0, 0])
        for _ in 0..<3 { payload.remove(at: payload.count - 6) }
        let decoded = try Self.readAsOlder(payload, format: 5)
        #expect(decoded == .full(snapshot))
        if case .full(let read) = decoded { #expect(read.tenants.first?.policy.routingThreshold == nil) }
    }

    @Test("a routing threshold above 1 is refused as malformed")
    func routingThresholdOutOfRange() throws {
        var tenant = ConfigFixtures.tenant(slug: "alpha")
        tenant.policy.routingThreshold = 0.5
        let snapshot = ConfigFixtures.snapshot(version: 9, tenants: [tenant], keys: [])
        var payload = Self.payload(of: SignedConfigDocument.encode(.full(snapshot), signedWith: Self.key))
        // …, present (1), 5000 as u16, no flags (0), no asynchronous classes (0), no canon (0), no
        // keys (0 0 0 0).
        #expect(Array(payload.suffix(10)) == [1, 0x13, 0x88, 0, 0, 0, 0, 0, 0, 0])
        payload.replaceSubrange((payload.count - 9)..<(payload.count - 7), with: [0x27, 0x11])
        #expect(throws: ConfigDocumentError.malformed("routing threshold 10001 out of range")) {
            try SignedConfigDocument.decode(
                try Self.resign(payload: payload, kind: 1), verifyingWith: Self.key.verificationKey)
        }
    }

    @Test("a format-6 document (before policy flags) still reads: no tenant keeps raw questions")
    func formatSix() throws {
        let snapshot = ConfigFixtures.snapshot(version: 8, tenants: [ConfigFixtures.tenant(slug: "alpha")], keys: [])
        var payload = Self.payload(of: SignedConfigDocument.encode(.full(snapshot), signedWith: Self.key))
        // The flags and the asynchronous classes.
        payload.removeSubrange((payload.count - 7)..<(payload.count - 5))
        #expect(try Self.readAsOlder(payload, format: 6) == .full(snapshot))
    }

    @Test("a format-8 document (before asynchronous classes) still reads: no class is asynchronous")
    func formatEight() throws {
        var tenant = ConfigFixtures.tenant(slug: "alpha")
        tenant.policy.storeRawQuestions = true
        let snapshot = ConfigFixtures.snapshot(version: 8, tenants: [tenant], keys: [])
        var payload = Self.payload(of: SignedConfigDocument.encode(.full(snapshot), signedWith: Self.key))
        payload.remove(at: payload.count - 6)
        let decoded = try Self.readAsOlder(payload, format: 8)
        #expect(decoded == .full(snapshot))
        if case .full(let read) = decoded { #expect(read.tenants.first?.policy.storeRawQuestions == true) }
    }

    @Test("a policy's asynchronous classes travel as a byte of class flags; unknown classes are refused as malformed")
    func asynchronousClasses() throws {
        var tenant = ConfigFixtures.tenant(slug: "alpha")
        tenant.policy.asyncModelClasses = [.largeLocal]
        let snapshot = ConfigFixtures.snapshot(version: 9, tenants: [tenant], keys: [])
        let document = SignedConfigDocument.encode(.full(snapshot), signedWith: Self.key)
        #expect(try SignedConfigDocument.decode(document, verifyingWith: Self.key.verificationKey) == .full(snapshot))
        var payload = Self.payload(of: document)
        #expect(Array(payload.suffix(7)) == [0, 4, 0, 0, 0, 0, 0])
        payload[payload.count - 6] = 8
        #expect(throws: ConfigDocumentError.malformed("unknown asynchronous model classes 8")) {
            try SignedConfigDocument.decode(
                try Self.resign(payload: payload, kind: 1), verifyingWith: Self.key.verificationKey)
        }
    }

    @Test("a tenant that keeps raw questions says so in its flags; unknown flags are refused as malformed")
    func policyFlags() throws {
        var tenant = ConfigFixtures.tenant(slug: "alpha")
        tenant.policy.storeRawQuestions = true
        let snapshot = ConfigFixtures.snapshot(version: 9, tenants: [tenant], keys: [])
        let document = SignedConfigDocument.encode(.full(snapshot), signedWith: Self.key)
        #expect(try SignedConfigDocument.decode(document, verifyingWith: Self.key.verificationKey) == .full(snapshot))
        var payload = Self.payload(of: document)
        #expect(Array(payload.suffix(7)) == [1, 0, 0, 0, 0, 0, 0])
        payload[payload.count - 7] = 3
        #expect(throws: ConfigDocumentError.malformed("unknown policy flags 3")) {
            try SignedConfigDocument.decode(
                try Self.resign(payload: payload, kind: 1), verifyingWith: Self.key.verificationKey)
        }
    }

    /// A payload of an older `format` reads as that format, and is refused when claimed as the
    /// next (it is short of what the next one added). What it read.
    static func readAsOlder(_ payload: [UInt8], format: UInt16) throws -> ConfigUpdate {
        let decoded = try SignedConfigDocument.decode(
            try Self.resign(payload: payload, kind: 1, format: format), verifyingWith: Self.key.verificationKey)
        #expect(throws: ConfigDocumentError.self) {
            try SignedConfigDocument.decode(
                try Self.resign(payload: payload, kind: 1, format: format + 1), verifyingWith: Self.key.verificationKey)
        }
        return decoded
    }

    static func payload(of document: [UInt8]) -> [UInt8] {
        Array(document[SignedConfigDocument.headerLength..<(document.count - SignedConfigDocument.signatureLength)])
    }

    /// Frames and signs an arbitrary payload with the test key, the way the encoder does.
    static func resign(payload: [UInt8], kind: UInt8, format: UInt16 = SignedConfigDocument.formatVersion) throws
        -> [UInt8]
    {
        var frame = Array("ZCFG".utf8) + [UInt8(format >> 8), UInt8(format & 0xFF), kind]
        let length = UInt32(payload.count)
        frame += [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)]
        frame += payload
        return frame + Self.key.sign(frame)
    }

    @Test("the stack's openssl-made key pair is a matching Ed25519 pair")
    func stackKeys() throws {
        let environment = TestEnvironment.shared
        let signing = try ConfigSigningKey(hexSeed: environment.configSigningKey)
        #expect(signing.verificationKey == (try ConfigVerificationKey(hex: environment.configPublicKey)))
        #expect(throws: ConfigKeyError.invalidSigningKey) { try ConfigSigningKey(hexSeed: "abcd") }
        #expect(throws: ConfigKeyError.invalidVerificationKey) {
            try ConfigVerificationKey(hex: String(repeating: "G", count: 64))
        }
    }

    @Test("validity: a document is refused once expired or when issued in the future (beyond the skew)")
    func validity() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        func check(created: TimeInterval, until: TimeInterval) -> ConfigValidity.Refusal? {
            do {
                try ConfigValidity.check(
                    createdAt: now.addingTimeInterval(created), validUntil: now.addingTimeInterval(until), now: now)
                return nil
            } catch {
                return error
            }
        }
        #expect(check(created: -60, until: 86_340) == nil)
        #expect(check(created: -86_400, until: -1) == nil)  // within the allowed skew
        #expect(check(created: -90_000, until: -3_600) == .expired(validUntil: now.addingTimeInterval(-3_600)))
        #expect(check(created: 3_600, until: 90_000) == .issuedInTheFuture(createdAt: now.addingTimeInterval(3_600)))
        // validUntil is signed: it survives the round trip, and changing it breaks the signature.
        var snapshot = Self.sample()
        snapshot.validUntil = Date(timeIntervalSince1970: 1_800_003_600)
        let document = SignedConfigDocument.encode(.full(snapshot), signedWith: Self.key)
        guard
            case .full(let decoded) = try SignedConfigDocument.decode(document, verifyingWith: Self.key.verificationKey)
        else {
            Issue.record("expected a full snapshot")
            return
        }
        #expect(decoded.validUntil == snapshot.validUntil)
        var forged = document
        let offset = SignedConfigDocument.headerLength + 8 + 8 + 7
        forged[offset] ^= 0x01
        #expect(throws: ConfigDocumentError.badSignature) {
            try SignedConfigDocument.decode(forged, verifyingWith: Self.key.verificationKey)
        }
    }
}
