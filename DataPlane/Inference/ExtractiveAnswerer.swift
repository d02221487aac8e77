import Canon
import Foundation
import Retrieval
import Synchronization

/// A citation as the query API returns it.
public struct Citation: Sendable, Equatable, Codable {
    public var id: String
    public var title: String
    public var kind: CanonEntry.Kind
    public var status: CanonEntry.Status
    public var snippet: String
    public var score: Double
    public var canonVersion: String

    public init(
        id: String, title: String, kind: CanonEntry.Kind, status: CanonEntry.Status, snippet: String, score: Double,
        canonVersion: String
    ) {
        self.id = id
        self.title = title
        self.kind = kind
        self.status = status
        self.snippet = snippet
        self.score = score
        self.canonVersion = canonVersion
    }

    enum CodingKeys: String, CodingKey {
        case id, title, kind, status, snippet, score
        case canonVersion = "canon_version"
    }
}

public struct ExtractiveAnswer: Sendable, Equatable {
    public var text: String
    public var citations: [Citation]
    public var confidence: Double
    /// false when nothing retrieved cleared the relevance threshold.
    public var covered: Bool
}

/// The embedded local answerer (`zora-extractive-local`): the answer is made of sentences of the
/// retrieved passages only, chosen by how many of the question's (IDF-weighted) terms they carry,
/// kept in citation order and in their order within each entry, each followed by its citation
/// number. Sentences from entries that are not established results say so before them
/// ("Conjecture, not established:"). The formula for `confidence` is in `docs/retrieval.md`.
public struct ExtractiveAnswerer: Sendable {
    public static let modelName = "zora-extractive-local"

    /// Below this best cosine similarity the canon does not cover the question.
    public var coverageThreshold: Float
    /// An entry is cited only when its best chunk is at least this similar to the question.
    public var citationThreshold: Float
    public var maximumSentences: Int
    public var maximumSentencesPerEntry: Int
    /// Entries whose similarity is more than this below the best one's are cited but not quoted.
    public var answerSimilarityMargin: Float = 0.12
    /// The sentences of chunks already quoted from, shared by every copy of this answerer.
    let sentenceCache = ChunkSentences()

    public init(
        coverageThreshold: Float = 0.35, citationThreshold: Float = 0.25, maximumSentences: Int = 4,
        maximumSentencesPerEntry: Int = 2
    ) {
        self.coverageThreshold = coverageThreshold
        self.citationThreshold = citationThreshold
        self.maximumSentences = maximumSentences
        self.maximumSentencesPerEntry = maximumSentencesPerEntry
    }

    public static let notCovered =
        "The canon does not cover this question: nothing in it is close enough to answer from."

    public func answer(
        question: String, retrieval: RetrievalResult, layers: [CanonLayer], maxCitations: Int
    ) -> ExtractiveAnswer {
        let best = retrieval.entries.map(\.similarity).max() ?? -1
        let cited = retrieval.entries.filter { $0.similarity >= self.citationThreshold }.prefix(maxCitations)
        guard best >= self.coverageThreshold, !cited.isEmpty else {
            let confidence = 0.1 * Double(max(0, min(1, best / self.coverageThreshold)))
            return ExtractiveAnswer(
                text: Self.notCovered, citations: [], confidence: Self.rounded(confidence), covered: false)
        }

        let weights = Self.termWeights(question: question, layers: layers)
        struct Candidate {
            var citation: Int
            var position: Int
            var text: String
            var score: Double
        }
        var candidates: [Candidate] = []
        var snippets: [String] = []
        for (number, found) in cited.enumerated() {
            let index = layers[found.layer].index
            let chunks = index.servedChunks(of: found.entry)
            var position = 0
            var bestSnippet: (String, Double)?
            // Only entries nearly as close as the best one speak in the answer; the others are
            // still listed as citations.
            let speaks = found.similarity >= best - self.answerSimilarityMargin
            for chunk in chunks {
                for analysed in self.sentenceCache.sentences(of: chunk, in: index) {
                    let sentence = analysed.text
                    var score = 0.0
                    for term in analysed.distinctTerms { score += weights[term] ?? 0 }
                    score /= (1 + Double(analysed.termCount) / 25).squareRoot()
                    // The opening sentence of an entry usually states what it is; one that opens
                    // with a pronoun needs the sentence before it.
                    if position == 0 { score += 1 }
                    if analysed.opensWithPronoun { score -= 0.75 }
                    score += 0.5 / Double(number + 1) + 2 * Double(found.similarity - best)
                    if speaks {
                        candidates.append(Candidate(citation: number, position: position, text: sentence, score: score))
                    }
                    if bestSnippet == nil || score > bestSnippet!.1 { bestSnippet = (sentence, score) }
                    position += 1
                }
            }
            snippets.append(Self.snippet(bestSnippet?.0 ?? found.entry.title))
        }

        var chosen: [Candidate] = []
        var perEntry: [Int: Int] = [:]
        for candidate in candidates.sorted(by: { $0.score > $1.score }) {
            guard chosen.count < self.maximumSentences else { break }
            guard perEntry[candidate.citation, default: 0] < self.maximumSentencesPerEntry else { continue }
            perEntry[candidate.citation, default: 0] += 1
            chosen.append(candidate)
        }
        chosen.sort { ($0.citation, $0.position) < ($1.citation, $1.position) }

        var paragraphs: [String] = []
        var current: (citation: Int, sentences: [String])?
        func closeParagraph() {
            guard let current else { return }
            let entry = cited[cited.startIndex + current.citation].entry
            // A definition's text usually leaves its subject to the title.
            let subject = entry.kind == .definition ? entry.title + ": " : ""
            paragraphs.append(Self.statusPrefix(entry.status) + subject + current.sentences.joined(separator: " "))
        }
        for candidate in chosen {
            if current?.citation != candidate.citation {
                closeParagraph()
                current = (candidate.citation, [])
            }
            current!.sentences.append("\(candidate.text) [\(candidate.citation + 1)]")
        }
        closeParagraph()

        let citations = cited.enumerated().map { number, found in
            Citation(
                id: found.entry.id, title: found.entry.title, kind: found.entry.kind, status: found.entry.status,
                snippet: snippets[number], score: Self.rounded(found.fusedScore * (self.rrfK + 1) / 2),
                canonVersion: found.canonVersion)
        }
        let confidence = self.confidence(
            similarity: best, retrieval: retrieval, statuses: cited.map(\.entry.status))
        return ExtractiveAnswer(
            text: paragraphs.joined(separator: "\n\n"), citations: citations, confidence: confidence, covered: true)
    }

    var rrfK: Double { 60 }

    /// `S × (0.5 + 0.25 A + 0.25 T)`: similarity S = clamp((best cosine − 0.2) / 0.5), agreement A =
    /// share of the top three entries both rankings hold, status T = mean status weight of the
    /// citations weighted 1/n by their number.
    public func confidence(similarity: Float, retrieval: RetrievalResult, statuses: [CanonEntry.Status]) -> Double {
        let s = Double(max(0, min(1, (similarity - 0.2) / 0.5)))
        let lexicalTop = Set(retrieval.lexicalOrder.prefix(3))
        let vectorTop = Set(retrieval.vectorOrder.prefix(3))
        let agreement = lexicalTop.isEmpty ? 0 : Double(lexicalTop.intersection(vectorTop).count) / 3
        var weighted = 0.0
        var total = 0.0
        for (number, status) in statuses.enumerated() {
            let weight = 1 / Double(number + 1)
            weighted += weight * Self.statusWeight(status)
            total += weight
        }
        let statusScore = total > 0 ? weighted / total : 0
        return Self.rounded(s * (0.5 + 0.25 * agreement + 0.25 * statusScore))
    }

    public static func statusWeight(_ status: CanonEntry.Status) -> Double {
        switch status {
        case .proven: 1
        case .derived: 0.9
        case .modeled: 0.6
        case .narrative: 0.5
        case .conjectural: 0.4
        }
    }

    /// What is said before sentences of an entry with this status.
    public static func statusPrefix(_ status: CanonEntry.Status) -> String {
        switch status {
        case .proven, .derived: ""
        case .modeled: "From a model, not an established result: "
        case .conjectural: "Conjecture, not established: "
        case .narrative: "Narrative account: "
        }
    }

    /// Sentences of a chunk: display blocks (equations, code) join the sentence before them.
    static func sentences(of text: String) -> [String] {
        var sentences: [String] = []
        for block in Chunker.blocks(text) {
            let trimmed = block.text.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.hasPrefix("#") { continue }
            if block.atomic, !sentences.isEmpty {
                sentences[sentences.count - 1] += "\n" + trimmed
                continue
            }
            sentences.append(contentsOf: Chunker.sentences(trimmed.replacingOccurrences(of: "\n", with: " ")))
        }
        return sentences
    }

    static func opensWithPronoun(_ sentence: String) -> Bool {
        let first = sentence.prefix { $0.isLetter }.lowercased()
        return ["it", "they", "this", "these", "those", "its", "their"].contains(first)
    }

    static func termWeights(question: String, layers: [CanonLayer]) -> [String: Double] {
        var chunkCount = 0
        for layer in layers { chunkCount += layer.index.chunkCount }
        var weights: [String: Double] = [:]
        for term in TextAnalyzer.terms(question) {
            var df = 0
            for layer in layers { df += layer.index.documentFrequency(of: term) }
            weights[term] = log(1 + (Double(chunkCount) - Double(df) + 0.5) / (Double(df) + 0.5))
        }
        return weights
    }

    static func snippet(_ text: String) -> String {
        let flat = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        guard flat.count > 300 else { return flat }
        return String(flat.prefix(297)) + "…"
    }

    static func rounded(_ value: Double) -> Double {
        (value * 1000).rounded() / 1000
    }
}

/// A chunk's sentences as the extractive answerer scores them, kept by the canon index's hash and
/// the chunk's number (an index's text never changes, so neither do they). Splitting a chunk into
/// sentences and terms is Foundation string work that cost more than the rest of an answer;
/// a question's passages are mostly ones asked about before. At most `capacity` chunks are kept;
/// past it the cache starts again empty.
final class ChunkSentences: Sendable {
    struct Sentence: Sendable {
        let text: String
        /// The sentence's terms, each once, in order of first use (so scores add in the same order).
        let distinctTerms: [String]
        /// Every term, repeats included.
        let termCount: Int
        let opensWithPronoun: Bool
    }

    private struct Key: Hashable {
        let index: String
        let chunk: Int
    }

    let capacity: Int
    private let kept = Mutex<[Key: [Sentence]]>([:])

    init(capacity: Int = 20_000) {
        self.capacity = capacity
    }

    func sentences(of chunk: Int, in index: CanonIndex) -> [Sentence] {
        let key = Key(index: index.sha256, chunk: chunk)
        if let known = self.kept.withLock({ $0[key] }) { return known }
        let sentences = ExtractiveAnswerer.sentences(of: index.chunkText[chunk]).map { text in
            var seen: Set<String> = []
            var distinct: [String] = []
            var count = 0
            TextAnalyzer.forEachTerm(in: text) { term in
                count += 1
                if seen.insert(term).inserted { distinct.append(term) }
            }
            return Sentence(
                text: text, distinctTerms: distinct, termCount: count,
                opensWithPronoun: ExtractiveAnswerer.opensWithPronoun(text))
        }
        self.kept.withLock {
            if $0.count >= self.capacity { $0.removeAll(keepingCapacity: true) }
            $0[key] = sentences
        }
        return sentences
    }

    var count: Int { self.kept.withLock { $0.count } }
}
