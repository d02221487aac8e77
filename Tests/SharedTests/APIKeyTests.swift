import Crypto
import Testing

@testable import Shared

@Suite("API key format and digests")
struct APIKeyTests {
    @Test("a generated key prints as zaas_<env>_<id>_<secret> and parses back to itself")
    func roundTrip() throws {
        for environment in APIKey.Environment.allCases {
            let key = APIKey.generate(environment: environment)
            let text = key.text
            #expect(text.hasPrefix("zaas_\(environment.rawValue)_"))
            #expect(text.count == 5 + environment.rawValue.count + 1 + 20 + 1 + 64)
            #expect(try APIKey(parsing: text) == key)
            #expect(!key.description.contains(Hex.encode(key.secret)))
        }
    }

    @Test("key ids and secrets do not repeat")
    func randomness() {
        let keys = (0..<1000).map { _ in APIKey.generate(environment: .live) }
        #expect(Set(keys.map(\.keyID)).count == 1000)
        #expect(Set(keys.map(\.secret)).count == 1000)
        #expect(keys.allSatisfy { $0.secret.count == 32 })
    }

    @Test("malformed keys are refused with the precise reason")
    func malformed() {
        let good = APIKey.generate(environment: .test).text
        let id = String(repeating: "a", count: 20)
        let secret = String(repeating: "0f", count: 32)
        let cases: [(String, APIKeyFormatError)] = [
            ("", .notAZaaSKey),
            ("Bearer " + good, .notAZaaSKey),
            (good + "_", .notAZaaSKey),
            ("sk_live_\(id)_\(secret)", .notAZaaSKey),
            ("zaas_prod_\(id)_\(secret)", .unknownEnvironment),
            ("zaas_LIVE_\(id)_\(secret)", .unknownEnvironment),
            ("zaas_live_\(id.dropLast())_\(secret)", .malformedKeyID),
            ("zaas_live_\(id.uppercased())_\(secret)", .malformedKeyID),
            ("zaas_live_\(id)_\(secret.dropLast(2))", .malformedSecret),
            ("zaas_live_\(id)_\(secret.uppercased())", .malformedSecret),
            ("zaas_live_\(id)_\(secret)0", .malformedSecret),
            ("zaas_live_\(id)_\(secret.dropLast())g", .malformedSecret),
            ("zaas_live_\(id)_ \(secret.dropFirst())", .malformedSecret),
        ]
        for (text, reason) in cases {
            #expect(throws: reason, "\(text)") { try APIKey(parsing: text) }
        }
    }

    @Test("digests are HMAC-SHA-256 under the pepper: RFC 4231 vector, pepper-dependent, constant-time verify")
    func digests() throws {
        // RFC 4231 test case 2 (key "Jefe"), through swift-crypto's HMAC as the digester uses it.
        let vector = HMAC<SHA256>.authenticationCode(
            for: Array("what do ya want for nothing?".utf8),
            using: SymmetricKey(data: Array("Jefe".utf8))
        )
        #expect(
            Hex.encode(Array(vector)) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        )

        let pepper = [UInt8](repeating: 7, count: 32)
        let digester = try APIKeyDigester(pepper: pepper)
        let key = APIKey.generate(environment: .live)
        let digest = digester.digest(key.secret)
        #expect(digest == Array(HMAC<SHA256>.authenticationCode(for: key.secret, using: SymmetricKey(data: pepper))))
        #expect(digest.count == 32)
        #expect(digester.verify(key.secret, against: digest))
        var flipped = key.secret
        flipped[31] ^= 1
        #expect(!digester.verify(flipped, against: digest))
        #expect(!digester.verify(key.secret, against: Array(digest.dropLast())))

        let otherPepper = try APIKeyDigester(pepper: [UInt8](repeating: 8, count: 32))
        #expect(otherPepper.digest(key.secret) != digest)
        #expect(throws: APIKeyPepperError(length: 16)) { try APIKeyDigester(pepper: [UInt8](repeating: 1, count: 16)) }
    }
}
