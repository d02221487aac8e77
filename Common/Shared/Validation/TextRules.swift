/// The rules every piece of text a client sends must pass before it is stored or answered.
///
/// Lengths are counted in Unicode code points, the unit PostgreSQL's `length()` counts for
/// `text` columns, so a value accepted here is never refused by a column check (Swift's
/// `String.count` counts grapheme clusters, and one cluster can hold thousands of code points).
/// Control characters are refused: PostgreSQL cannot store U+0000 in `text` or `jsonb` at all,
/// and no name or question means the others.
public enum TextRules {
    /// A control character (Unicode general category Cc: U+0000–U+001F, U+007F–U+009F); tab,
    /// line feed and carriage return count only when the text may not span lines.
    @inlinable
    public static func isControl(_ scalar: Unicode.Scalar, multiline: Bool) -> Bool {
        switch scalar.value {
        case 0x09, 0x0A, 0x0D: return !multiline
        case 0x00...0x1F, 0x7F...0x9F: return true
        default: return false
        }
    }

    /// Whether `text` holds a control character (see `isControl`).
    public static func containsControlCharacters(_ text: some StringProtocol, multiline: Bool) -> Bool {
        text.unicodeScalars.contains { Self.isControl($0, multiline: multiline) }
    }

    /// What is wrong with `text` as a value of `length` code points, nil when nothing is.
    public static func problem(_ text: String, length: ClosedRange<Int>, multiline: Bool = false) -> String? {
        if Self.containsControlCharacters(text, multiline: multiline) {
            return multiline
                ? "must not contain control characters other than tab and line breaks"
                : "must not contain control characters or line breaks"
        }
        let count = text.unicodeScalars.count
        guard length.contains(count) else {
            return length.lowerBound > 0
                ? "must be \(length.lowerBound) to \(length.upperBound) characters (Unicode code points)"
                : "must be at most \(length.upperBound) characters (Unicode code points)"
        }
        return nil
    }
}

extension FieldError {
    /// The error for `field` when `text` breaks `TextRules`, nil when it does not.
    public init?(_ field: String, text: String, length: ClosedRange<Int>, multiline: Bool = false) {
        guard let message = TextRules.problem(text, length: length, multiline: multiline) else { return nil }
        self.init(field, message)
    }
}
