import Canon
import Embeddings
import Foundation
import Retrieval
import TestSupport
import Testing

@Suite("sentence attribution on the labelled set")
struct AttributionTests {
    @Test("at the defaults: precision ≥ 90 % and recall ≥ 95 % on infra/labelled/attribution.jsonl (docs/routing.md)")
    func labelledSet() async throws {
        let examples = try SentenceAttribution.examples(
            jsonLines: Data(contentsOf: DemoIndex.infra.appendingPathComponent("labelled/attribution.jsonl")))
        #expect(examples.count >= 120 && examples.filter(\.supported).count >= 60)
        let index = try await DemoIndex.built.value
        for example in examples {
            for id in example.passages { #expect(index.entryIndexByID[id] != nil, "\(id) is not in the demo canon") }
        }
        let attribution = SentenceAttribution()
        let scores = await onOwnThread {
            attribution.bestSupport(examples, vectors: DemoIndex.model.embedNow(examples.map(\.sentence)), index: index)
        }
        let confusion = SentenceAttribution.confusion(examples, scores: scores, threshold: attribution.threshold)
        #expect(confusion.precision >= 0.9, "\(confusion)")
        #expect(confusion.recall >= 0.95, "\(confusion)")
    }
}
