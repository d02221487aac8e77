import Foundation
import Shared

/// A lower-cased email address with a plausible shape: one `@`, a non-empty local part, a domain
/// with a dot, no spaces or control characters, at most 254 characters. Delivery is not checked.
struct EmailAddress: Sendable, Equatable {
    let text: String

    init?(_ raw: String) {
        let text = raw.trimmingCharacters(in: .whitespaces).lowercased()
        guard text.utf8.count <= 254,
            !text.contains(where: \.isWhitespace), !TextRules.containsControlCharacters(text, multiline: false)
        else { return nil }
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[0].utf8.count <= 64 else { return nil }
        let labels = parts[1].split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2, labels.allSatisfy({ !$0.isEmpty && !$0.hasPrefix("-") && !$0.hasSuffix("-") }) else {
            return nil
        }
        self.text = text
    }
}
