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
    /// When each question's answer expires (milliseconds since 1970; `Int64.max`: never).
    private var expiries: [Int64] = []
    private var positions: [String: Int] = [:]
    /// Questions removed but still taking space until `compact`.
    public private(set) var deadCount = 0
    /// Every question before this position is dead (where the next eviction starts looking).
    private var evictionCursor = 0

    public init(dimensions: Int) {
        precondition(dimensions % 64 == 0, "sketches are whole 64-bit words")
        self.dimensions = dimensions
    }

    /// Questions held (removed ones included until `compact`).
    public var count: Int { self.ids.count }

    /// Questions that can still be returned (expiry aside).
    public var liveCount: Int { self.ids.count - self.deadCount }

    /// Bytes held by the vectors, sketches, ids and questions.
    public var byteCount: Int {
        self.vectors.count + self.scales.count * 4 + self.sketches.count * 8 + self.live.count
            + self.expiries.count * 8
            + self.ids.reduce(0) { $0 + $1.utf8.count + 16 } + self.questions.reduce(0) { $0 + $1.utf8.count + 16 }
    }

    /// Bytes the fixed-size arrays have reserved (their capacity, used or not): what the index
    /// costs in memory beyond the strings.
    public var reservedBytes: Int {
        self.vectors.capacity + self.scales.capacity * 4 + self.sketches.capacity * 8 + self.live.capacity
            + self.expiries.capacity * 8 + (self.ids.capacity + self.questions.capacity) * 16
    }

    /// Adds a question by its unit-length embedding; a question already held is replaced.
    public mutating func add(id: String, question: String, vector: [Float], expiresAt: Int64 = .max) {
        precondition(vector.count == self.dimensions)
        let (quantised, scale) = Self.quantise(vector)
        self.add(id: id, question: question, quantised: quantised, scale: scale, expiresAt: expiresAt)
    }

    /// Adds a question by its embedding as `quantise` gives it. A question held and live is
    /// replaced where it stands; one removed comes back as the newest.
    public mutating func add(id: String, question: String, quantised: [Int8], scale: Float, expiresAt: Int64 = .max) {
        precondition(quantised.count == self.dimensions)
        if let position = self.positions[id], self.live[position] {
            self.expiries[position] = expiresAt
            let base = position * self.dimensions
            self.vectors.replaceSubrange(base..<(base + self.dimensions), with: quantised)
            self.scales[position] = scale
            let words = self.dimensions / 64
            self.sketches.replaceSubrange(
                position * words..<(position + 1) * words, with: Self.sketch(quantised))
            self.questions[position] = question
            return
        }
        // A removed entry stays dead where it is (so everything before `evictionCursor` stays
        // dead) until `compact` reclaims it.
        self.positions[id] = self.ids.count
        self.vectors.append(contentsOf: quantised)
        self.scales.append(scale)
        self.sketches.append(contentsOf: Self.sketch(quantised))
        self.ids.append(id)
        self.questions.append(question)
        self.live.append(true)
        self.expiries.append(expiresAt)
    }

    /// Forgets a question (its answer expired): it is never returned again.
    public mutating func remove(id: String) {
        if let position = self.positions[id], self.live[position] {
            self.live[position] = false
            self.deadCount += 1
        }
    }

    /// Marks questions expired at `now` (ms since 1970) as removed; how many.
    @discardableResult
    public mutating func expire(now: Int64) -> Int {
        var expired = 0
        for index in self.ids.indices where self.live[index] && self.expiries[index] <= now {
            self.live[index] = false
            expired += 1
        }
        self.deadCount += expired
        return expired
    }

    /// Removes the oldest questions until at most `keeping` remain; how many went.
    @discardableResult
    public mutating func evictOldest(keeping: Int) -> Int {
        var excess = self.liveCount - keeping
        guard excess > 0 else { return 0 }
        let evicted = excess
        var index = self.evictionCursor
        while excess > 0 {
            if self.live[index] {
                self.live[index] = false
                excess -= 1
            }
            index += 1
        }
        self.evictionCursor = index
        self.deadCount += evicted
        return evicted
    }

    /// Frees the space of removed questions: live ones move down over them, in place, and the
    /// arrays keep their capacity (so a scope at its cap churns without allocating).
    public mutating func compact() {
        guard self.deadCount > 0 else { return }
        let dimensions = self.dimensions
        let words = dimensions / 64
        var kept = 0
        for index in self.ids.indices {
            guard self.live[index] else {
                if self.positions[self.ids[index]] == index { self.positions[self.ids[index]] = nil }
                continue
            }
            if kept != index {
                self.positions[self.ids[index]] = kept
                self.ids.swapAt(kept, index)
                self.questions.swapAt(kept, index)
                self.scales[kept] = self.scales[index]
                self.expiries[kept] = self.expiries[index]
                self.live[kept] = true
                Self.move(&self.vectors, from: index * dimensions, to: kept * dimensions, count: dimensions)
                Self.move(&self.sketches, from: index * words, to: kept * words, count: words)
            }
            kept += 1
        }
        self.ids.removeSubrange(kept...)
        self.questions.removeSubrange(kept...)
        self.scales.removeSubrange(kept...)
        self.expiries.removeSubrange(kept...)
        self.live.removeSubrange(kept...)
        self.vectors.removeSubrange((kept * dimensions)...)
        self.sketches.removeSubrange((kept * words)...)
        self.deadCount = 0
        self.evictionCursor = 0
    }

    private static func move<Element>(_ array: inout [Element], from source: Int, to target: Int, count: Int) {
        array.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            (base + target).update(from: base + source, count: count)
        }
    }

    /// The questions nearest to a unit-length query, best first, with their cosine similarity.
    public func nearest(_ query: [Float], limit: Int = 4, candidates: Int = 64, now: Int64 = .min) -> [(
        index: Int, similarity: Float
    )] {
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
        let isLive = { (index: Int) in self.live[index] && self.expiries[index] > now }
        for index in 0..<count where isLive(index) { histogram[Int(distances[index])] += 1 }
        var cutoff = 0
        var taken = 0
        while cutoff < histogram.count {
            taken += histogram[cutoff]
            if taken >= candidates { break }
            cutoff += 1
        }
        var chosen: [UInt32] = []
        chosen.reserveCapacity(min(count, candidates * 2))
        for index in 0..<count where isLive(index) && Int(distances[index]) <= cutoff {
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
