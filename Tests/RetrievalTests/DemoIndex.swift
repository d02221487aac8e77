import Canon
import Embeddings
import Foundation
import TestSupport

/// The demo canon built once with the real model, shared by the suites of this target.
enum DemoIndex {
    static let infra = TestEnvironment.repositoryRoot.appendingPathComponent("infra")

    struct Question: Decodable {
        let question: String
        let expected: [String]
    }

    static let model: SentenceModel = try! SentenceModel(directory: TestEnvironment.modelDirectory)

    static let entries: [CanonEntry] = CanonArchive().parse(
        folder: infra.appendingPathComponent("demo-canon").path
    ).entries.map(\.entry)

    static let questions: [Question] = try! JSONDecoder().decode(
        [Question].self, from: Data(contentsOf: infra.appendingPathComponent("demo-canon-eval.json")))

    static let built: Task<CanonIndex, any Error> = Task {
        let embedder = BatchingEmbedder(model: model, threads: 2)
        defer { embedder.shutdown() }
        let bytes = try await CanonIndexer().artifact(label: "base-v1", entries: entries, embedder: embedder)
        return try CanonIndex(bytes: ArtifactBytes(copying: bytes))
    }

    static func vector(_ text: String) -> [Float] { self.model.embedNow([text])[0] }
}
