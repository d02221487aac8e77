import Embeddings
import Foundation
import TestSupport
import Testing

/// The reference: sentences with the tokens and embeddings sentence-transformers produced
/// (Tests/Fixtures/minilm-reference.json, from the shared fixtures).
struct Reference: Decodable {
    struct Item: Decodable {
        let text: String
        let tokens: [String]
        let embedding: [Float]
    }
    let items: [Item]

    static let shared: Reference = {
        let data = try! Data(contentsOf: TestEnvironment.fixture("minilm-reference.json"))
        return try! JSONDecoder().decode(Reference.self, from: data)
    }()
}

/// Loaded once for the suite: 90 MB of weights.
let sharedModel: SentenceModel = {
    do { return try SentenceModel(directory: TestEnvironment.modelDirectory) } catch {
        fatalError("\(error): run `make test` (or bash infra/fetch-model.sh) so the model is fetched")
    }
}()

func cosine(_ a: [Float], _ b: [Float]) -> Float {
    var dot: Float = 0
    var na: Float = 0
    var nb: Float = 0
    for i in a.indices {
        dot += a[i] * b[i]
        na += a[i] * a[i]
        nb += b[i] * b[i]
    }
    return dot / (na.squareRoot() * nb.squareRoot())
}

func maximumDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
}

@Suite("all-MiniLM-L6-v2 in Swift against sentence-transformers")
struct MiniLMTests {
    @Test("WordPiece tokens are identical to the reference tokenizer's", arguments: Reference.shared.items.indices)
    func tokens(index: Int) {
        let item = Reference.shared.items[index]
        #expect(sharedModel.tokenizer.tokenize(item.text) == item.tokens, "\(item.text.prefix(60))")
    }

    @Test("every embedding matches: cosine ≥ 0.9999 and no component off by more than 1e-4")
    func embeddings() async {
        await onOwnThread {
            let items = Reference.shared.items
            for item in items {
                let vector = sharedModel.embedNow([item.text])[0]
                #expect(vector.count == 384)
                let similarity = cosine(vector, item.embedding)
                let difference = maximumDifference(vector, item.embedding)
                #expect(similarity >= 0.9999, "\(item.text.prefix(60)): cosine \(similarity)")
                #expect(difference <= 1e-4, "\(item.text.prefix(60)): max difference \(difference)")
            }
        }
    }

    @Test("a batch gives what single sentences give, to the same bounds")
    func batchEqualsSingle() async throws {
        let texts = Reference.shared.items.map(\.text)
        let (single, batched) = await onOwnThread {
            (texts.map { sharedModel.embedNow([$0])[0] }, sharedModel.embedNow(texts))
        }
        for (one, many) in zip(single, batched) {
            #expect(cosine(one, many) >= 0.9999 && maximumDifference(one, many) <= 1e-4)
        }
        // And through the batching embedder, from many concurrent callers.
        let embedder = BatchingEmbedder(model: sharedModel, threads: 2)
        defer { embedder.shutdown() }
        let concurrent = try await withThrowingTaskGroup(of: (Int, [Float]).self) { group in
            for (index, text) in texts.enumerated() {
                group.addTask { (index, try await embedder.embed([text])[0]) }
            }
            var results = [[Float]](repeating: [], count: texts.count)
            for try await (index, vector) in group { results[index] = vector }
            return results
        }
        for (one, viaEmbedder) in zip(single, concurrent) {
            #expect(cosine(one, viaEmbedder) >= 0.9999 && maximumDifference(one, viaEmbedder) <= 1e-4)
        }
        #expect(try await embedder.embed([]).isEmpty)
    }

    @Test("empty token sequences pool to the zero vector, alone or beside real ones, which they leave as they are")
    func emptySequences() async throws {
        let text = Reference.shared.items[0].text
        let tokens = sharedModel.tokenizer.encode(text)
        let (alone, mixed, single) = await onOwnThread {
            (
                sharedModel.encoder.embed([[], []]), sharedModel.encoder.embed([[], tokens, []]),
                sharedModel.encoder.embed([tokens])[0]
            )
        }
        let zero = [Float](repeating: 0, count: sharedModel.encoder.dimension)
        #expect(alone == [zero, zero])
        #expect(mixed.count == 3 && mixed[0] == zero && mixed[2] == zero)
        #expect(cosine(mixed[1], single) >= 0.9999 && maximumDifference(mixed[1], single) <= 1e-4)
    }

    @Test("the embedder's queue is bounded and its waits have a deadline: callers past either are refused, not queued")
    func boundedQueue() async throws {
        let text = String(repeating: "a sentence long enough to take a while to embed ", count: 10)
        let bounded = BatchingEmbedder(model: sharedModel, threads: 1, maximumBatch: 1, maximumQueued: 2)
        defer { bounded.shutdown() }
        let outcomes = await withTaskGroup(of: String.self) { group in
            for _ in 0..<12 {
                group.addTask {
                    do {
                        _ = try await bounded.embed([text])
                        return "ok"
                    } catch {
                        return "\(error)"
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.contains("ok") && outcomes.contains("overloaded"), "\(outcomes)")
        #expect(outcomes.allSatisfy { $0 == "ok" || $0 == "overloaded" }, "\(outcomes)")

        let hurried = BatchingEmbedder(model: sharedModel, threads: 1, maximumBatch: 1, maximumWait: .milliseconds(1))
        defer { hurried.shutdown() }
        let late = await withTaskGroup(of: String.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    do {
                        _ = try await hurried.embed([text])
                        return "ok"
                    } catch {
                        return "\(error)"
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(late.contains("timedOut"), "\(late)")
    }
}
