import Foundation

/// One piece of one entry: what is embedded, counted by BM25 and quoted in answers.
public struct CanonChunk: Sendable, Equatable {
    /// Index of the entry in the list that was chunked.
    public var entryIndex: Int
    /// The entry's body text in this chunk (without the title).
    public var text: String

    public init(entryIndex: Int, text: String) {
        self.entryIndex = entryIndex
        self.text = text
    }
}

/// Splits entries into chunks that never cross an entry and never split a display equation
/// (`$$…$$`), a `\begin…\end` environment or a code fence: blocks are kept whole and packed in order
/// until a chunk would pass `targetWords`; a single paragraph longer than that is cut between
/// sentences, never inside inline math.
public struct Chunker: Sendable {
    public var targetWords: Int

    public init(targetWords: Int = 120) {
        self.targetWords = targetWords
    }

    public func chunks(of entries: [CanonEntry]) -> [CanonChunk] {
        var chunks: [CanonChunk] = []
        for (index, entry) in entries.enumerated() {
            for text in self.split(entry.body) {
                chunks.append(CanonChunk(entryIndex: index, text: text))
            }
        }
        return chunks
    }

    /// The chunk texts of one body; at least one (an empty body gives one empty chunk, so the
    /// entry can still be found by its title).
    public func split(_ body: String) -> [String] {
        var pieces: [String] = []
        var current: [String] = []
        var currentWords = 0
        func close() {
            if !current.isEmpty { pieces.append(current.joined(separator: "\n\n")) }
            current = []
            currentWords = 0
        }
        for block in Self.blocks(body) {
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
        return pieces.isEmpty ? [""] : pieces
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
