import Canon
import DataPlane
import Embeddings
import Foundation
import TestSupport
import Testing

/// `infra/semantic-cache-eval.json` scored as the query path scores a semantic hit: the real
/// model's embeddings, the 8-bit index, the default threshold 0.95 and the guard with the demo
/// canon's vocabulary as key terms.
enum SemanticCacheEvaluation {
    struct Pairs: Decodable {
        struct Different: Decodable {
            let a: String
            let b: String
            let kind: String
        }
        let shouldHit: [[String]]
        let mustNotHit: [Different]

        enum CodingKeys: String, CodingKey {
            case shouldHit = "should_hit"
            case mustNotHit = "must_not_hit"
        }
    }

    struct Outcome {
        var similarity: Float
        var verdict: QuestionGuard.Verdict
        var hit: Bool
    }

    static let threshold: Float = 0.95

    static let pairs: Pairs = try! JSONDecoder().decode(
        Pairs.self, from: Data(contentsOf: DemoIndex.infra.appendingPathComponent("semantic-cache-eval.json")))

    /// Every term of the demo canon: what "the tenant's canon contains it" means for the guard.
    static let vocabulary: Set<String> = Set(DemoIndex.entries.flatMap { TextAnalyzer.terms($0.title + " " + $0.body) })

    /// Whether `b`, cached, would be served for `a`.
    static func score(_ a: String, _ b: String) -> Outcome {
        let (first, second) = (QuestionGuard.normalize(a), QuestionGuard.normalize(b))
        let vectors = DemoIndex.model.embedNow([first, second])
        var index = SemanticCacheIndex(dimensions: vectors[1].count)
        index.add(id: "b", question: second, vector: vectors[1])
        let similarity = index.nearest(vectors[0], limit: 1).first?.similarity ?? 0
        let verdict = QuestionGuard.compare(first, second) { Self.vocabulary.contains($0) }
        return Outcome(
            similarity: similarity, verdict: verdict, hit: similarity >= Self.threshold && verdict == .compatible)
    }
}

@Suite("semantic cache: index, guard, paraphrase evaluation")
struct SemanticCacheTests {
    @Test(
        "paraphrase evaluation at the default threshold: precision at least 0.99; the guard refuses what similarity alone would serve"
    )
    func paraphraseEvaluation() async {
        await onOwnThread {
            let pairs = SemanticCacheEvaluation.pairs
            #expect(pairs.shouldHit.count >= 50 && pairs.mustNotHit.count >= 60)
            var truePositives = 0
            var falsePositives = 0
            var similarOnly = 0
            var byKind: [String: (refused: Int, total: Int)] = [:]
            var guardedParaphrases: [String] = []
            for pair in pairs.shouldHit {
                let outcome = SemanticCacheEvaluation.score(pair[0], pair[1])
                if outcome.hit { truePositives += 1 }
                if outcome.similarity >= SemanticCacheEvaluation.threshold && !outcome.hit {
                    guardedParaphrases.append("\(pair[1]) (\(outcome.verdict.rawValue))")
                }
            }
            for pair in pairs.mustNotHit {
                let outcome = SemanticCacheEvaluation.score(pair.a, pair.b)
                if outcome.hit { falsePositives += 1 }
                #expect(!outcome.hit, "served \(pair.b) for \(pair.a) at \(outcome.similarity)")
                if outcome.similarity >= SemanticCacheEvaluation.threshold {
                    similarOnly += 1
                    print("guard refused (\(outcome.verdict.rawValue), \(outcome.similarity)): \(pair.a) / \(pair.b)")
                }
                byKind[pair.kind, default: (0, 0)].total += 1
                if !outcome.hit { byKind[pair.kind, default: (0, 0)].refused += 1 }
            }
            let precision =
                truePositives + falsePositives == 0 ? 1 : Double(truePositives) / Double(truePositives + falsePositives)
            let recall = Double(truePositives) / Double(pairs.shouldHit.count)
            print(
                "semantic cache evaluation: precision \(String(format: "%.3f", precision)), recall \(String(format: "%.3f", recall)) (\(truePositives) of \(pairs.shouldHit.count) paraphrases served); \(similarOnly) of \(pairs.mustNotHit.count) different questions reach 0.95 and only the guard refuses them; paraphrases the guard refused: \(guardedParaphrases)"
            )
            #expect(precision >= 0.99)
            // A cache that never hits would have perfect precision; it must serve real paraphrases.
            #expect(recall >= 0.5, "recall \(recall)")
            // The evaluation file must exercise the guard: similarity alone would serve some of these.
            #expect(similarOnly >= 10, "only \(similarOnly) different questions reach the threshold")
        }
    }

    @Test("the guard: numbers, negation, question words, key terms and their order")
    func guardVerdicts() {
        let known: (String) -> Bool = {
            ["lagrangian", "hamiltonian", "example", "coordinate", "predict"].contains($0)
        }
        func verdict(_ a: String, _ b: String) -> QuestionGuard.Verdict {
            QuestionGuard.compare(a, b, isKeyTerm: known)
        }
        #expect(verdict("give three examples", "give two examples") == .numbers)
        #expect(verdict("give 3 examples", "give three examples") == .compatible)
        #expect(verdict("the third example", "the 3 examples") == .compatible)
        #expect(verdict("does it predict x", "does it not predict x") == .negation)
        #expect(verdict("does it predict x", "doesn't it predict x") == .negation)
        #expect(verdict("who proposed the lagrangian", "when was the lagrangian proposed") == .questionWord)
        #expect(verdict("what is the lagrangian", "what is the hamiltonian") == .keyTerm)
        #expect(verdict("hamiltonian from the lagrangian", "lagrangian from the hamiltonian") == .wordOrder)
        // Words the canon does not know may differ; variants of a word are the same word.
        #expect(verdict("please explain the lagrangian", "describe the lagrangian briefly") == .compatible)
        #expect(verdict("generalized coordinates", "generalized coordinate") == .compatible)
        #expect(
            QuestionGuard.compare("how is it defined", "what is its definition") == .questionWord)
        #expect(QuestionGuard.normalize("  What  is\tＬＡＧＲＡＮＧＩＡＮ?\n") == "what is lagrangian?")
    }

    @Test("the index finds the nearest question exactly enough, skips removed ones, and replaces by id")
    func index() async {
        await onOwnThread {
            var generator = SystemRandomNumberGenerator()
            func unit(_ vector: [Float]) -> [Float] {
                let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
                return vector.map { $0 / norm }
            }
            let dimensions = 384
            let vectors = (0..<5000).map { _ in
                unit((0..<dimensions).map { _ in Float.random(in: -1...1, using: &generator) })
            }
            var index = SemanticCacheIndex(dimensions: dimensions)
            for (number, vector) in vectors.enumerated() {
                index.add(id: "q\(number)", question: "q\(number)", vector: vector)
            }
            // A slightly perturbed copy of question 1234 finds it, with the cosine the floats give.
            let target = vectors[1234]
            let query = unit(target.map { $0 + Float.random(in: -0.01...0.01, using: &generator) })
            let exact = zip(query, target).reduce(Float(0)) { $0 + $1.0 * $1.1 }
            let best = index.nearest(query, limit: 1)
            #expect(best.first?.index == 1234)
            #expect(abs((best.first?.similarity ?? 0) - exact) < 0.01)
            index.remove(id: "q1234")
            #expect(index.nearest(query, limit: 1).first?.index != 1234)
            // A removed question added again comes back as the newest; a live one is replaced where it is.
            index.add(id: "q1234", question: "again", vector: target)
            #expect(index.nearest(query, limit: 1).first?.index == 5000)
            #expect(index.questions[5000] == "again" && index.count == 5001 && index.liveCount == 5000)
            index.add(id: "q1234", question: "once more", vector: target)
            #expect(index.questions[5000] == "once more" && index.count == 5001)
            #expect(index.byteCount > 5000 * (dimensions + 48))

            // Bounded: questions expire with their answers, the oldest go past a cap, and the space
            // of removed questions comes back when compacted; what remains is still found.
            var bounded = SemanticCacheIndex(dimensions: dimensions)
            for (number, vector) in vectors.prefix(3000).enumerated() {
                bounded.add(
                    id: "q\(number)", question: "q\(number)", vector: vector, expiresAt: number < 1000 ? 1_000 : 10_000)
            }
            let full = bounded.byteCount
            #expect(bounded.nearest(vectors[10], limit: 1, now: 500).first?.index == 10)
            #expect(bounded.nearest(vectors[10], limit: 1, now: 2_000).first?.index != 10)  // expired
            #expect(bounded.expire(now: 2_000) == 1000)
            #expect(bounded.evictOldest(keeping: 1500) == 500)  // q1000…q1499, the oldest left
            #expect(bounded.liveCount == 1500 && bounded.count == 3000)
            bounded.compact()
            #expect(bounded.count == 1500 && bounded.deadCount == 0)
            #expect(bounded.byteCount < full / 2 + 4096)
            let kept = bounded.nearest(vectors[2500], limit: 1, now: 2_000)
            #expect(kept.first.map { bounded.ids[$0.index] } == "q2500")
            #expect(bounded.nearest(vectors[1200], limit: 1, now: 2_000).first.map { bounded.ids[$0.index] } != "q1200")
            // Re-adding a removed question brings it back, once.
            bounded.add(id: "q1200", question: "back", vector: vectors[1200], expiresAt: 10_000)
            #expect(bounded.nearest(vectors[1200], limit: 1, now: 2_000).first.map { bounded.ids[$0.index] } == "q1200")
            #expect(bounded.liveCount == 1501)
            // The one brought back is the newest, so the next eviction takes q1500, not it.
            #expect(bounded.evictOldest(keeping: 1500) == 1)
            #expect(bounded.nearest(vectors[1200], limit: 1, now: 2_000).first.map { bounded.ids[$0.index] } == "q1200")
            #expect(bounded.nearest(vectors[1500], limit: 1, now: 2_000).first.map { bounded.ids[$0.index] } != "q1500")
        }
    }

    @Test("a scope at its cap churns in place: compaction moves live questions down and allocates nothing")
    func churnAtCap() async {
        await onOwnThread {
            var generator = SystemRandomNumberGenerator()
            let dimensions = 384
            func unit() -> [Float] {
                let vector = (0..<dimensions).map { _ in Float.random(in: -1...1, using: &generator) }
                let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
                return vector.map { $0 / norm }
            }
            let cap = 1000
            var index = SemanticCacheIndex(dimensions: dimensions)
            var recent: [(id: String, vector: [Float])] = []
            // The cache's policy: evict past the cap, compact once a quarter is dead.
            func add(_ number: Int) {
                let vector = unit()
                index.add(id: "q\(number)", question: "q\(number)", vector: vector)
                index.evictOldest(keeping: cap)
                if index.deadCount > 64, index.deadCount * 4 > index.count { index.compact() }
                recent.append(("q\(number)", vector))
                if recent.count > 50 { recent.removeFirst() }
            }
            for number in 0..<(3 * cap) { add(number) }
            let reserved = index.reservedBytes
            for number in (3 * cap)..<(20 * cap) { add(number) }
            #expect(index.liveCount == cap)
            #expect(index.count <= cap * 4 / 3 + 1)
            #expect(index.reservedBytes == reserved, "the arrays were reallocated while churning at the cap")
            // The newest questions are found under their own ids; the oldest are gone.
            for (id, vector) in recent {
                #expect(index.nearest(vector, limit: 1).first.map { index.ids[$0.index] } == id)
            }
            index.compact()
            #expect(index.count == cap && index.reservedBytes == reserved)
            for (id, vector) in recent {
                #expect(index.nearest(vector, limit: 1).first.map { index.ids[$0.index] } == id)
            }
            index.add(id: "q0", question: "q0", vector: unit())
            #expect(index.liveCount == cap + 1)
        }
    }
}
