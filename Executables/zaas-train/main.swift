import Canon
import Embeddings
import Foundation
import Retrieval

// Trains the classifiers that ship as weights, from the labelled sets in infra/labelled/, and
// prints their evaluation for docs/routing.md. Run from the repository's root:
//
//     swift run zaas-train injection
//     swift run zaas-train attribution [model directory, default .zaas/models/all-MiniLM-L6-v2]
//     swift run zaas-train router [model directory]

let arguments = CommandLine.arguments.dropFirst()
let root = FileManager.default.currentDirectoryPath

func write(_ text: String, to path: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: root + "/" + path), options: .atomic)
}

func percent(_ value: Double) -> String { String(format: "%.1f %%", value * 100) }

func weightsSource(command: String, set: String, type: String, weights: [Double], names: [String]) -> String {
    var lines = [
        "// Written by `swift run zaas-train \(command)` from \(set); do not edit.", "",
        "extension \(type) {", "    public static let trainedWeights: [Double] = [",
    ]
    for (index, weight) in weights.enumerated() {
        lines.append("        \(String(format: "%.6f", weight)),  // \(index < names.count ? names[index] : "bias")")
    }
    lines += ["    ]", "}", ""]
    return lines.joined(separator: "\n")
}

switch arguments.first {
case "injection":
    let set = "infra/labelled/injection.jsonl"
    let examples = try InjectionClassifier.examples(jsonLines: Data(contentsOf: URL(fileURLWithPath: root + "/" + set)))
    let confusion = InjectionClassifier.crossValidate(examples)
    let model = InjectionClassifier.fit(examples)
    try write(
        weightsSource(
            command: "injection", set: set, type: "InjectionClassifier", weights: model.weights,
            names: InjectionClassifier.featureNames),
        to: "Common/Canon/InjectionClassifier+Weights.swift")
    let classifier = InjectionClassifier(model: model)
    print("\(examples.count) sentences, \(examples.filter(\.injection).count) injected")
    print(
        "5-fold cross-validation: precision \(percent(confusion.precision)), recall \(percent(confusion.recall)),"
            + " accuracy \(percent(confusion.accuracy))")
    print(
        "  true positives \(confusion.truePositives), false positives \(confusion.falsePositives),"
            + " true negatives \(confusion.trueNegatives), false negatives \(confusion.falseNegatives)")
    for example in examples where classifier.isInjection(example.text) != example.injection {
        print("  fitted model misjudges (\(example.injection ? "injected" : "clean")): \(example.text)")
    }
case "attribution":
    let model = try SentenceModel(
        directory: arguments.dropFirst().first ?? root + "/.zaas/models/all-MiniLM-L6-v2")
    let examples = try SentenceAttribution.examples(
        jsonLines: Data(contentsOf: URL(fileURLWithPath: root + "/infra/labelled/attribution.jsonl")))
    let index = try await SentenceAttribution.demoIndex(
        folder: root + "/infra/demo-canon", embedder: BatchingEmbedder(model: model, threads: 2))
    let vectors = model.embedNow(examples.map(\.sentence))
    print("\(examples.count) sentences, \(examples.filter(\.supported).count) supported")
    print("| semantic weight | threshold | precision | recall |")
    print("|---|---|---|---|")
    for weight in [0.3, 0.4, 0.5, 0.6, 0.7] {
        let scores = SentenceAttribution(semanticWeight: weight).bestSupport(examples, vectors: vectors, index: index)
        for threshold in stride(from: 0.45, through: 0.8, by: 0.05) {
            let confusion = SentenceAttribution.confusion(examples, scores: scores, threshold: threshold)
            print(
                "| \(weight) | \(String(format: "%.2f", threshold)) | \(percent(confusion.precision)) |"
                    + " \(percent(confusion.recall)) |")
        }
    }
    let standard = SentenceAttribution()
    let scores = standard.bestSupport(examples, vectors: vectors, index: index)
    for (example, score) in zip(examples, scores) where (score >= standard.threshold) != example.supported {
        print("  default misjudges (\(example.supported ? "supported" : "unsupported"), \(score)): \(example.sentence)")
    }
case "router":
    try await trainRouter(modelDirectory: arguments.dropFirst().first ?? root + "/.zaas/models/all-MiniLM-L6-v2")
default:
    FileHandle.standardError.write(
        Data("usage: zaas-train injection | attribution [model directory] | router [model directory]\n".utf8))
    exit(64)
}
