import Canon
import Embeddings
import Foundation

/// Which passage, if any, supports one sentence of a model's answer.
///
/// A passage supports a sentence when every number, every name and every strong qualifier
/// ("always", "exactly", "observed", …) the sentence states is in the passage, and the sentence is
/// close to it: `semanticWeight` × the best cosine similarity of the
/// sentence's embedding with the passage's chunks + (1 − `semanticWeight`) × the share of the
/// sentence's terms the passage holds reaches `threshold`. The weights and threshold are chosen
/// on `infra/labelled/attribution.jsonl` (`zaas-train attribution`; figures in docs/routing.md).
public struct SentenceAttribution: Sendable {
    public var semanticWeight: Double
    public var threshold: Double

    public init(semanticWeight: Double = 0.5, threshold: Double = 0.6) {
        self.semanticWeight = semanticWeight
        self.threshold = threshold
    }

    /// A passage a model was given: chunks of one entry in one layer's index.
    public struct Passage: Sendable {
        let index: CanonIndex
        let chunks: [Int]
        let terms: Set<String>
        /// Its words, lower-cased, for the qualifiers.
        let words: Set<Substring>
        /// The passage's text lower-cased, with its title: where numbers, names and links are looked for.
        public let text: String

        public init(index: CanonIndex, entry: CanonIndex.Entry, chunks: [Int]) {
            self.index = index
            self.chunks = chunks
            let text = ([entry.title] + chunks.map { index.chunkText[$0] }).joined(separator: "\n")
            self.terms = Set(TextAnalyzer.terms(text))
            self.text = Self.normalised(text)
            self.words = Set(self.text.split { !$0.isLetter })
        }

        /// Lower case, with dashes of every kind as hyphens (`Euler–Lagrange` and `Euler-Lagrange` meet).
        static func normalised(_ text: String) -> String {
            text.lowercased().replacing(/[\u{2010}-\u{2015}\u{2212}]/, with: "-")
        }
    }

    /// How well `passage` supports `sentence` (0...1); 0 when the sentence states a number or a
    /// name the passage does not hold. `vector` is the sentence's unit-length embedding.
    public func support(_ sentence: String, vector: [Float], passage: Passage) -> Double {
        let facts = Self.facts(sentence)
        for fact in facts.numbers + facts.names where !passage.text.contains(fact) { return 0 }
        for word in facts.qualifiers where !passage.words.contains(word) { return 0 }
        let terms = Set(TextAnalyzer.terms(sentence))
        let lexical = terms.isEmpty ? 0 : Double(terms.intersection(passage.terms).count) / Double(terms.count)
        var semantic: Float = 0
        vector.withUnsafeBufferPointer { vector in
            for chunk in passage.chunks where vector.count == passage.index.dimensions {
                semantic = max(semantic, passage.index.similarity(vector, chunk: chunk))
            }
        }
        return self.semanticWeight * Double(semantic) + (1 - self.semanticWeight) * lexical
    }

    /// The passage that best supports `sentence` and its score, or nil when none reaches the threshold.
    /// `preferred` (the passages the model cited for it) wins over a better-scoring other one
    /// when it supports the sentence too.
    public func attribute(_ sentence: String, vector: [Float], passages: [Passage], preferred: [Int] = [])
        -> (passage: Int, score: Double)?
    {
        let scores = passages.map { self.support(sentence, vector: vector, passage: $0) }
        let supporting = scores.indices.filter { scores[$0] >= self.threshold }
        let best = { (candidates: [Int]) in candidates.max { scores[$0] < scores[$1] } }
        guard let chosen = best(supporting.filter(preferred.contains)) ?? best(supporting) else { return nil }
        return (chosen, scores[chosen])
    }

    /// Words that turn a statement into a stronger one: a sentence may use them only where its
    /// passage does ("valid at all energies", "has been observed", "is exact").
    static let qualifiers: Set<Substring> = [
        "always", "never", "every", "all", "exact", "exactly", "unique", "must", "any", "none", "impossible",
        "completely", "entirely", "proven", "confirmed", "observed", "detected", "discovered", "measured",
        "certainly", "guaranteed",
    ]

    /// Numbers (`1915`, `2.5`, `10^15`), names (capitalised words after the first word) and
    /// qualifiers of a sentence, normalised as passages are.
    static func facts(_ sentence: String) -> (numbers: [String], names: [String], qualifiers: [Substring]) {
        let numbers = sentence.matches(of: /\d+(?:[.,]\d+)*/).map { String($0.output) }
        var names: [String] = []
        let words = sentence.split { $0.isWhitespace || ",;:()\"".contains($0) }
        for word in words.dropFirst() {
            var name = word.trimmingCharacters(in: .punctuationCharacters)
            if name.hasSuffix("'s") || name.hasSuffix("’s") { name.removeLast(2) }
            guard let first = name.first, first.isUppercase, name.count > 1, name != "I" else { continue }
            names.append(Passage.normalised(name))
        }
        let qualifiers = Passage.normalised(sentence).split { !$0.isLetter }.filter(Self.qualifiers.contains)
        return (numbers, names, qualifiers)
    }
}

// MARK: Evaluation

extension SentenceAttribution {
    /// One line of `infra/labelled/attribution.jsonl`: a sentence, the demo canon entries given as
    /// passages, and whether they support it.
    public struct Example: Sendable, Decodable {
        public var passages: [String]
        public var sentence: String
        public var supported: Bool
        public var source: String
    }

    public static func examples(jsonLines data: Data) throws -> [Example] {
        try JSONLines.decode(Example.self, from: data)
    }

    /// The highest support any given passage lends each example's sentence (`vectors` in the same
    /// order), for a threshold sweep.
    public func bestSupport(_ examples: [Example], vectors: [[Float]], index: CanonIndex) -> [Double] {
        zip(examples, vectors).map { example, vector in
            let passages = example.passages.compactMap { id -> Passage? in
                guard let number = index.entryIndexByID[id] else { return nil }
                let entry = index.entries[number]
                return Passage(index: index, entry: entry, chunks: index.servedChunks(of: entry))
            }
            return passages.map { self.support(example.sentence, vector: vector, passage: $0) }.max() ?? 0
        }
    }

    /// Verdicts at `threshold` against the labels: precision is the share of sentences kept as
    /// supported that are.
    public static func confusion(_ examples: [Example], scores: [Double], threshold: Double)
        -> BinaryConfusion
    {
        var confusion = BinaryConfusion()
        for (example, score) in zip(examples, scores) {
            confusion.add(predicted: score >= threshold, actual: example.supported)
        }
        return confusion
    }
}

extension SentenceAttribution {
    /// The demo canon's index, built with `embedder` (the labelled set names its entries).
    public static func demoIndex(folder: String, embedder: BatchingEmbedder) async throws -> CanonIndex {
        defer { embedder.shutdown() }
        let entries = CanonArchive().parse(folder: folder).entries.map(\.entry)
        let bytes = try await CanonIndexer().artifact(label: "demo", entries: entries, embedder: embedder)
        return try CanonIndex(bytes: ArtifactBytes(copying: bytes))
    }
}
