import CKernels
import Canon
import Foundation

/// One searchable layer of a tenant's canon: the base canon (with the entries the tenant's
/// overlay replaces or deletes hidden) or the tenant's overlay.
public struct CanonLayer: Sendable {
    public let index: CanonIndex
    /// `hidden[entryIndex]`: the entry is replaced or deleted by a layer above.
    let hidden: [Bool]

    public init(index: CanonIndex, hiding ids: Set<String> = []) {
        self.index = index
        var hidden = [Bool](repeating: false, count: index.entries.count)
        for id in ids { if let entry = index.entryIndexByID[id] { hidden[entry] = true } }
        self.hidden = hidden
    }

    /// The layers a tenant searches: its overlay (if any) over the base canon (if any), the base
    /// entries whose ids the overlay holds hidden, as are base entries the overlay deletes.
    public static func stack(base: CanonIndex?, overlay: CanonIndex?, deletedFromBase: Set<String> = []) -> [CanonLayer]
    {
        var layers: [CanonLayer] = []
        if let overlay { layers.append(CanonLayer(index: overlay)) }
        if let base {
            let replaced = Set(overlay?.entries.map(\.id) ?? []).union(deletedFromBase)
            layers.append(CanonLayer(index: base, hiding: replaced))
        }
        return layers
    }

    /// Neither hidden by a layer above nor injected text.
    @inline(__always) public func isVisible(chunk: Int) -> Bool {
        !self.hidden[Int(self.index.chunkEntry[chunk])] && !self.index.chunkInjected[chunk]
    }
}

/// What hybrid retrieval found for one entry.
public struct RetrievedEntry: Sendable {
    public var layer: Int
    public var entry: CanonIndex.Entry
    public var canonVersion: String
    /// Reciprocal-rank fusion of the entry's lexical and vector ranks.
    public var fusedScore: Double
    /// 1-based ranks among entries in each list; nil when the entry was not in that list's top.
    public var lexicalRank: Int?
    public var vectorRank: Int?
    /// The best cosine similarity of any of its chunks with the question.
    public var similarity: Float
    /// Its chunks that matched, best first.
    public var chunks: [Int]
}

public struct RetrievalResult: Sendable {
    public var entries: [RetrievedEntry]
    /// Entry ids in lexical and in vector order (the first `depth` chunks, as entries).
    public var lexicalOrder: [String]
    public var vectorOrder: [String]
}

/// BM25 over chunk terms and cosine similarity over chunk embeddings, each taken to its top
/// `depth` chunks across all layers, turned into entry rankings and fused by reciprocal rank
/// (`Σ 1 / (k + rank)`, k = 60). BM25 uses the statistics of all layers together, so scores from
/// the overlay and the base canon are comparable.
public struct HybridRetriever: Sendable {
    public var depth: Int
    public var rrfK: Double
    public var k1: Float = 1.2
    public var b: Float = 0.75

    public init(depth: Int = 40, rrfK: Double = 60) {
        self.depth = depth
        self.rrfK = rrfK
    }

    public func retrieve(layers: [CanonLayer], question: String, vector: [Float], limit: Int) -> RetrievalResult {
        let lexical = self.lexical(layers: layers, terms: TextAnalyzer.terms(question))
        let semantic = vector.withUnsafeBufferPointer { self.semantic(layers: layers, query: $0) }

        struct Key: Hashable {
            var layer: Int
            var entry: Int
        }
        var fused: [Key: RetrievedEntry] = [:]
        var lexicalOrder: [String] = []
        var vectorOrder: [String] = []
        func visit(_ list: [(ChunkReference, Float)], isLexical: Bool) {
            var rank = 0
            var seen: Set<Key> = []
            for (reference, score) in list {
                let layer = layers[reference.layer]
                let entryIndex = Int(layer.index.chunkEntry[reference.chunk])
                let key = Key(layer: reference.layer, entry: entryIndex)
                if seen.insert(key).inserted {
                    rank += 1
                    let entry = layer.index.entries[entryIndex]
                    if isLexical { lexicalOrder.append(entry.id) } else { vectorOrder.append(entry.id) }
                    var found =
                        fused[key]
                        ?? RetrievedEntry(
                            layer: reference.layer, entry: entry, canonVersion: layer.index.label, fusedScore: 0,
                            lexicalRank: nil, vectorRank: nil, similarity: -1, chunks: [])
                    found.fusedScore += 1 / (self.rrfK + Double(rank))
                    if isLexical { found.lexicalRank = rank } else { found.vectorRank = rank }
                    fused[key] = found
                }
                if !isLexical { fused[key]!.similarity = max(fused[key]!.similarity, score) }
                if !fused[key]!.chunks.contains(reference.chunk) { fused[key]!.chunks.append(reference.chunk) }
            }
        }
        visit(semantic, isLexical: false)
        visit(lexical, isLexical: true)

        var ranked = fused.values.sorted {
            $0.fusedScore != $1.fusedScore ? $0.fusedScore > $1.fusedScore : $0.entry.id < $1.entry.id
        }
        if ranked.count > limit { ranked.removeSubrange(limit...) }
        // Entries found only lexically still get their similarity, from their best chunk.
        vector.withUnsafeBufferPointer { query in
            for index in ranked.indices where ranked[index].vectorRank == nil {
                let layer = layers[ranked[index].layer]
                var best: Float = -1
                for chunk in layer.index.servedChunks(of: ranked[index].entry) {
                    best = max(best, layer.index.similarity(query, chunk: chunk))
                }
                ranked[index].similarity = best
            }
        }
        return RetrievalResult(entries: ranked, lexicalOrder: lexicalOrder, vectorOrder: vectorOrder)
    }

    /// The top `depth` chunks by BM25, best first, ties to the lower layer and chunk.
    ///
    /// Term at a time: each term's postings are walked once in C (`zaas_bm25_walk`, about 3 ns
    /// a posting here), adding its part to an accumulator per chunk; every chunk's score is
    /// summed over its terms heaviest first, one fixed order, so it is the same to the last bit
    /// however the work is split. (MaxScore pruning was built and measured against this walk
    /// and lost: see docs/benchmarks.md.)
    public func lexical(layers: [CanonLayer], terms: [String]) -> [(ChunkReference, Float)] {
        guard !terms.isEmpty else { return [] }
        var chunkCount = 0
        var totalTerms: UInt64 = 0
        for layer in layers {
            chunkCount += layer.index.chunkCount
            totalTerms += layer.index.totalTerms
        }
        guard chunkCount > 0 else { return [] }
        let averageLength = max(Float(totalTerms) / Float(chunkCount), 1)
        var repeats: [String: Int] = [:]
        for term in terms { repeats[term, default: 0] += 1 }
        // Each distinct term's weight (IDF over all layers, × repeats × (k1 + 1)), heaviest first.
        var weighted: [(term: String, weight: Float)] = []
        for (term, count) in repeats {
            var documentFrequency = 0
            for layer in layers { documentFrequency += layer.index.documentFrequency(of: term) }
            guard documentFrequency > 0 else { continue }
            let n = Float(chunkCount)
            let df = Float(documentFrequency)
            weighted.append((term, logf(1 + (n - df + 0.5) / (df + 0.5)) * Float(count) * (self.k1 + 1)))
        }
        weighted.sort { $0.weight != $1.weight ? $0.weight > $1.weight : $0.term < $1.term }
        let constant = self.k1 * (1 - self.b)
        let lengthWeight = self.k1 * self.b / averageLength

        var top = TopScores(capacity: self.depth)
        for (layerNumber, layer) in layers.enumerated() {
            let index = layer.index
            var accumulated = [Float](repeating: 0, count: index.chunkCount)
            var touchedCount = 0
            // Every chunk is touched at most once (parts are above 0: the index refuses zero counts);
            // the walk writes one slot ahead before it counts.
            let touched = [Int32](unsafeUninitializedCapacity: index.chunkCount + 1) { touched, initialized in
                accumulated.withUnsafeMutableBufferPointer { accumulated in
                    index.chunkLength.withUnsafeBufferPointer { lengths in
                        for (term, weight) in weighted {
                            // The index checked at load that postings are ascending, distinct
                            // and in range: the walk relies on it.
                            guard let postings = index.postings(of: term) else { continue }
                            touchedCount = zaas_bm25_walk(
                                postings.chunks.base.baseAddress! + postings.chunks.startIndex,
                                postings.counts.base.baseAddress! + postings.counts.startIndex,
                                postings.chunks.count, lengths.baseAddress, weight, constant, lengthWeight,
                                accumulated.baseAddress, touched.baseAddress, touchedCount)
                        }
                    }
                }
                initialized = touchedCount
            }
            // Touched chunks come in no particular order: equal scores are settled by the heap.
            for chunk in touched {
                let score = accumulated[Int(chunk)]
                if score >= top.threshold && layer.isVisible(chunk: Int(chunk)) {
                    top.insert(ChunkReference(layer: layerNumber, chunk: Int(chunk)), score)
                }
            }
        }
        return top.sorted()
    }

    /// The top `depth` chunks by cosine similarity with the (unit-length) question vector.
    public func semantic(layers: [CanonLayer], query: UnsafeBufferPointer<Float>) -> [(ChunkReference, Float)] {
        var top = TopScores(capacity: self.depth)
        for (layerNumber, layer) in layers.enumerated() {
            guard layer.index.dimensions == query.count else { continue }
            for (chunk, score) in layer.index.nearest(
                query, limit: self.depth, isHidden: { !layer.isVisible(chunk: $0) })
            where score > top.threshold {
                top.insert(ChunkReference(layer: layerNumber, chunk: chunk), score)
            }
        }
        return top.sorted()
    }
}
