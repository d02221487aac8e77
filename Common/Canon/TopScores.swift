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

    /// Scores at or below this cannot enter.
    public var threshold: Float { self.heap.count < self.capacity ? -.infinity : self.heap[0].1 }

    public mutating func insert(_ reference: ChunkReference, _ score: Float) {
        if self.heap.count < self.capacity {
            self.heap.append((reference, score))
            var child = self.heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard self.heap[child].1 < self.heap[parent].1 else { break }
                self.heap.swapAt(child, parent)
                child = parent
            }
        } else if score > self.heap[0].1 {
            self.heap[0] = (reference, score)
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < self.heap.count && self.heap[left].1 < self.heap[smallest].1 { smallest = left }
                if right < self.heap.count && self.heap[right].1 < self.heap[smallest].1 { smallest = right }
                if smallest == parent { break }
                self.heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
    }

    public func sorted() -> [(ChunkReference, Float)] {
        self.heap.sorted {
            $0.1 != $1.1
                ? $0.1 > $1.1
                : ($0.0.layer, $0.0.chunk) < ($1.0.layer, $1.0.chunk)
        }
    }
}
