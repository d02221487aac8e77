import Canon
import Embeddings
import Foundation
import Retrieval
import TestSupport
import Testing

@testable import DataPlane

@Suite("hybrid retrieval and the extractive answerer over the demo canon")
struct RetrievalTests {
    let retriever = HybridRetriever()
    let answerer = ExtractiveAnswerer()

    @Test("recall@5 of the evaluation questions' expected entries is at least 0.9")
    func recall() async throws {
        let index = try await DemoIndex.built.value
        let layers = [CanonLayer(index: index)]
        var found = 0
        var expected = 0
        var misses: [String] = []
        for question in DemoIndex.questions {
            let result = self.retriever.retrieve(
                layers: layers, question: question.question, vector: DemoIndex.vector(question.question), limit: 5)
            let ids = Set(result.entries.map(\.entry.id))
            for id in question.expected {
                expected += 1
                if ids.contains(id) { found += 1 } else { misses.append("\(question.question) → \(id)") }
            }
        }
        let recall = Double(found) / Double(expected)
        #expect(recall >= 0.9, "recall@5 \(recall); missed: \(misses)")
    }

    @Test("every evaluation question is answered, citing only retrieved entries, with in-range numbers")
    func answersCiteWhatWasRetrieved() async throws {
        let index = try await DemoIndex.built.value
        let layers = [CanonLayer(index: index)]
        for question in DemoIndex.questions {
            let retrieval = self.retriever.retrieve(
                layers: layers, question: question.question, vector: DemoIndex.vector(question.question), limit: 5)
            let answer = self.answerer.answer(
                question: question.question, retrieval: retrieval, layers: layers, maxCitations: 5)
            #expect(answer.covered, "\(question.question)")
            let retrievedIDs = Set(retrieval.entries.map(\.entry.id))
            #expect(answer.citations.allSatisfy { retrievedIDs.contains($0.id) })
            #expect(!answer.citations.isEmpty && answer.citations.count <= 5)
            let markers = Self.markers(answer.text)
            #expect(!markers.isEmpty, "\(answer.text)")
            #expect(markers.allSatisfy { (1...answer.citations.count).contains($0) }, "\(answer.text)")
            #expect((0...1).contains(answer.confidence))
            // Every sentence comes from a cited entry's text.
            for citation in answer.citations {
                #expect(citation.canonVersion == "base-v1")
                #expect(!citation.snippet.isEmpty && (0...1).contains(citation.score))
            }
        }
    }

    @Test(
        "the answerer's kept sentences change nothing: every evaluation answer is the same from a cold and a warm cache"
    )
    func keptSentences() async throws {
        let index = try await DemoIndex.built.value
        let layers = [CanonLayer(index: index)]
        let warm = ExtractiveAnswerer()
        let small = ChunkSentences(capacity: 2)
        for question in DemoIndex.questions {
            let retrieval = self.retriever.retrieve(
                layers: layers, question: question.question, vector: DemoIndex.vector(question.question), limit: 5)
            func ask(_ answerer: ExtractiveAnswerer) -> ExtractiveAnswer {
                answerer.answer(question: question.question, retrieval: retrieval, layers: layers, maxCitations: 5)
            }
            let cold = ask(ExtractiveAnswerer())
            _ = ask(warm)
            #expect(ask(warm) == cold, "\(question.question)")
        }
        #expect(warm.sentenceCache.count > 0)
        // A cache of two chunks is emptied again and again, stays within its bound, and still
        // gives each chunk's own sentences.
        for chunk in 0..<index.chunkCount {
            let sentences = small.sentences(of: chunk, in: index)
            #expect(sentences.map(\.text) == ExtractiveAnswerer.sentences(of: index.chunkText[chunk]))
            #expect(small.count <= 2)
        }
    }

    @Test("a question the canon does not cover: said so, no citations, low confidence")
    func notCovered() async throws {
        let index = try await DemoIndex.built.value
        let layers = [CanonLayer(index: index)]
        for question in [
            "What is the best recipe for sourdough bread?", "Who won the football world cup in 1998?",
            "How do I reset my router password?",
        ] {
            let retrieval = self.retriever.retrieve(
                layers: layers, question: question, vector: DemoIndex.vector(question), limit: 5)
            let answer = self.answerer.answer(question: question, retrieval: retrieval, layers: layers, maxCitations: 5)
            #expect(!answer.covered, "\(question): \(retrieval.entries.map { ($0.entry.id, $0.similarity) })")
            #expect(answer.citations.isEmpty)
            #expect(answer.text == ExtractiveAnswerer.notCovered)
            #expect(answer.confidence <= 0.1)
        }
    }

    @Test("a conjecture is marked as one in the answer")
    func conjectureIsMarked() async throws {
        let index = try await DemoIndex.built.value
        let layers = [CanonLayer(index: index)]
        let question = "Is there a single unified Lagrangian from which all of physics follows?"
        let retrieval = self.retriever.retrieve(
            layers: layers, question: question, vector: DemoIndex.vector(question), limit: 5)
        let answer = self.answerer.answer(question: question, retrieval: retrieval, layers: layers, maxCitations: 5)
        let number = try #require(answer.citations.firstIndex { $0.id == "claim.unified-lagrangian" }) + 1
        #expect(answer.citations[number - 1].status == .conjectural)
        let paragraph = try #require(answer.text.components(separatedBy: "\n\n").first { $0.contains("[\(number)]") })
        #expect(paragraph.hasPrefix(ExtractiveAnswerer.statusPrefix(.conjectural)), "\(answer.text)")
    }

    @Test("an overlay replaces a base entry and adds its own; the replaced base entry is never returned")
    func overlay() async throws {
        let base = try await DemoIndex.built.value
        let replaced = try #require(DemoIndex.entries.first { $0.id == "def.lagrangian" })
        var mine = replaced
        mine.body =
            "In our group's notes the Lagrangian of a system is written with the potential first, V - T, sign flipped."
        let added = CanonEntry(
            id: "lab.cryostat", kind: .experiment, title: "Cryostat calibration run",
            body: "The cryostat calibration run measured the helium boil-off rate at 4 kelvin.", status: .narrative)
        let embedder = BatchingEmbedder(model: DemoIndex.model, threads: 1)
        defer { embedder.shutdown() }
        let overlay = try CanonIndex(
            bytes: ArtifactBytes(
                copying: try await CanonIndexer().artifact(
                    label: "acme-v1", entries: [mine, added], embedder: embedder)))
        let layers = CanonLayer.stack(base: base, overlay: overlay, deletedFromBase: ["def.action"])
        for question in ["How is the Lagrangian defined?", "What is the action functional?"] {
            let result = self.retriever.retrieve(
                layers: layers, question: question, vector: DemoIndex.vector(question), limit: 10)
            let lagrangians = result.entries.filter { $0.entry.id == "def.lagrangian" }
            #expect(lagrangians.allSatisfy { $0.canonVersion == "acme-v1" })
            #expect(!result.entries.contains { $0.entry.id == "def.action" })
        }
        let question = "What was the helium boil-off rate of the cryostat?"
        let result = self.retriever.retrieve(
            layers: layers, question: question, vector: DemoIndex.vector(question), limit: 5)
        #expect(result.entries.first?.entry.id == "lab.cryostat")
        #expect(result.entries.first?.canonVersion == "acme-v1")
        // Without the overlay (another tenant), its entry does not exist.
        let plain = self.retriever.retrieve(
            layers: [CanonLayer(index: base)], question: question, vector: DemoIndex.vector(question), limit: 20)
        #expect(!plain.entries.contains { $0.entry.id == "lab.cryostat" })
    }

    /// Counts what reaches the model.
    final class CountingEmbedder: Embedder, @unchecked Sendable {
        let inner: BatchingEmbedder
        let lock = NSLock()
        var texts: [String] = []
        var dimension: Int { self.inner.dimension }

        init(_ inner: BatchingEmbedder) { self.inner = inner }

        func embed(_ texts: [String]) async throws -> [[Float]] {
            self.lock.withLock { self.texts += texts }
            return try await self.inner.embed(texts)
        }
    }

    @Test("a rebuild embeds only chunks whose text changed; the others keep their exact 8-bit vectors")
    func rebuildReusesEmbeddings() async throws {
        let previous = try await DemoIndex.built.value
        var entries = DemoIndex.entries
        entries[3].body += " One more sentence about it."
        entries.append(
            CanonEntry(id: "new.one", kind: .claim, title: "A new claim", body: "Brand new text.", status: .modeled))
        let embedder = BatchingEmbedder(model: DemoIndex.model, threads: 1)
        defer { embedder.shutdown() }
        let counting = CountingEmbedder(embedder)
        let rebuilt = try CanonIndex(
            bytes: ArtifactBytes(
                copying: try await CanonIndexer().artifact(
                    label: "base-v2", entries: entries, embedder: counting, reusing: previous)))
        #expect(counting.texts.count == 2, "\(counting.texts)")
        #expect(counting.texts.contains { $0.hasPrefix("A new claim") })
        #expect(rebuilt.chunkCount == previous.chunkCount + 1)
        for chunk in 0..<previous.chunkCount where chunk != 3 {
            let old = previous.vector(chunk: chunk)
            let new = rebuilt.vector(chunk: chunk)
            let difference = zip(old, new).map { abs($0 - $1) }.max() ?? 1
            #expect(difference < 1e-6, "chunk \(chunk)")
        }
    }

    static func markers(_ text: String) -> [Int] {
        var numbers: [Int] = []
        var scanner = text[...]
        while let open = scanner.firstIndex(of: "[") {
            scanner = scanner[scanner.index(after: open)...]
            guard let close = scanner.firstIndex(of: "]") else { break }
            if let number = Int(scanner[..<close]) { numbers.append(number) }
            scanner = scanner[scanner.index(after: close)...]
        }
        return numbers
    }
}
