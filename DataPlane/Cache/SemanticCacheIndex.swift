import CKernels
import Canon
import Foundation

/// The cached questions of one semantic-cache scope (tenant, canon versions, model class,
/// max_citations), searchable by embedding.
///
/// Each question is kept as an 8-bit vector with its scale and a sign-bit sketch (one bit per
/// dimension). A lookup compares the query's sketch with every sketch (Hamming distance, a few
/// popcounts each), keeps the nearest `candidates`, and scores those exactly on the 8-bit vectors.
/// Questions as similar as the cache needs (cosine ≥ 0.9) differ in far fewer sign bits (about
/// 14 % of them at 0.9, 10 % at 0.95) than unrelated ones (about 50 %), so the pre-selection
/// does not lose them.
public struct SemanticCacheIndex: Sendable {
    public let dimensions: Int
    private var vectors: [Int8] = []
    private var scales: [Float] = []
    private var sketches: [UInt64] = []
    /// Each question's exact-cache digest, and the normalised question itself (for the guard).
    public private(set) var ids: [String] = []
    public private(set) var questions: [String] = []
    private var live: [Bool] = []
    private var positions: [String: Int] = [:]

    public init(dimensions: Int) {
        precondition(dimensions % 64 == 0, "sketches are whole 64-bit words")
        self.dimensions = dimensions
    }

    /// Questions held (removed ones included until `compacted()`).
    public var count: Int { self.ids.count }

    /// Bytes held by the vectors, sketches, ids and questions.
    public var byteCount: Int {
        self.vectors.count + self.scales.count * 4 + self.sketches.count * 8 + self.live.count
            + self.ids.reduce(0) { $0 + $1.utf8.count + 16 } + self.questions.reduce(0) { $0 + $1.utf8.count + 16 }
    }

    /// Adds a question by its unit-length embedding; a question already held is replaced.
    public mutating func add(id: String, question: String, vector: [Float]) {
        precondition(vector.count == self.dimensions)
        let (quantised, scale) = Self.quantise(vector)
        self.add(id: id, question: question, quantised: quantised, scale: scale)
    }

    /// Adds a question by its embedding as `quantise` gives it.
    public mutating func add(id: String, question: String, quantised: [Int8], scale: Float) {
        precondition(quantised.count == self.dimensions)
        if let position = self.positions[id] {
            let base = position * self.dimensions
            self.vectors.replaceSubrange(base..<(base + self.dimensions), with: quantised)
            self.scales[position] = scale
            let words = self.dimensions / 64
            self.sketches.replaceSubrange(
                position * words..<(position + 1) * words, with: Self.sketch(quantised))
            self.questions[position] = question
            self.live[position] = true
            return
        }
        self.positions[id] = self.ids.count
        self.vectors.append(contentsOf: quantised)
        self.scales.append(scale)
        self.sketches.append(contentsOf: Self.sketch(quantised))
        self.ids.append(id)
        self.questions.append(question)
        self.live.append(true)
    }

    /// Forgets a question (its answer expired): it is never returned again.
    public mutating func remove(id: String) {
        if let position = self.positions[id] { self.live[position] = false }
    }

    /// The questions nearest to a unit-length query, best first, with their cosine similarity.
    public func nearest(_ query: [Float], limit: Int = 4, candidates: Int = 64) -> [(index: Int, similarity: Float)] {
        precondition(query.count == self.dimensions)
        let count = self.ids.count
        guard count > 0, limit > 0 else { return [] }
        let (quantised, scale) = Self.quantise(query)
        let sketch = Self.sketch(quantised)
        let words = self.dimensions / 64
        var distances = [UInt16](repeating: 0, count: count)
        self.sketches.withUnsafeBufferPointer { sketches in
            sketch.withUnsafeBufferPointer { query in
                distances.withUnsafeMutableBufferPointer { out in
                    zaas_hamming(sketches.baseAddress, count, words, query.baseAddress, out.baseAddress)
                }
            }
        }
        // The `candidates` smallest distances among live questions: a histogram of distances
        // gives the cut-off in one pass, a second pass collects.
        var histogram = [Int](repeating: 0, count: self.dimensions + 1)
        for index in 0..<count where self.live[index] { histogram[Int(distances[index])] += 1 }
        var cutoff = 0
        var taken = 0
        while cutoff < histogram.count {
            taken += histogram[cutoff]
            if taken >= candidates { break }
            cutoff += 1
        }
        var chosen: [UInt32] = []
        chosen.reserveCapacity(min(count, candidates * 2))
        for index in 0..<count where self.live[index] && Int(distances[index]) <= cutoff {
            chosen.append(UInt32(index))
        }
        var scores = [Float](repeating: 0, count: chosen.count)
        self.vectors.withUnsafeBufferPointer { vectors in
            self.scales.withUnsafeBufferPointer { scales in
                quantised.withUnsafeBufferPointer { query in
                    chosen.withUnsafeBufferPointer { ids in
                        scores.withUnsafeMutableBufferPointer { out in
                            zaas_i8_scores_of(
                                vectors.baseAddress, scales.baseAddress, ids.baseAddress, ids.count, self.dimensions,
                                query.baseAddress, scale, out.baseAddress)
                        }
                    }
                }
            }
        }
        return zip(chosen, scores).sorted { $0.1 > $1.1 }.prefix(limit).map { (Int($0.0), $0.1) }
    }

    /// 8-bit values and their scale, as the canon index quantises.
    public static func quantise(_ vector: [Float]) -> ([Int8], Float) { CanonIndex.quantise(vector) }

    static func sketch(_ quantised: [Int8]) -> [UInt64] {
        quantised.withUnsafeBufferPointer { CanonIndex.signBits($0, count: 1, dimensions: quantised.count) }
    }
}
