import Canon
import Foundation

/// How likely a question needs a large model: the `complexity` a query's route reports, which
/// `auto` compares with the tenant's `routing_threshold` (at or above it: the cloud class).
///
/// A logistic regression over the query embedding the node computes anyway (384 numbers) and
/// cheap features of the question and of what retrieval found (length, clauses, mathematics,
/// question words, how well one entry covers it). It is trained by `zaas-train router` on
/// `infra/labelled/routing.jsonl` (questions labelled with the class that answers them well, with
/// the rubric as their source); `docs/routing.md` reports its held-out accuracy, its confusion
/// matrix and the cost it saves against always-cloud. RouteLLM's framing: a question a small model
/// answers well sent to a large one costs money; the other way round costs quality.
public struct ComplexityRouter: Sendable {
    public let model: LogisticRegression

    public init(model: LogisticRegression = LogisticRegression(weights: Self.trainedWeights)) {
        precondition(
            model.featureCount == Self.featureNames.count + Self.embeddingWidth, "one weight per feature and the bias")
        self.model = model
    }

    public static let standard = ComplexityRouter()

    /// The width of the query embedding the model was trained on (all-MiniLM-L6-v2).
    public static let embeddingWidth = 384

    /// The estimate, in [0, 1]. A vector of another width (another embedding model) contributes
    /// nothing: the cheap features still rank questions.
    public func complexity(question: String, vector: [Float], retrieval: RetrievalResult) -> Double {
        self.model.probability(Self.features(question: question, vector: vector, retrieval: retrieval))
    }

    // MARK: Features

    public static let featureNames = [
        "words", "clauses", "mathematics", "numbers", "simple_question_word", "reasoning_question_word",
        "calculation_verb", "several_parts", "comparison", "top_similarity", "similarity_gap", "entries_matched",
        "lexical_vector_agree",
    ]

    static let simpleOpenings: Set<Substring> = [
        "what", "who", "when", "where", "which", "is", "are", "does", "do", "did", "was", "were", "name", "list",
        "define", "state", "give", "has", "can",
    ]
    static let reasoningWords: Set<Substring> = [
        "why", "how", "explain", "justify", "discuss", "critique", "assess", "evaluate", "argue", "reconcile",
        "implications", "consequences", "whether",
    ]
    static let calculationWords: Set<Substring> = [
        "derive", "derivation", "prove", "proof", "calculate", "compute", "estimate", "solve", "show", "obtain",
        "work", "integrate", "differentiate", "expand", "sketch", "demonstrate",
    ]
    static let comparisonPhrases = [
        "compare", "comparison", "contrast", "difference between", "differ", "versus", " vs ", "relate",
        "relation between", "relationship between", "in common", "both", "trade-off", "tradeoff",
    ]
    static let clauseWords: Set<Substring> = [
        "and", "but", "while", "whereas", "although", "because", "if", "then", "so", "given", "assuming", "when",
        "where", "which", "that",
    ]
    static let mathematicsMarks: [String] = [
        "=", "^", "∫", "∂", "∇", "√", "²", "³", "·", "×", "→", "≈", "≤", "≥", "+", " / ", "d/dt", "dx", "equation",
        "integral", "derivative", "lagrangian", "hamiltonian", "tensor", "operator", "eigen", "order in",
    ]

    /// The cheap features then the embedding, in `featureNames` order; each cheap one in [0, 1].
    public static func features(question: String, vector: [Float], retrieval: RetrievalResult) -> [Double] {
        let lower = question.lowercased()
        let words = lower.split { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "'") }
        let wordSet = Set(words)
        let clauses =
            words.dropFirst().filter(clauseWords.contains).count + lower.filter { ",;:".contains($0) }.count
        let questionMarks = lower.filter { $0 == "?" }.count
        let parts =
            max(questionMarks - 1, 0)
            + [" and what", " and how", " and why", " and which", " and whether", " then ", "first,", "(a)", "1."]
            .filter(lower.contains).count
        let similarities = retrieval.entries.map(\.similarity).sorted(by: >)
        let top = Double(similarities.first ?? 0)
        let second = Double(similarities.dropFirst().first ?? 0)
        let matched = similarities.filter { $0 >= 0.25 }.count
        let agree = retrieval.lexicalOrder.first != nil && retrieval.lexicalOrder.first == retrieval.vectorOrder.first

        var features: [Double] = [
            min(Double(words.count) / 40, 1),
            min(Double(clauses) / 5, 1),
            mathematicsMarks.contains { lower.contains($0) } ? 1 : 0,
            question.contains { $0.isNumber } ? 1 : 0,
            words.first.map { simpleOpenings.contains($0) } ?? false ? 1 : 0,
            wordSet.isDisjoint(with: reasoningWords) ? 0 : 1,
            wordSet.isDisjoint(with: calculationWords) ? 0 : 1,
            min(Double(parts) / 2, 1),
            comparisonPhrases.contains { lower.contains($0) } ? 1 : 0,
            min(max(top, 0), 1),
            min(max(top - second, 0) * 4, 1),
            min(Double(matched) / 5, 1),
            agree ? 1 : 0,
        ]
        if vector.count == embeddingWidth {
            features += vector.map(Double.init)
        } else {
            features += [Double](repeating: 0, count: embeddingWidth)
        }
        return features
    }
}

// MARK: Training and evaluation

extension ComplexityRouter {
    /// One line of `infra/labelled/routing.jsonl`.
    public struct Example: Sendable, Decodable {
        public var question: String
        /// `local` or `cloud`: the class that answers it well.
        public var `class`: String
        public var source: String

        public var needsCloud: Bool { self.class == "cloud" }
    }

    public static func examples(jsonLines data: Data) throws -> [Example] {
        let examples = try JSONLines.decode(Example.self, from: data)
        for example in examples where !["local", "cloud"].contains(example.class) {
            throw DecodingError.dataCorrupted(
                .init(codingPath: [], debugDescription: "class must be local or cloud: \(example.question)"))
        }
        return examples
    }

    /// The fit `zaas-train router` ships: cloud is the positive class, weighted to balance the set.
    public static func fit(_ examples: [(features: [Double], label: Bool)]) -> LogisticRegression {
        let positives = examples.filter(\.label).count
        let negatives = examples.count - positives
        return LogisticRegression.fit(
            examples, l2: 0.003, learningRate: 0.5, iterations: 3000,
            positiveWeight: positives == 0 ? 1 : Double(negatives) / Double(positives))
    }

    /// Whether an example is in the held-out fifth (by position, so reruns agree).
    public static func isHeldOut(_ index: Int) -> Bool { index % 5 == 0 }

    /// At one threshold: the share of questions `auto` sends to the local class, the share of
    /// questions sent to a class that answers them well (a local question answered by the cloud
    /// class is answered well, only dearer), and the cost against always-cloud when a local answer
    /// costs `localCostRatio` of a cloud one.
    public struct Operating: Sendable {
        public var threshold: Double
        public var localShare: Double
        public var quality: Double
        public var costSaved: Double
    }

    public static func operating(
        scores: [Double], labels: [Bool], threshold: Double, localCostRatio: Double = 0
    ) -> Operating {
        let routedLocal = scores.map { $0 < threshold }
        let local = Double(routedLocal.filter { $0 }.count) / Double(max(scores.count, 1))
        let harmed = zip(routedLocal, labels).filter { $0 && $1 }.count
        return Operating(
            threshold: threshold, localShare: local,
            quality: 1 - Double(harmed) / Double(max(scores.count, 1)),
            costSaved: local * (1 - localCostRatio))
    }
}
