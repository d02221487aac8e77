import Foundation

/// Writes the artifact that `CanonIndex` reads: entries in the order given, their chunks, BM25
/// postings and the chunk embeddings quantised to 8 bits with one scale per chunk. Injected chunks
/// have no postings and a zero vector: nothing finds them.
public enum CanonIndexWriter {
    /// - Parameters:
    ///   - chunks: from `Chunker`, grouped by entry in entry order.
    ///   - embeddings: one unit-length vector of `dimensions` per chunk, concatenated.
    ///   - format: 1 writes the layout before chunk flags (to test that it is still read).
    public static func artifact(
        label: String, entries: [CanonEntry], chunks: [CanonChunk], embeddings: [Float], dimensions: Int,
        format: UInt16 = CanonIndex.formatVersion
    ) -> [UInt8] {
        precondition(embeddings.count == chunks.count * dimensions, "one embedding per chunk")
        precondition(zip(chunks, chunks.dropFirst()).allSatisfy { $0.entryIndex <= $1.entryIndex }, "chunks in order")

        var chunkRanges = [Range<Int>](repeating: 0..<0, count: entries.count)
        var start = 0
        while start < chunks.count {
            var end = start
            while end < chunks.count && chunks[end].entryIndex == chunks[start].entryIndex { end += 1 }
            chunkRanges[chunks[start].entryIndex] = start..<end
            start = end
        }

        // Terms: the title counts in every chunk of its entry.
        var postings: [String: [(chunk: UInt32, count: UInt16)]] = [:]
        var lengths: [UInt16] = []
        var totalTerms: UInt64 = 0
        lengths.reserveCapacity(chunks.count)
        for (index, chunk) in chunks.enumerated() where chunk.injected {
            precondition(embeddings[(index * dimensions)..<((index + 1) * dimensions)].allSatisfy { $0 == 0 })
        }
        for (index, chunk) in chunks.enumerated() {
            guard !chunk.injected else {
                lengths.append(0)
                continue
            }
            var counts: [String: Int] = [:]
            var length = 0
            TextAnalyzer.forEachTerm(in: entries[chunk.entryIndex].title) {
                counts[$0, default: 0] += 1
                length += 1
            }
            TextAnalyzer.forEachTerm(in: chunk.text) {
                counts[$0, default: 0] += 1
                length += 1
            }
            for (term, count) in counts where term.utf8.count <= Int(UInt16.max) {
                postings[term, default: []].append((UInt32(index), UInt16(clamping: count)))
            }
            lengths.append(UInt16(clamping: length))
            totalTerms += UInt64(length)
        }
        let terms = postings.keys.sorted()
        let postingCount = postings.values.reduce(0) { $0 + $1.count }

        var writer = ArtifactWriter()
        writer.bytes(Array("ZCAN".utf8))
        writer.integer(format)
        writer.integer(UInt16(dimensions))
        writer.integer(UInt32(entries.count))
        writer.integer(UInt32(chunks.count))
        writer.integer(UInt32(terms.count))
        writer.integer(UInt32(postingCount))
        writer.integer(totalTerms)
        writer.string16(label)
        let offsetTable = writer.count
        for _ in 0..<7 { writer.integer(UInt64(0)) }
        var offsets: [Int] = []

        writer.align()
        offsets.append(writer.count)
        for (index, entry) in entries.enumerated() {
            writer.string16(entry.id)
            writer.string16(entry.title)
            writer.integer(UInt8(CanonEntry.Kind.allCases.firstIndex(of: entry.kind)!))
            writer.integer(UInt8(CanonEntry.Status.allCases.firstIndex(of: entry.status)!))
            writer.integer(UInt32(chunkRanges[index].lowerBound))
            writer.integer(UInt32(chunkRanges[index].count))
        }

        writer.align()
        offsets.append(writer.count)
        for (index, chunk) in chunks.enumerated() {
            writer.integer(UInt32(chunk.entryIndex))
            writer.integer(lengths[index])
            if format >= 2 { writer.integer(chunk.injected ? CanonIndex.ChunkFlags.injected : 0) }
            let text = Array(chunk.text.utf8)
            writer.integer(UInt32(text.count))
            writer.bytes(text)
        }

        writer.align()
        offsets.append(writer.count)
        var next = 0
        for term in terms {
            writer.string16(term)
            writer.integer(UInt32(next))
            writer.integer(UInt32(postings[term]!.count))
            next += postings[term]!.count
        }

        writer.align()
        offsets.append(writer.count)
        for term in terms { for posting in postings[term]! { writer.integer(posting.chunk) } }
        writer.align()
        offsets.append(writer.count)
        for term in terms { for posting in postings[term]! { writer.integer(posting.count) } }

        writer.align()
        offsets.append(writer.count)
        var scales: [Float] = []
        scales.reserveCapacity(chunks.count)
        for chunk in 0..<chunks.count {
            let vector = embeddings[(chunk * dimensions)..<((chunk + 1) * dimensions)]
            let largest = vector.reduce(Float(0)) { max($0, abs($1)) }
            let scale = largest > 0 ? largest / 127 : 1
            for value in vector {
                writer.integer(UInt8(bitPattern: Int8((value / scale).rounded().clamped(to: -127...127))))
            }
            scales.append(scale)
        }
        writer.align()
        offsets.append(writer.count)
        for scale in scales { writer.integer(scale.bitPattern) }

        for (index, offset) in offsets.enumerated() {
            writer.set(UInt64(offset), at: offsetTable + index * 8)
        }
        return writer.buffer
    }
}

extension Comparable {
    func clamped(to range: ClosedRange<Self>) -> Self {
        min(max(self, range.lowerBound), range.upperBound)
    }
}

struct ArtifactWriter {
    var buffer: [UInt8] = []
    var count: Int { self.buffer.count }

    mutating func bytes(_ bytes: [UInt8]) { self.buffer.append(contentsOf: bytes) }

    mutating func integer<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { self.buffer.append(contentsOf: $0) }
    }

    mutating func string16(_ text: String) {
        let bytes = Array(text.utf8.prefix(Int(UInt16.max)))
        self.integer(UInt16(bytes.count))
        self.bytes(bytes)
    }

    mutating func align() {
        while self.buffer.count % 8 != 0 { self.buffer.append(0) }
    }

    mutating func set(_ value: UInt64, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { bytes in
            for (index, byte) in bytes.enumerated() { self.buffer[offset + index] = byte }
        }
    }
}
