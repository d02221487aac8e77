/// Ranking helpers shared by the index's own searches and hybrid retrieval.

/// A reference to one chunk of one layer.
public struct ChunkReference: Sendable, Hashable {
    public var layer: Int
    public var chunk: Int

    public init(layer: Int, chunk: Int) {
        self.layer = layer
        self.chunk = chunk
    }
}

/// The best `capacity` scores seen, kept in a min-heap.
public struct TopScores {
    let capacity: Int
    private var heap: [(ChunkReference, Float)] = []

    public init(capacity: Int) {
        self.capacity = max(capacity, 1)
        self.heap.reserveCapacity(self.capacity)
    }

    /// Scores below this cannot enter, nor an equal one of a later layer or chunk than the
    /// lowest kept (callers that offer references in ascending order skip equal scores).
    public var threshold: Float { self.heap.count < self.capacity ? -.infinity : self.heap[0].1 }

    public mutating func insert(_ reference: ChunkReference, _ score: Float) {
        if self.heap.count < self.capacity {
            self.heap.append((reference, score))
            var child = self.heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard Self.worse(self.heap[child], than: self.heap[parent]) else { break }
                self.heap.swapAt(child, parent)
                child = parent
            }
        } else if Self.worse(self.heap[0], than: (reference, score)) {
            self.heap[0] = (reference, score)
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < self.heap.count && Self.worse(self.heap[left], than: self.heap[smallest]) { smallest = left }
                if right < self.heap.count && Self.worse(self.heap[right], than: self.heap[smallest]) {
                    smallest = right
                }
                if smallest == parent { break }
                self.heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
    }

    /// A lower score is worse; among equal scores the later layer and chunk is, so which of
    /// several equal scores stay does not depend on the order they came in.
    @inline(__always) static func worse(_ one: (ChunkReference, Float), than other: (ChunkReference, Float)) -> Bool {
        one.1 != other.1 ? one.1 < other.1 : (one.0.layer, one.0.chunk) > (other.0.layer, other.0.chunk)
    }

    public func sorted() -> [(ChunkReference, Float)] {
        self.heap.sorted {
            $0.1 != $1.1
                ? $0.1 > $1.1
                : ($0.0.layer, $0.0.chunk) < ($1.0.layer, $1.0.chunk)
        }
    }
}
