import Canon
import Foundation
import Retrieval
import Testing

@Suite("chunking, the canon artifact and BM25")
struct CanonIndexTests {
    @Test("display equations, environments and code fences are never split; chunks stay within an entry")
    func chunking() {
        let filler = Array(repeating: "word", count: 100).joined(separator: " ")
        let body = """
            \(filler).

            $$
            a = b

            + c
            $$

            \\begin{align}
            x &= y \\\\

            z &= w
            \\end{align}

            ```
            code

            more code
            ```

            \(filler). Second sentence with $a. b$ inline math. Third.
            """
        let pieces = Chunker(targetWords: 60).split(body).pieces
        #expect(pieces.contains { $0.contains("$$\na = b\n\n+ c\n$$") })
        #expect(pieces.contains { $0.contains("\\begin{align}\nx &= y \\\\\n\nz &= w\n\\end{align}") })
        #expect(pieces.contains { $0.contains("```\ncode\n\nmore code\n```") })
        #expect(pieces.allSatisfy { $0.components(separatedBy: "$$").count % 2 == 1 })
        #expect(Chunker.sentences("One $x. y$ two. Three? Four!") == ["One $x. y$ two.", "Three?", "Four!"])
        let entries = [
            CanonEntry(id: "a", kind: .claim, title: "A", body: body, status: .proven),
            CanonEntry(id: "b", kind: .claim, title: "B", body: "", status: .proven),
        ]
        let chunks = Chunker(targetWords: 60).chunks(of: entries)
        #expect(chunks.last == CanonChunk(entryIndex: 1, text: ""))
        #expect(chunks.dropLast().allSatisfy { $0.entryIndex == 0 })
    }

    @Test("analysis: lower case, folded, stop words out, plurals stemmed")
    func analysis() {
        #expect(
            TextAnalyzer.terms("What are the Generalized Coordinates of Noether's Théorème?")
                == ["generalized", "coordinate", "noether", "theoreme"])
        #expect(TextAnalyzer.terms("\\partial L / \\partial q") == ["partial", "partial"])
    }

    static func tinyIndex() throws -> (CanonIndex, [UInt8]) {
        let entries = [
            CanonEntry(
                id: "e1", kind: .definition, title: "Pendulum", body: "A mass on a rod swings.", status: .proven),
            CanonEntry(
                id: "e2", kind: .claim, title: "Spring", body: "Hooke's law: force is linear.", status: .modeled),
        ]
        let chunks = Chunker().chunks(of: entries)
        var embeddings: [Float] = []
        for index in chunks.indices {
            var vector = [Float](repeating: 0, count: 4)
            vector[index % 4] = 1
            embeddings += vector
        }
        let bytes = CanonIndexWriter.artifact(
            label: "t-v1", entries: entries, chunks: chunks, embeddings: embeddings, dimensions: 4)
        return (try CanonIndex(bytes: ArtifactBytes(copying: bytes)), bytes)
    }

    @Test("an artifact reads back: entries, chunk texts, postings, vectors")
    func roundTrip() throws {
        let (index, _) = try Self.tinyIndex()
        #expect(index.label == "t-v1")
        #expect(index.entries.map(\.id) == ["e1", "e2"])
        #expect(index.entries[1].status == .modeled && index.entries[1].kind == .claim)
        #expect(index.chunkText == ["A mass on a rod swings.", "Hooke's law: force is linear."])
        #expect(index.documentFrequency(of: "pendulum") == 1 && index.documentFrequency(of: "swing") == 1)
        let query: [Float] = [0, 1, 0, 0]
        query.withUnsafeBufferPointer { query in
            #expect(abs(index.similarity(query, chunk: 1) - 1) < 0.01)
            #expect(abs(index.similarity(query, chunk: 0)) < 0.01)
        }
        let hits = HybridRetriever().lexical(layers: [CanonLayer(index: index)], terms: ["hooke"])
        #expect(hits.map(\.0.chunk) == [1])
    }

    @Test("a damaged artifact is refused with a reason, never read out of bounds")
    func damaged() throws {
        let (_, bytes) = try Self.tinyIndex()
        for cut in [0, 3, 10, 40, bytes.count / 2, bytes.count - 1] {
            #expect(throws: CanonIndexError.self) {
                try CanonIndex(bytes: ArtifactBytes(copying: Array(bytes.prefix(cut))))
            }
        }
        var wrongFormat = bytes
        wrongFormat[4] = 9
        #expect(throws: CanonIndexError.malformed("artifact format 9; this build reads formats 1 and 2")) {
            try CanonIndex(bytes: ArtifactBytes(copying: wrongFormat))
        }
        // Postings must run in ascending chunk order (the BM25 walk relies on it): swapped, refused.
        let shared = [
            CanonEntry(id: "a", kind: .definition, title: "A", body: "Pendulums swing.", status: .proven),
            CanonEntry(id: "b", kind: .definition, title: "B", body: "Doors swing.", status: .proven),
        ]
        var ordered = CanonIndexWriter.artifact(
            label: "t", entries: shared, chunks: Chunker().chunks(of: shared),
            embeddings: [Float](repeating: 1, count: 8),
            dimensions: 4)
        let table = 32 + 2 + "t".utf8.count
        let postingsAt = (0..<8).reduce(0) { $0 | Int(ordered[table + 3 * 8 + $1]) << (8 * $1) }
        // Terms sorted: door [1], pendulum [0], swing [0, 1]; swing's two postings swap to [1, 0].
        let swing = postingsAt + 2 * 4
        #expect(Array(ordered[swing..<(swing + 8)]) == [0, 0, 0, 0, 1, 0, 0, 0])
        _ = try CanonIndex(bytes: ArtifactBytes(copying: ordered))
        var zeroCount = ordered
        ordered.replaceSubrange(swing..<(swing + 8), with: [1, 0, 0, 0, 0, 0, 0, 0])
        #expect(throws: CanonIndexError.malformed("term swing: postings out of order or range at chunk 0")) {
            try CanonIndex(bytes: ArtifactBytes(copying: ordered))
        }
        // Each posting holds its term at least once: a count of 0 is refused.
        let countsAt = (0..<8).reduce(0) { $0 | Int(zeroCount[table + 4 * 8 + $1]) << (8 * $1) }
        let swingCounts = countsAt + 2 * 2
        #expect(Array(zeroCount[swingCounts..<(swingCounts + 4)]) == [1, 0, 1, 0])
        zeroCount.replaceSubrange((swingCounts + 2)..<(swingCounts + 4), with: [0, 0])
        #expect(throws: CanonIndexError.malformed("term swing: postings out of order or range at chunk 1")) {
            try CanonIndex(bytes: ArtifactBytes(copying: zeroCount))
        }
        // Flip every byte of the header and entry sections in turn: each either reads or is refused.
        for position in 0..<min(bytes.count, 400) {
            var damaged = bytes
            damaged[position] ^= 0xFF
            _ = try? CanonIndex(bytes: ArtifactBytes(copying: damaged))
        }
    }
}
