import Crypto
import Foundation
import Shared

/// An admin session token: `zsess_` and 64 hex digits (256 random bits). Only its SHA-256 is
/// stored; with that much entropy a plain hash is enough.
struct SessionToken: Sendable, Equatable {
    let text: String

    static func generate() -> SessionToken {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return SessionToken(text: "zsess_" + Hex.encode(bytes))
    }

    /// Parses a presented token; anything else is nil (and the caller answers 401).
    init?(parsing text: some StringProtocol) {
        guard text.hasPrefix("zsess_"), text.utf8.count == 70,
            text.utf8.dropFirst(6).allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
        else { return nil }
        self.text = String(text)
    }

    private init(text: String) {
        self.text = text
    }

    var digest: [UInt8] { Array(SHA256.hash(data: Array(self.text.utf8))) }
}
