import Canon
import Foundation
import Retrieval
import TestSupport
import Testing

/// BM25 walked in C, term at a time, must give exactly what BM25 written out plainly gives: the
/// same chunks in the same order with the same scores, across layers, hidden entries and repeated
/// terms.
@Suite("BM25's walk against a plain reference")
struct LexicalWalkTests {
    /// Deterministic words: half from a short list of common ones, half from a Zipf tail.
    struct Words {
        var random: SplitMix

        init(seed: UInt64) { self.random = SplitMix(seed: seed) }

        mutating func next() -> UInt64 { self.random.next() }

        static let common = """
            action lagrangian field symmetry energy momentum charge gauge potential velocity equation motion
            tensor metric curvature quantum density wave mass particle coupling constant entropy pressure
            """.split(whereSeparator: \.isWhitespace).map(String.init)

        mutating func word() -> String {
            if self.next() % 2 == 0 { return Self.common[Int(self.next() % UInt64(Self.common.count))] }
            let unit = Double(self.next() % 1_000_000) / 1_000_000
            return "term\(Int(exp(unit * log(3000.0))))"
        }

        mutating func text(words: ClosedRange<Int>) -> String {
            let count = words.lowerBound + Int(self.next() % UInt64(words.count))
            return (0..<count).map { _ in self.word() }.joined(separator: " ")
        }
    }

    static func index(label: String, entries count: Int, prefix: String, words: inout Words) throws -> CanonIndex {
        let entries = (0..<count).map { number in
            CanonEntry(
                id: "\(prefix).\(number)", kind: .definition, title: "Entry \(number)",
                body: words.text(words: 4...90), status: .proven)
        }
        let chunks = entries.indices.map { CanonChunk(entryIndex: $0, text: entries[$0].body) }
        let dimensions = 8
        let embeddings = (0..<(chunks.count * dimensions)).map { Float($0 % 7) - 3 }
        return try CanonIndex(
            bytes: ArtifactBytes(
                copying: CanonIndexWriter.artifact(
                    label: label, entries: entries, chunks: chunks, embeddings: embeddings, dimensions: dimensions)))
    }

    /// BM25 written out plainly: each chunk's term frequencies from the postings, every visible
    /// chunk scored in chunk order, all sorted; no accumulators, no heap.
    static func reference(
        layers: [CanonLayer], terms: [String], retriever: HybridRetriever
    ) -> [(ChunkReference, Float)] {
        let chunkCount = layers.reduce(0) { $0 + $1.index.chunkCount }
        let totalTerms = layers.reduce(UInt64(0)) { $0 + $1.index.totalTerms }
        let averageLength = max(Float(totalTerms) / Float(chunkCount), 1)
        var repeats: [String: Int] = [:]
        for term in terms { repeats[term, default: 0] += 1 }
        var weighted: [(term: String, weight: Float)] = []
        for (term, count) in repeats {
            let df = layers.reduce(0) { $0 + $1.index.documentFrequency(of: term) }
            guard df > 0 else { continue }
            let n = Float(chunkCount)
            weighted.append(
                (term, logf(1 + (n - Float(df) + 0.5) / (Float(df) + 0.5)) * Float(count) * (retriever.k1 + 1)))
        }
        weighted.sort { $0.weight != $1.weight ? $0.weight > $1.weight : $0.term < $1.term }
        var scored: [(ChunkReference, Float)] = []
        for (number, layer) in layers.enumerated() {
            var frequencies: [[Int: Float]] = []
            for (term, _) in weighted {
                var table: [Int: Float] = [:]
                if let postings = layer.index.postings(of: term) {
                    for (chunk, count) in zip(postings.chunks, postings.counts) { table[Int(chunk)] = Float(count) }
                }
                frequencies.append(table)
            }
            for chunk in 0..<layer.index.chunkCount where layer.isVisible(chunk: chunk) {
                let norm =
                    retriever.k1 * (1 - retriever.b) + retriever.k1 * retriever.b / averageLength
                    * Float(layer.index.chunkLength[chunk])
                var score: Float = 0
                var found = false
                for (position, (_, weight)) in weighted.enumerated() {
                    let frequency = frequencies[position][chunk] ?? 0
                    if frequency > 0 { found = true }
                    score += frequency > 0 ? weight * frequency / (frequency + norm) : 0
                }
                if found { scored.append((ChunkReference(layer: number, chunk: chunk), score)) }
            }
        }
        scored.sort {
            $0.1 != $1.1 ? $0.1 > $1.1 : ($0.0.layer, $0.0.chunk) < ($1.0.layer, $1.0.chunk)
        }
        return Array(scored.prefix(retriever.depth))
    }

    static func same(_ left: [(ChunkReference, Float)], _ right: [(ChunkReference, Float)]) -> Bool {
        left.count == right.count && zip(left, right).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    @Test("the walk and a plain reference agree exactly over a base, an overlay and hidden entries")
    func agreesWithReference() async throws {
        try await onOwnThread {
            var words = Words(seed: 11)
            let base = try Self.index(label: "base", entries: 4000, prefix: "base", words: &words)
            let overlay = try Self.index(label: "overlay", entries: 300, prefix: "base", words: &words)
            let hiddenIDs = Set((0..<200).map { "base.\($0 * 7)" })
            let stacks = [
                [CanonLayer(index: base)],
                CanonLayer.stack(base: base, overlay: overlay, deletedFromBase: hiddenIDs),
            ]
            var compared = 0
            var filled = 0
            for depth in [1, 5, 40] {
                let retriever = HybridRetriever(depth: depth)
                for layers in stacks {
                    for _ in 0..<150 {
                        // Questions of 1–14 words, some repeated, some unknown to the canon.
                        var terms = TextAnalyzer.terms(words.text(words: 1...12))
                        if words.next() % 3 == 0, let first = terms.first { terms.append(first) }
                        if words.next() % 5 == 0 { terms.append("unknownword\(words.next() % 100)") }
                        let walked = retriever.lexical(layers: layers, terms: terms)
                        let reference = Self.reference(layers: layers, terms: terms, retriever: retriever)
                        #expect(Self.same(walked, reference), "\(terms) depth \(depth)")
                        compared += 1
                        if walked.count == depth { filled += 1 }
                    }
                }
            }
            #expect(compared == 900)
            // The comparison is not vacuous: most questions fill the list, so the cut-off is tested.
            #expect(filled > 700)
            // Hidden entries never come back.
            let layers = stacks[1]
            for (reference, _) in HybridRetriever(depth: 400).lexical(layers: layers, terms: ["action", "energy"]) {
                #expect(layers[reference.layer].isVisible(chunk: reference.chunk))
            }
        }
    }

    @Test("no terms, only unknown terms, and an empty stack give nothing")
    func nothingToFind() throws {
        var words = Words(seed: 3)
        let base = try Self.index(label: "base", entries: 50, prefix: "base", words: &words)
        let retriever = HybridRetriever()
        #expect(retriever.lexical(layers: [CanonLayer(index: base)], terms: []).isEmpty)
        #expect(retriever.lexical(layers: [CanonLayer(index: base)], terms: ["zzzunknown"]).isEmpty)
        #expect(retriever.lexical(layers: [], terms: ["action"]).isEmpty)
    }
}
