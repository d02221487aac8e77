import Foundation

/// Turns text into the terms BM25 counts: letters and digits in runs, lower-cased with diacritics
/// folded, English stop words and single letters dropped, plural endings stripped (the "S"
/// stemmer: `momenta`/`momentum` stay apart, `coordinates`/`coordinate` meet).
///
/// LaTeX commands count as words (`\partial` gives `partial`), so a question that names the
/// symbol finds the equation.
public enum TextAnalyzer {
    public static func terms(_ text: String) -> [String] {
        var terms: [String] = []
        self.forEachTerm(in: text) { terms.append($0) }
        return terms
    }

    /// Calls `body` with each term of `text`, in order.
    public static func forEachTerm(in text: String, _ body: (String) -> Void) {
        var word = String.UnicodeScalarView()
        func flush() {
            defer { word.removeAll(keepingCapacity: true) }
            guard word.count > 1 else { return }
            let folded = String(word)
            guard !self.stopWords.contains(folded) else { return }
            body(self.stem(folded))
        }
        for scalar in text.unicodeScalars {
            if scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) {
                if scalar.isASCII {
                    let value = scalar.value
                    word.append((0x41...0x5A).contains(value) ? Unicode.Scalar(value + 32)! : scalar)
                } else {
                    let folded = String(scalar).folding(
                        options: [.caseInsensitive, .diacriticInsensitive], locale: nil)
                    word.append(contentsOf: folded.unicodeScalars)
                }
            } else if scalar == "'" || scalar == "\u{2019}" {
                // "Noether's" → "noether": drop the possessive and what follows it in the word.
                flush()
                continue
            } else {
                flush()
            }
        }
        flush()
    }

    /// Harman's S stemmer.
    static func stem(_ word: String) -> String {
        guard word.count > 3, word.hasSuffix("s") else { return word }
        if word.hasSuffix("ies"), !word.hasSuffix("eies"), !word.hasSuffix("aies") {
            return String(word.dropLast(3)) + "y"
        }
        if word.hasSuffix("es"), !word.hasSuffix("aes"), !word.hasSuffix("ees"), !word.hasSuffix("oes") {
            return String(word.dropLast(1))
        }
        if !word.hasSuffix("us"), !word.hasSuffix("ss") {
            return String(word.dropLast(1))
        }
        return word
    }

    static let stopWords: Set<String> = [
        "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
        "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do",
        "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having",
        "he", "her", "here", "hers", "him", "his", "how", "if", "in", "into", "is", "it", "its", "itself", "just",
        "me", "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other",
        "our", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their",
        "them", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up",
        "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with",
        "would", "you", "your", "yours", "tell", "explain", "describe", "define", "mean", "meaning", "given",
        "give", "us", "i",
    ]
}
