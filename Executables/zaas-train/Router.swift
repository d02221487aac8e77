import Canon
import Embeddings
import Foundation
import Retrieval

/// `zaas-train router`: the complexity router's held-out evaluation, its cross-validation, the
/// threshold sweep (share answered locally, quality, cost against always-cloud), and its weights.
func trainRouter(modelDirectory: String) async throws {
    let set = "infra/labelled/routing.jsonl"
    let model = try SentenceModel(directory: modelDirectory)
    let examples = try ComplexityRouter.examples(jsonLines: Data(contentsOf: URL(fileURLWithPath: root + "/" + set)))
    let index = try await SentenceAttribution.demoIndex(
        folder: root + "/infra/demo-canon", embedder: BatchingEmbedder(model: model, threads: 2))
    let vectors = model.embedNow(examples.map(\.question))
    let retriever = HybridRetriever()
    let labelled = zip(examples, vectors).map { example, vector in
        let retrieval = retriever.retrieve(
            layers: [CanonLayer(index: index)], question: example.question, vector: vector, limit: 5)
        return (
            features: ComplexityRouter.features(question: example.question, vector: vector, retrieval: retrieval),
            label: example.needsCloud
        )
    }
    let labels = labelled.map(\.label)
    print("\(examples.count) questions, \(labels.filter { $0 }.count) labelled cloud")

    // Held out: every fifth question, never seen by the model that judges it.
    let training = labelled.indices.filter { !ComplexityRouter.isHeldOut($0) }.map { labelled[$0] }
    let heldOut = labelled.indices.filter(ComplexityRouter.isHeldOut)
    let heldOutModel = ComplexityRouter.fit(training)
    let heldOutScores = heldOut.map { heldOutModel.probability(labelled[$0].features) }
    let heldOutLabels = heldOut.map { labels[$0] }
    var confusion = BinaryConfusion()
    for (score, label) in zip(heldOutScores, heldOutLabels) { confusion.add(predicted: score >= 0.5, actual: label) }
    print(
        "held out (\(heldOut.count) questions, trained on \(training.count)) at 0.5: accuracy \(percent(confusion.accuracy))"
    )
    print("| | routed local | routed cloud |")
    print("|---|---|---|")
    print("| labelled local | \(confusion.trueNegatives) | \(confusion.falsePositives) |")
    print("| labelled cloud | \(confusion.falseNegatives) | \(confusion.truePositives) |")

    // Out-of-fold scores for every question (5 folds), with and without the embedding.
    let width = ComplexityRouter.featureNames.count
    func outOfFold(_ rows: [(features: [Double], label: Bool)]) -> [Double] {
        LogisticRegression.outOfFoldScores(rows, folds: 5, fit: ComplexityRouter.fit)
    }
    func accuracy(_ scores: [Double]) -> Double {
        Double(zip(scores, labels).filter { ($0 >= 0.5) == $1 }.count) / Double(labels.count)
    }
    let crossValidated = outOfFold(labelled)
    let cheapOnly = outOfFold(
        labelled.map {
            (
                features: Array($0.features[..<width]) + [Double](repeating: 0, count: ComplexityRouter.embeddingWidth),
                label: $0.label
            )
        })
    let embeddingOnly = outOfFold(
        labelled.map { (features: [Double](repeating: 0, count: width) + $0.features[width...], label: $0.label) })
    print(
        "5-fold cross-validation accuracy at 0.5: \(percent(accuracy(crossValidated))) (cheap features only \(percent(accuracy(cheapOnly))), embedding only \(percent(accuracy(embeddingOnly))))"
    )

    print(
        "threshold sweep (out-of-fold scores, all \(examples.count) questions; a local answer costs nothing against a cloud one):"
    )
    print("| threshold | answered locally | quality vs always-cloud | cost saved vs always-cloud |")
    print("|---|---|---|---|")
    for threshold in stride(from: 0.1, through: 0.91, by: 0.1) {
        let point = ComplexityRouter.operating(scores: crossValidated, labels: labels, threshold: threshold)
        print(
            "| \(String(format: "%.1f", threshold)) | \(percent(point.localShare)) | \(percent(point.quality)) | \(percent(point.costSaved)) |"
        )
    }
    // RouteLLM's figure: the saving at which quality stays at always-cloud's, and at 95 % of it.
    for floor in [1.0, 0.95] {
        let best = stride(from: 0.0, through: 1.0, by: 0.01)
            .map { ComplexityRouter.operating(scores: crossValidated, labels: labels, threshold: $0) }
            .filter { $0.quality >= floor - 1e-9 }.max { $0.costSaved < $1.costSaved }
        if let best {
            print(
                "quality ≥ \(percent(floor)): threshold \(String(format: "%.2f", best.threshold)), \(percent(best.localShare)) answered locally, cost saved \(percent(best.costSaved))"
            )
        }
    }

    let final = ComplexityRouter.fit(labelled)
    try write(
        weightsSource(
            command: "router", set: set, type: "ComplexityRouter", weights: final.weights,
            names: ComplexityRouter.featureNames + (0..<ComplexityRouter.embeddingWidth).map { "embedding \($0)" }),
        to: "Common/Retrieval/ComplexityRouter+Weights.swift")
    let router = ComplexityRouter(model: final)
    for (example, row) in zip(examples, labelled)
    where (router.model.probability(row.features) >= 0.5) != example.needsCloud {
        print("  fitted model misroutes (labelled \(example.class)): \(example.question)")
    }
}
