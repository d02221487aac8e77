import Crypto
import Foundation

/// What an audit event keeps of a question when the tenant has not opted in to raw questions:
/// the text with personal data replaced by a bracketed label, and a keyed fingerprint that groups
/// repeats of one question without revealing it.
///
/// Redacted, in this order (docs/audit.md lists them with examples):
///
/// | label | what |
/// |---|---|
/// | `[url-with-credentials]` | a URL carrying a user name and password (`https://user:pw@host/…`) |
/// | `[secret]` | API-key, token and private-key shaped strings (`SecretShapes`) |
/// | `[email]` | an e-mail address |
/// | `[ip]` | an IPv4 or IPv6 address |
/// | `[card]` | 13–19 digits, spaces or dashes between groups, passing the Luhn check |
/// | `[iban]` | an IBAN (country, check digits, 11–30 letters and digits) |
/// | `[national-id]` | a US social security number (`123-45-6789`), a UK National Insurance number |
/// | `[phone]` | a number with a leading `+` or with separators, of 8–15 digits |
///
/// Numbers a research question is made of (years, measurements, `10^15`, `6.674e-11`, `1.2 K`)
/// are not personal data and are kept: a phone number needs a leading `+` or separators between
/// digit groups, a card the Luhn check.
public struct QuestionRedactor: Sendable {
    public init() {}

    /// `text` with every personal datum replaced by its label.
    public func redact(_ text: String) -> String {
        self.redact(text) { name, _ in "[\(name)]" }
    }

    /// `text` with every personal datum replaced by its label and a keyed tag of eight decimal
    /// digits (`[email 40213377]`): the same datum always gets the same tag and different ones
    /// (almost always) differ, so two questions that differ only in a personal datum still
    /// differ, as numbers, to the semantic cache's guard. The form the answer cache keeps of a
    /// question when the tenant has not opted in to raw questions.
    public func redact(_ text: String, taggedWith key: SymmetricKey) -> String {
        self.redact(text) { name, value in
            let code = HMAC<SHA256>.authenticationCode(for: Data(value.utf8), using: key)
            let number = code.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) } % 100_000_000
            let digits = String(number)
            return "[\(name) \(String(repeating: "0", count: 8 - digits.count))\(digits)]"
        }
    }

    private func redact(_ text: String, label: (String, Substring) -> String) -> String {
        var text = text
        text.replace(Self.urlWithCredentials) { label("url-with-credentials", $0.output) }
        text.replace(SecretShapes.pattern) { label("secret", $0.output) }
        text.replace(Self.email) { label("email", $0.output) }
        text.replace(Self.ipv4) { label("ip", $0.output) }
        text.replace(Self.ipv6) { match in
            // `12:30:45` is a time, not an address: an IPv6 address has a letter or `::` or 8 groups.
            let value = match.output
            let groups = value.split(separator: ":", omittingEmptySubsequences: false).count
            return value.contains("::") || value.contains(where: \.isLetter) || groups == 8
                ? label("ip", value) : String(value)
        }
        text.replace(Self.cardCandidate) { match in
            Self.luhn(match.output.filter(\.isNumber)) ? label("card", match.output) : String(match.output)
        }
        text.replace(Self.iban) { label("iban", $0.output) }
        text.replace(Self.socialSecurity) { label("national-id", $0.output) }
        text.replace(Self.nationalInsurance) { label("national-id", $0.output) }
        text.replace(Self.phone) { match in
            // A date (`2024-05-01`, `01.05.2024`) has the shape of a short phone number.
            let digits = match.output.filter(\.isNumber).count
            let isDate = match.output.wholeMatch(of: Self.date) != nil
            return (8...15).contains(digits) && !isDate ? label("phone", match.output) : String(match.output)
        }
        return text
    }

    /// The keyed fingerprint of a question: HMAC-SHA-256 of its normalised text (trimmed, white
    /// space collapsed, lower case) under the tenant's fingerprint key, as 64 hex digits.
    public static func fingerprint(_ question: String, key: SymmetricKey) -> String {
        let normalised = question.lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " ")
        let code = HMAC<SHA256>.authenticationCode(for: Data(normalised.utf8), using: key)
        return code.map { String(format: "%02x", $0) }.joined()
    }

    /// A tenant's fingerprint key, derived from the deployment's audit secret (HKDF-SHA-256 with
    /// the tenant's id as salt): fingerprints of one tenant never match another's, and no key is
    /// stored per tenant.
    public static func fingerprintKey(secret: SymmetricKey, tenant: UUID) -> SymmetricKey {
        let salt = withUnsafeBytes(of: tenant.uuid) { Data($0) }
        return HKDF<SHA256>.deriveKey(
            inputKeyMaterial: secret, salt: salt, info: Data("zaas audit question fingerprint".utf8),
            outputByteCount: 32)
    }

    // MARK: Patterns

    nonisolated(unsafe) static let urlWithCredentials = /(?i)\b[a-z][a-z0-9+.-]*:\/\/[^\s\/@:]+:[^\s\/@]+@[^\s]+/
    nonisolated(unsafe) static let email = /(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b/
    nonisolated(unsafe) static let ipv4 =
        /\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b/
    nonisolated(unsafe) static let ipv6 =
        /(?i)\b(?:[0-9a-f]{1,4}:){1,7}(?::|(?::[0-9a-f]{1,4}){1,6}|[0-9a-f]{1,4})(?![\w:])/
    nonisolated(unsafe) static let cardCandidate = /\b\d{4}(?:[ -]?\d{3,4}){2,4}(?:[ -]?\d{1,3})?\b/
    nonisolated(unsafe) static let iban = /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b/
    nonisolated(unsafe) static let socialSecurity = /\b\d{3}-\d{2}-\d{4}\b/
    nonisolated(unsafe) static let nationalInsurance = /(?i)\b[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b/
    nonisolated(unsafe) static let phone =
        /(?:\+\d[\d ().-]{6,}\d|\(?\d{2,5}\)?[ .-]\d{2,5}[ .-]\d{2,5}(?:[ .-]\d{2,5})?)/

    nonisolated(unsafe) static let date = /\d{4}[.-]\d{2}[.-]\d{2}|\d{2}[.-]\d{2}[.-]\d{4}/

    /// The Luhn check of a string of digits (payment cards).
    static func luhn(_ digits: String) -> Bool {
        guard (13...19).contains(digits.count) else { return false }
        var sum = 0
        for (index, character) in digits.reversed().enumerated() {
            guard var digit = character.wholeNumberValue else { return false }
            if index % 2 == 1 {
                digit *= 2
                if digit > 9 { digit -= 9 }
            }
            sum += digit
        }
        return sum % 10 == 0
    }
}

/// Strings shaped like credentials: ZaaS API keys, provider keys (`sk-…`, `AKIA…`, `ghp_…`,
/// `xox…-`), bearer tokens, JWTs, private-key blocks, long hex or base64 runs. The answer filter
/// drops a sentence holding one; the audit redacts them from questions.
public enum SecretShapes {
    nonisolated(unsafe) public static let pattern =
        /zaas_(?:live|test)_[a-z0-9]{8,}(?:_[a-f0-9]{16,})?|\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{20,}|\bxox[abprs]-[A-Za-z0-9-]{10,}|(?i:bearer)\s+[A-Za-z0-9._~+\/-]{16,}|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}|-----BEGIN [A-Z ]*PRIVATE KEY-----|\b[A-Fa-f0-9]{40,}\b|[A-Za-z0-9+\/]{48,}={0,2}/
}
