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
        var utf8 = Array(text.utf8)
        try self.init(utf8: &utf8)
    }

    /// Byte-level parsing without generic dispatch: this runs on every data-plane request.
    public init(utf8 bytes: inout [UInt8]) throws(APIKeyFormatError) {
        let result: Result<APIKey, APIKeyFormatError> = bytes.withUnsafeBufferPointer { Self.parse($0) }
        self = try result.get()
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<APIKey, APIKeyFormatError> {
        let underscore = UInt8(ascii: "_")
        // "zaas_" + "live"|"test" + "_" + 20 id characters + "_" + 64 hex digits.
        guard bytes.count >= 5, bytes[0] == 0x7A, bytes[1] == 0x61, bytes[2] == 0x61, bytes[3] == 0x73,
            bytes[4] == underscore
        else { return .failure(.notAZaaSKey) }
        // Exactly four `_`-separated parts, or it is not our format at all.
        var separators = 0
        for byte in bytes where byte == underscore { separators += 1 }
        guard separators == 3 else { return .failure(.notAZaaSKey) }
        guard bytes.count >= 10, bytes[9] == underscore else { return .failure(.unknownEnvironment) }
        let environment: Environment
        switch (bytes[5], bytes[6], bytes[7], bytes[8]) {
        case (0x6C, 0x69, 0x76, 0x65): environment = .live
        case (0x74, 0x65, 0x73, 0x74): environment = .test
        default: return .failure(.unknownEnvironment)
        }
        let idStart = 10
        let idEnd = idStart + keyIDLength
        guard bytes.count > idEnd, bytes[idEnd] == underscore else { return .failure(.malformedKeyID) }
        for index in idStart..<idEnd {
            let byte = bytes[index]
            guard (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39) else {
                return .failure(.malformedKeyID)
            }
        }
        let secretStart = idEnd + 1
        guard bytes.count - secretStart == secretLength * 2 else { return .failure(.malformedSecret) }
        var secret = [UInt8](repeating: 0, count: secretLength)
        for index in 0..<secretLength {
            guard let high = Hex.value(bytes[secretStart + 2 * index]),
                let low = Hex.value(bytes[secretStart + 2 * index + 1])
            else { return .failure(.malformedSecret) }
            secret[index] = high << 4 | low
        }
        let keyID = String(decoding: UnsafeBufferPointer(rebasing: bytes[idStart..<idEnd]), as: UTF8.self)
        return .success(APIKey(environment: environment, keyID: keyID, secret: secret))
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
    /// HMAC state with the pepper already absorbed: each digest copies it and hashes only the
    /// secret, instead of redoing the key schedule.
    private let prepared: HMAC<SHA256>

    /// The pepper must be at least 32 bytes.
    public init(pepper: [UInt8]) throws(APIKeyPepperError) {
        guard pepper.count >= 32 else { throw APIKeyPepperError(length: pepper.count) }
        self.prepared = HMAC<SHA256>(key: SymmetricKey(data: pepper))
    }

    public func digest(_ secret: [UInt8]) -> [UInt8] {
        var hmac = self.prepared
        hmac.update(data: secret)
        return Array(hmac.finalize())
    }

    public func verify(_ secret: [UInt8], against digest: [UInt8]) -> Bool {
        constantTimeEqual(self.digest(secret), digest)
    }
}

public struct APIKeyPepperError: Error, Sendable, Equatable, CustomStringConvertible {
    public let length: Int
    public var description: String { "the API key pepper must be at least 32 bytes; it is \(length)" }
}
