import Embeddings
import Foundation

/// Builds the artifact of a canon version: chunks every entry, embeds the chunks (title and text
/// together) with the in-process embedder, and writes the index.
public struct CanonIndexer: Sendable {
    public struct Progress: Sendable, Equatable {
        public var embeddedChunks: Int
        public var totalChunks: Int
    }

    public var chunker: Chunker
    /// Chunks handed to the embedder at once; `concurrency` such batches are in flight, so every
    /// embedder thread has work.
    public var batchSize: Int
    public var concurrency: Int

    public init(chunker: Chunker = Chunker(), batchSize: Int = 32, concurrency: Int = 2) {
        self.chunker = chunker
        self.batchSize = batchSize
        self.concurrency = concurrency
    }

    /// The text embedded for a chunk.
    public static func embeddingText(title: String, chunk: String) -> String {
        chunk.isEmpty ? title : title + "\n" + chunk
    }

    /// - Parameter reusing: an earlier artifact (the parent version's): a chunk whose embedded text
    ///   is the same there takes its vector from it instead of the model. The stored 8-bit vector,
    ///   scaled back, quantises to the same 8-bit values again.
    public func artifact(
        label: String, entries: [CanonEntry], embedder: any Embedder, reusing previous: CanonIndex? = nil,
        progress: @Sendable (Progress) async -> Void = { _ in }
    ) async throws -> [UInt8] {
        let chunks = self.chunker.chunks(of: entries)
        let texts = chunks.map { Self.embeddingText(title: entries[$0.entryIndex].title, chunk: $0.text) }
        let dimensions = embedder.dimension
        var embeddings = [Float](repeating: 0, count: chunks.count * dimensions)
        // Injected chunks are never searched: their vector stays zero.
        var pending = texts.indices.filter { !chunks[$0].injected }
        if let previous, previous.dimensions == dimensions {
            var known: [String: Int] = [:]
            for chunk in 0..<previous.chunkCount {
                let title = previous.entries[Int(previous.chunkEntry[chunk])].title
                known[Self.embeddingText(title: title, chunk: previous.chunkText[chunk])] = chunk
            }
            pending.removeAll { index in
                guard let chunk = known[texts[index]] else { return false }
                embeddings.replaceSubrange(
                    (index * dimensions)..<((index + 1) * dimensions), with: previous.vector(chunk: chunk))
                return true
            }
        }
        // In the chunks' order: a forward pass does not pad, so sorting by length would gain nothing.
        let batches = stride(from: 0, to: pending.count, by: self.batchSize).map {
            Array(pending[$0..<min($0 + self.batchSize, pending.count)])
        }
        var done = chunks.count - pending.count
        await progress(Progress(embeddedChunks: done, totalChunks: chunks.count))
        try await withThrowingTaskGroup(of: ([Int], [[Float]]).self) { group in
            var next = 0
            func submit() {
                guard next < batches.count else { return }
                let batch = batches[next]
                next += 1
                group.addTask { (batch, try await embedder.embed(batch.map { texts[$0] })) }
            }
            for _ in 0..<max(1, self.concurrency) { submit() }
            while let (batch, vectors) = try await group.next() {
                for (chunk, vector) in zip(batch, vectors) {
                    guard vector.count == dimensions else { throw CanonIndexerError.embeddingDimension(vector.count) }
                    embeddings.replaceSubrange((chunk * dimensions)..<((chunk + 1) * dimensions), with: vector)
                }
                done += batch.count
                await progress(Progress(embeddedChunks: done, totalChunks: chunks.count))
                try Task.checkCancellation()
                submit()
            }
        }
        return CanonIndexWriter.artifact(
            label: label, entries: entries, chunks: chunks, embeddings: embeddings, dimensions: dimensions)
    }
}

public enum CanonIndexerError: Error, Equatable {
    case embeddingDimension(Int)
}
