import Canon
import Foundation
import Testing

@Suite("the demo canon and its evaluation questions")
struct DemoCanonTests {
    static let infra = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("infra")

    @Test("parses without a problem: 40+ entries, every status, valid links")
    func demoCanon() throws {
        let (entries, problems) = CanonArchive().parse(folder: Self.infra.appendingPathComponent("demo-canon").path)
        #expect(problems.isEmpty, "\(problems)")
        #expect(entries.count >= 40)
        #expect(Set(entries.map(\.entry.status)) == Set(CanonEntry.Status.allCases))
        #expect(Set(entries.map(\.entry.kind)) == Set(CanonEntry.Kind.allCases))
        #expect(CanonParser.validate(entries, knownIDs: []).isEmpty)
        let unification = try #require(entries.first { $0.entry.id == "claim.unified-lagrangian" })
        #expect(unification.entry.status == .conjectural)
        #expect(unification.entry.links == ["def.scalar-field", "def.stress-energy-tensor"])
        #expect(entries.first { $0.entry.id == "claim.stationary-action" }?.entry.status == .proven)
    }

    @Test("40+ evaluation questions, each expecting entries the canon has")
    func evaluation() throws {
        struct Question: Decodable {
            let question: String
            let expected: [String]
        }
        let data = try Data(contentsOf: Self.infra.appendingPathComponent("demo-canon-eval.json"))
        let questions = try JSONDecoder().decode([Question].self, from: data)
        #expect(questions.count >= 40)
        let ids = Set(
            CanonArchive().parse(folder: Self.infra.appendingPathComponent("demo-canon").path).entries.map(\.entry.id))
        for question in questions {
            #expect(!question.expected.isEmpty && question.expected.allSatisfy(ids.contains), "\(question.question)")
        }
    }
}
