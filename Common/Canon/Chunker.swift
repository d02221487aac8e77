import Foundation

/// One piece of one entry: what is embedded, counted by BM25 and quoted in answers.
public struct CanonChunk: Sendable, Equatable {
    /// Index of the entry in the list that was chunked.
    public var entryIndex: Int
    /// The entry's body text in this chunk (without the title).
    public var text: String
    /// Sentences that address a model rather than state something (`InjectionClassifier`): kept
    /// for the build's warnings, never retrieved, quoted or given to a model.
    public var injected: Bool

    public init(entryIndex: Int, text: String, injected: Bool = false) {
        self.entryIndex = entryIndex
        self.text = text
        self.injected = injected
    }
}

/// Splits entries into chunks that never cross an entry and never split a display equation
/// (`$$…$$`), a `\begin…\end` environment or a code fence: blocks are kept whole and packed in order
/// until a chunk would pass `targetWords`; a single paragraph longer than that is cut between
/// sentences, never inside inline math.
///
/// Sentences the injection classifier flags are taken out of their paragraph (a display block
/// that holds one is taken out whole) and gathered into one flagged chunk after the entry's others.
public struct Chunker: Sendable {
    public var targetWords: Int
    public var classifier: InjectionClassifier

    public init(targetWords: Int = 120, classifier: InjectionClassifier = .standard) {
        self.targetWords = targetWords
        self.classifier = classifier
    }

    public func chunks(of entries: [CanonEntry]) -> [CanonChunk] {
        var chunks: [CanonChunk] = []
        for (index, entry) in entries.enumerated() {
            let (pieces, injected) = self.split(entry.body)
            for text in pieces {
                chunks.append(CanonChunk(entryIndex: index, text: text))
            }
            if !injected.isEmpty {
                chunks.append(CanonChunk(entryIndex: index, text: injected.joined(separator: "\n"), injected: true))
            }
        }
        return chunks
    }

    /// The chunk texts of one body, at least one (an empty body gives one empty chunk, so the
    /// entry can still be found by its title), and its injected sentences.
    public func split(_ body: String) -> (pieces: [String], injected: [String]) {
        var injected: [String] = []
        var pieces: [String] = []
        var current: [String] = []
        var currentWords = 0
        func close() {
            if !current.isEmpty { pieces.append(current.joined(separator: "\n\n")) }
            current = []
            currentWords = 0
        }
        for var block in Self.blocks(body) {
            if block.atomic {
                if Self.sentences(block.text).contains(where: self.classifier.isInjection) {
                    injected.append(block.text)
                    continue
                }
            } else {
                let (kept, found) = self.classifier.separate(block.text)
                injected += found
                guard !kept.isEmpty else { continue }
                block.text = kept
            }
            let words = Self.wordCount(block.text)
            if block.atomic || words <= self.targetWords {
                if currentWords + words > self.targetWords { close() }
                current.append(block.text)
                currentWords += words
                continue
            }
            for sentence in Self.sentences(block.text) {
                let count = Self.wordCount(sentence)
                if currentWords + count > self.targetWords { close() }
                current.append(sentence)
                currentWords += count
            }
        }
        close()
        return (pieces.isEmpty ? [""] : pieces, injected)
    }

    /// A paragraph of an entry's body, or a display block kept whole.
    public struct Block: Sendable {
        public var text: String
        /// A display equation, environment or code fence: never split.
        public var atomic: Bool
    }

    /// Paragraphs separated by blank lines, with display math, environments and code fences kept
    /// whole even when they contain blank lines.
    public static func blocks(_ body: String) -> [Block] {
        var blocks: [Block] = []
        var lines: [Substring] = []
        var atomic = false
        var fence: Substring?
        var inDisplayMath = false
        var environmentDepth = 0
        func flush() {
            let text = lines.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty { blocks.append(Block(text: text, atomic: atomic)) }
            lines = []
            atomic = false
        }
        for line in body.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            let open = fence != nil || inDisplayMath || environmentDepth > 0
            if !open && trimmed.isEmpty {
                flush()
                continue
            }
            lines.append(line)
            if let marker = fence {
                if trimmed.hasPrefix(marker) { fence = nil }
                continue
            }
            if trimmed.hasPrefix("```") || trimmed.hasPrefix("~~~") {
                fence = trimmed.hasPrefix("```") ? "```" : "~~~"
                atomic = true
                continue
            }
            let dollars = trimmed.components(separatedBy: "$$").count - 1
            if dollars > 0 { atomic = true }
            if dollars % 2 == 1 { inDisplayMath.toggle() }
            let begins = trimmed.components(separatedBy: "\\begin{").count - 1
            let ends = trimmed.components(separatedBy: "\\end{").count - 1
            if begins > 0 { atomic = true }
            environmentDepth = max(0, environmentDepth + begins - ends)
        }
        flush()
        return blocks
    }

    /// Sentences of a paragraph: ends at `.`, `?` or `!` followed by white space, outside `$…$`.
    public static func sentences(_ text: String) -> [String] {
        var sentences: [String] = []
        var current = ""
        var inMath = false
        var previous: Character = " "
        var pendingEnd = false
        for character in text {
            if pendingEnd {
                pendingEnd = false
                if character.isWhitespace {
                    let sentence = current.trimmingCharacters(in: .whitespacesAndNewlines)
                    if !sentence.isEmpty { sentences.append(sentence) }
                    current = ""
                    continue
                }
            }
            current.append(character)
            if character == "$" && previous != "\\" { inMath.toggle() }
            if !inMath && (character == "." || character == "?" || character == "!") {
                pendingEnd = true
            }
            previous = character
        }
        let last = current.trimmingCharacters(in: .whitespacesAndNewlines)
        if !last.isEmpty { sentences.append(last) }
        return sentences
    }

    static func wordCount(_ text: String) -> Int {
        var count = 0
        var inWord = false
        for byte in text.utf8 {
            let space = byte == 0x20 || byte == 0x0A || byte == 0x09 || byte == 0x0D
            if !space && !inWord { count += 1 }
            inWord = !space
        }
        return count
    }
}
