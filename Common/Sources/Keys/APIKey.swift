import Crypto

/// An API key as callers hold it: `zaas_<live|test>_<key id>_<secret>`.
///
/// The key id (20 characters of `[a-z0-9]`) is public and finds the stored record; the secret is
/// 256 bits from the system CSPRNG, written as 64 lower-case hex digits, and is never stored: only
/// its HMAC-SHA-256 digest under a server-side pepper is (see `APIKeyDigester`).
public struct APIKey: Sendable, Equatable, CustomStringConvertible {
    public enum Environment: String, Sendable, CaseIterable {
        case live
        case test
    }

    public static let keyIDLength = 20
    public static let secretLength = 32

    public let environment: Environment
    public let keyID: String
    public let secret: [UInt8]

    /// A new key with a random id and secret.
    public static func generate(environment: Environment) -> APIKey {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        let keyID = String(
            decoding: (0..<keyIDLength).map { _ in alphabet[Int(generator.next(upperBound: UInt(alphabet.count)))] },
            as: UTF8.self
        )
        let secret = (0..<secretLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return APIKey(environment: environment, keyID: keyID, secret: secret)
    }

    init(environment: Environment, keyID: String, secret: [UInt8]) {
        self.environment = environment
        self.keyID = keyID
        self.secret = secret
    }

    /// Parses the text a caller sent. Strict: exactly the format above, nothing around it.
    public init(parsing text: some StringProtocol) throws(APIKeyFormatError) {
        let parts = text.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "zaas" else { throw .notAZaaSKey }
        guard let environment = Environment(rawValue: String(parts[1])) else { throw .unknownEnvironment }
        let keyID = parts[2]
        guard keyID.utf8.count == Self.keyIDLength,
            keyID.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) })
        else { throw .malformedKeyID }
        guard let secret = Hex.decode(parts[3]), secret.count == Self.secretLength else {
            throw .malformedSecret
        }
        self.init(environment: environment, keyID: String(keyID), secret: secret)
    }

    /// The full key, to show once at creation.
    public var text: String {
        "zaas_\(environment.rawValue)_\(keyID)_\(Hex.encode(secret))"
    }

    /// Never the secret: safe for logs.
    public var description: String { "zaas_\(environment.rawValue)_\(keyID)_…" }
}

/// Why a presented key is not even well formed. Callers answer all of these with the same 401.
public enum APIKeyFormatError: Error, Sendable, Equatable {
    case notAZaaSKey
    case unknownEnvironment
    case malformedKeyID
    case malformedSecret
}

/// Digests key secrets with HMAC-SHA-256 under the server's pepper, and checks presented secrets
/// against stored digests in constant time. A high-entropy secret needs no slow hash; the pepper
/// means a leaked table of digests cannot be checked offline without the server's configuration.
public struct APIKeyDigester: Sendable {
    private let pepper: SymmetricKey

    /// The pepper must be at least 32 bytes.
    public init(pepper: [UInt8]) throws(APIKeyPepperError) {
        guard pepper.count >= 32 else { throw APIKeyPepperError(length: pepper.count) }
        self.pepper = SymmetricKey(data: pepper)
    }

    public func digest(_ secret: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: secret, using: self.pepper))
    }

    public func verify(_ secret: [UInt8], against digest: [UInt8]) -> Bool {
        constantTimeEqual(self.digest(secret), digest)
    }
}

public struct APIKeyPepperError: Error, Sendable, Equatable, CustomStringConvertible {
    public let length: Int
    public var description: String { "the API key pepper must be at least 32 bytes; it is \(length)" }
}
