import Canon
import Embeddings
import Foundation
import Retrieval
import TestSupport
import Testing

@Suite("the complexity router on the labelled set")
struct RouterTests {
    static let examples: [ComplexityRouter.Example] = try! ComplexityRouter.examples(
        jsonLines: Data(contentsOf: DemoIndex.infra.appendingPathComponent("labelled/routing.jsonl")))

    /// Every labelled question's features: its embedding and what retrieval on the demo canon found.
    static func labelled() async throws -> [(features: [Double], label: Bool)] {
        let index = try await DemoIndex.built.value
        return await onOwnThread {
            let vectors = DemoIndex.model.embedNow(examples.map(\.question))
            return zip(examples, vectors).map { example, vector in
                let retrieval = HybridRetriever().retrieve(
                    layers: [CanonLayer(index: index)], question: example.question, vector: vector, limit: 5)
                return (
                    ComplexityRouter.features(question: example.question, vector: vector, retrieval: retrieval),
                    example.needsCloud
                )
            }
        }
    }

    static func complexity(_ question: String) async throws -> Double {
        let index = try await DemoIndex.built.value
        let vector = DemoIndex.vector(question)
        let retrieval = HybridRetriever().retrieve(
            layers: [CanonLayer(index: index)], question: question, vector: vector, limit: 5)
        return ComplexityRouter.standard.complexity(question: question, vector: vector, retrieval: retrieval)
    }

    @Test("the set is large and balanced enough to judge by, and names a class and a source on every line")
    func labelledSet() {
        #expect(Self.examples.count >= 300)
        let cloud = Self.examples.filter(\.needsCloud).count
        #expect(cloud >= 120 && Self.examples.count - cloud >= 120)
        #expect(Self.examples.allSatisfy { !$0.source.isEmpty })
        #expect(Set(Self.examples.map(\.question)).count == Self.examples.count, "a question is labelled twice")
        #expect(throws: DecodingError.self) {
            try ComplexityRouter.examples(
                jsonLines: Data(#"{"question": "Why?", "class": "huge", "source": "x"}"#.utf8))
        }
    }

    @Test("held out (every fifth question): accuracy ≥ 85 %, and at most 10 % of cloud questions sent local")
    func heldOut() async throws {
        let labelled = try await Self.labelled()
        let model = ComplexityRouter.fit(
            labelled.indices.filter { !ComplexityRouter.isHeldOut($0) }.map { labelled[$0] })
        var confusion = BinaryConfusion()
        for index in labelled.indices where ComplexityRouter.isHeldOut(index) {
            confusion.add(predicted: model.probability(labelled[index].features) >= 0.5, actual: labelled[index].label)
        }
        #expect(confusion.accuracy >= 0.85, "\(confusion)")
        #expect(confusion.recall >= 0.9, "\(confusion)")
    }

    @Test("the shipped weights are the fit `zaas-train router` makes from the set in the repository")
    func shippedWeights() async throws {
        let fitted = ComplexityRouter.fit(try await Self.labelled())
        let shipped = ComplexityRouter.standard.model.weights
        #expect(fitted.weights.count == shipped.count)
        let largest = zip(fitted.weights, shipped).map { abs($0 - $1) }.max() ?? 0
        #expect(largest < 1e-5, "retrain: swift run zaas-train router (largest difference \(largest))")
    }

    @Test("questions outside the set: a fact or a definition is simple, a derivation or a comparison is not")
    func unseenQuestions() async throws {
        for question in [
            "What is a Lagrangian?", "When was the Mécanique analytique published?",
            "What is the status of the principle of stationary action in the canon?",
        ] {
            let complexity = try await Self.complexity(question)
            #expect(complexity < 0.5, "\(question): \(complexity)")
        }
        for question in [
            "Derive the Euler–Lagrange equation from the action and explain why the boundary terms vanish.",
            "Compare the Lagrangian and Hamiltonian formulations for a charged particle in a magnetic field, and say which makes gauge invariance manifest.",
        ] {
            let complexity = try await Self.complexity(question)
            #expect(complexity >= 0.5, "\(question): \(complexity)")
        }
    }

    @Test("an embedding of another width (another model) still gives an estimate from the cheap features")
    func otherWidth() async throws {
        let index = try await DemoIndex.built.value
        let question = "What is a Lagrangian?"
        let retrieval = HybridRetriever().retrieve(
            layers: [CanonLayer(index: index)], question: question, vector: DemoIndex.vector(question), limit: 5)
        let estimate = ComplexityRouter.standard.complexity(
            question: question, vector: [Float](repeating: 0.1, count: 768), retrieval: retrieval)
        #expect((0...1).contains(estimate))
        #expect(
            ComplexityRouter.features(question: question, vector: [], retrieval: retrieval).count
                == ComplexityRouter.featureNames.count + ComplexityRouter.embeddingWidth)
    }

    @Test("the operating point: quality counts cloud questions answered locally, cost counts what went to the cloud")
    func operatingPoint() {
        let point = ComplexityRouter.operating(
            scores: [0.1, 0.2, 0.9, 0.4], labels: [false, true, true, false], threshold: 0.5, localCostRatio: 0.1)
        #expect(point.localShare == 0.75)
        #expect(point.quality == 0.75)
        #expect(abs(point.costSaved - 0.675) < 1e-9)
    }
}
