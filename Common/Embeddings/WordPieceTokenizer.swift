import Foundation

/// Hugging Face's `BertTokenizer` (basic tokenization, then WordPiece) for an uncased vocabulary,
/// reproduced step by step:
///
/// 1. clean: drop NUL, U+FFFD and control characters; every whitespace character becomes a space;
/// 2. put spaces around CJK ideographs, so each is a word;
/// 3. split on whitespace; lower-case each word, decompose it (NFD) and drop combining marks;
/// 4. split punctuation (ASCII symbols and Unicode P* categories) into words of their own;
/// 5. WordPiece: greedy longest match from the vocabulary, continuations prefixed `##`; a word
///    longer than 100 characters, or one that cannot be covered, becomes `[UNK]`;
/// 6. `[CLS]` … `[SEP]`, truncated so the whole sequence is at most `maximumLength` tokens.
public struct WordPieceTokenizer: Sendable {
    public let vocabulary: [String: Int32]
    public let tokens: [String]
    public let maximumLength: Int
    let unknownID: Int32
    let classifierID: Int32
    let separatorID: Int32
    static let maximumWordCharacters = 100

    public init(vocabularyFile path: String, maximumLength: Int) throws(TokenizerError) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw .unreadableVocabulary(path: path)
        }
        var tokens = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            String($0.hasSuffix("\r") ? $0.dropLast() : $0)
        }
        if tokens.last == "" { tokens.removeLast() }
        try self.init(tokens: tokens, maximumLength: maximumLength)
    }

    public init(tokens: [String], maximumLength: Int) throws(TokenizerError) {
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(tokens.count)
        for (index, token) in tokens.enumerated() where vocabulary[token] == nil {
            vocabulary[token] = Int32(index)
        }
        guard let unknown = vocabulary["[UNK]"], let classifier = vocabulary["[CLS]"],
            let separator = vocabulary["[SEP]"]
        else { throw .missingSpecialTokens }
        self.vocabulary = vocabulary
        self.tokens = tokens
        self.maximumLength = maximumLength
        self.unknownID = unknown
        self.classifierID = classifier
        self.separatorID = separator
    }

    /// Token ids with `[CLS]` and `[SEP]`, at most `maximumLength` of them.
    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = [self.classifierID]
        let room = self.maximumLength - 2
        outer: for word in Self.basicTokens(text) {
            for id in self.wordPiece(word) {
                if ids.count - 1 == room { break outer }
                ids.append(id)
            }
        }
        ids.append(self.separatorID)
        return ids
    }

    /// The tokens as text, for comparing with a reference tokenizer.
    public func tokenize(_ text: String) -> [String] {
        self.encode(text).map { self.tokens[Int($0)] }
    }

    // MARK: Basic tokenization

    static func basicTokens(_ text: String) -> [String] {
        // Steps 1 and 2.
        var cleaned = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar.value == 0 || scalar.value == 0xFFFD || isControl(scalar) { continue }
            if isWhitespace(scalar) {
                cleaned.append(" ")
            } else if isCJK(scalar) {
                cleaned.append(" ")
                cleaned.append(scalar)
                cleaned.append(" ")
            } else {
                cleaned.append(scalar)
            }
        }
        // Steps 3 and 4.
        var words: [String] = []
        for word in String(cleaned).split(separator: " ", omittingEmptySubsequences: true) {
            let normalized = stripAccents(String(word).lowercased())
            var current = String.UnicodeScalarView()
            for scalar in normalized.unicodeScalars {
                if isPunctuation(scalar) {
                    if !current.isEmpty { words.append(String(current)) }
                    current = String.UnicodeScalarView()
                    words.append(String(scalar))
                } else {
                    current.append(scalar)
                }
            }
            if !current.isEmpty { words.append(String(current)) }
        }
        return words
    }

    static func stripAccents(_ text: String) -> String {
        var kept = String.UnicodeScalarView()
        for scalar in text.decomposedStringWithCanonicalMapping.unicodeScalars
        where scalar.properties.generalCategory != .nonspacingMark {
            kept.append(scalar)
        }
        return String(kept)
    }

    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case " ", "\t", "\n", "\r": return true
        default: return scalar.properties.generalCategory == .spaceSeparator
        }
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "\t", "\n", "\r": return false
        default:
            switch scalar.properties.generalCategory {
            case .control, .format, .surrogate, .privateUse, .unassigned: return true
            default: return false
            }
        }
    }

    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if (33...47).contains(value) || (58...64).contains(value) || (91...96).contains(value)
            || (123...126).contains(value)
        {
            return true
        }
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    static func isCJK(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
            0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }

    // MARK: WordPiece

    func wordPiece(_ word: String) -> [Int32] {
        // Code points, as Python iterates a string (not grapheme clusters).
        let characters = Array(word.unicodeScalars)
        if characters.count > Self.maximumWordCharacters { return [self.unknownID] }
        var pieces: [Int32] = []
        var start = 0
        while start < characters.count {
            var end = characters.count
            var found: Int32?
            while start < end {
                var scalars = String.UnicodeScalarView()
                if start > 0 { scalars.append(contentsOf: "##".unicodeScalars) }
                scalars.append(contentsOf: characters[start..<end])
                let candidate = String(scalars)
                if let id = self.vocabulary[candidate] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let id = found else { return [self.unknownID] }
            pieces.append(id)
            start = end
        }
        return pieces
    }
}

public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    case unreadableVocabulary(path: String)
    case missingSpecialTokens

    public var description: String {
        switch self {
        case .unreadableVocabulary(let path): "cannot read the vocabulary \(path)"
        case .missingSpecialTokens: "the vocabulary lacks [UNK], [CLS] or [SEP]"
        }
    }
}
