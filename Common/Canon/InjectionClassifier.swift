import Foundation

/// Finds sentences that address an assistant, a model or a system rather than state something:
/// imperatives to ignore, reveal, append, reply or visit, role play, requests for secrets, fake
/// prompt delimiters (`</passages>`, `<|im_start|>`, `[INST]`). Canon builds flag them on their
/// chunk (never retrieved, quoted or given to a model), and the query path drops them from a
/// request's `context`.
///
/// A logistic regression over cheap features of one sentence (word lists and a few substrings:
/// about a microsecond a sentence), trained by `zaas-train injection` on
/// `infra/labelled/injection.jsonl`; `docs/routing.md` reports its cross-validated precision and
/// recall. Lab prose uses the same verbs ("Ignore air resistance", "Reply to the referee"): the
/// features that separate them are what the sentence is addressed to and what it asks for.
public struct InjectionClassifier: Sendable {
    public let model: LogisticRegression
    public let threshold: Double

    public init(model: LogisticRegression = LogisticRegression(weights: Self.trainedWeights), threshold: Double = 0.5) {
        precondition(model.featureCount == Self.featureNames.count, "one weight per feature and the bias")
        self.model = model
        self.threshold = threshold
    }

    public static let standard = InjectionClassifier()

    public func isInjection(_ sentence: String) -> Bool {
        self.model.probability(Self.features(sentence)) >= self.threshold
    }

    /// `text` without its injected sentences, and those sentences; `text` itself when it has none.
    public func separate(_ text: String) -> (kept: String, injected: [String]) {
        var kept: [String] = []
        var injected: [String] = []
        for sentence in Chunker.sentences(text) {
            if self.isInjection(sentence) { injected.append(sentence) } else { kept.append(sentence) }
        }
        return injected.isEmpty ? (text, []) : (kept.joined(separator: " "), injected)
    }

    // MARK: Features

    public static let featureNames = [
        "fake_delimiter", "override_instructions", "override_verb", "model_addressee", "system_addressee",
        "second_person", "imperative_opening", "imperative_about_output", "about_output", "output_restriction",
        "quoted_output", "secret_request", "link", "link_with_query", "every_answer", "role_play", "shouting",
        "addressed_opening", "while_answering", "obliges_model",
    ]

    static let overrideVerbs: Set<Substring> = ["ignore", "disregard", "forget", "override", "bypass"]
    static let overrideObjects: Set<Substring> = [
        "instruction", "instructions", "prompt", "rules", "guidelines", "directions", "directives", "programming",
        "policies", "filters", "restrictions", "messages", "told",
    ]
    static let overriddenThings: Set<Substring> = [
        "previous", "prior", "above", "earlier", "original", "initial", "passages", "passage", "context", "canon",
        "question", "safety", "citation", "system", "everything",
    ]
    /// What an assistant produces or is given: a sentence about these is about its output.
    static let outputWords: Set<Substring> = [
        "answer", "answers", "answering", "reply", "replies", "response", "responses", "respond", "cite", "citation",
        "citations", "passage", "passages", "user", "users", "question", "questions", "prompt", "instructions",
    ]
    static let outputVerbs: Set<Substring> = [
        "say", "reply", "respond", "answer", "output", "write", "print", "add", "append", "begin", "repeat", "end",
    ]
    static let whileAnswering: [String] = [
        "when you answer", "before answering", "if asked", "when answering", "when summarising", "when summarizing",
        "in your answer", "to any question", "regardless of", "instead",
    ]
    static let modelWords: Set<Substring> = [
        "ai", "chatbot", "chatbots", "llm", "llms", "gpt", "bot", "assistant", "model", "models",
    ]
    static let systemWords: Set<Substring> = ["system", "admin", "administrator", "developer"]
    static let secondPerson: Set<Substring> = ["you", "your", "yourself", "you're"]
    static let imperatives: Set<Substring> = [
        "ignore", "disregard", "forget", "reveal", "print", "output", "append", "prepend", "reply", "respond",
        "answer", "say", "write", "repeat", "visit", "include", "send", "tell", "show", "disclose", "translate",
        "pretend", "act", "stop", "do", "never", "always", "insert", "add", "replace", "leak", "begin", "end",
        "remember", "override",
    ]
    static let restrictions: Set<Substring> = ["only", "nothing", "verbatim", "exactly"]
    static let secrets: Set<Substring> = [
        "key", "keys", "password", "token", "secret", "secrets", "credential", "credentials", "prompt",
        "configuration", "variables", "history",
    ]
    static let everyAnswer: [String] = [
        "every answer", "every response", "each answer", "each response", "your answer", "your reply",
        "your response", "every question", "any question", "all answers", "the answer must", "in your reply",
        "no matter what",
    ]
    static let rolePlay: [String] = [
        "you are now", "act as", "pretend you", "from now on", "new instructions", "new task", "new system",
        "new rule", "developer mode", "unrestricted", "jailbreak", "no longer bound", "no longer apply",
        "unfiltered", "you must",
    ]
    static let delimiters: [String] = [
        "</passages>", "<passages>", "</passage>", "</context>", "<context>", "<system>", "</system>",
        "[system]", "<|im_start|>", "<|im_end|>", "<|system|>", "[inst]", "[/inst]", "### instruction",
        "### system", "</instructions>", "<instructions>",
    ]
    static let openingAddressees: [String] = [
        "system:", "assistant:", "user:", "ai:", "note to the ai", "dear ai", "hey chatbot", "attention model",
        "llm instruction", "ai assistant:", "model,", "assistant,", "important instruction",
    ]

    /// The features of one sentence, each in [0, 1], in `featureNames` order.
    public static func features(_ sentence: String) -> [Double] {
        let lower = sentence.lowercased()
        let words = lower.split { !($0.isLetter || $0.isNumber || $0 == "'") }
        let wordSet = Set(words)
        func any(_ list: Set<Substring>) -> Double { wordSet.isDisjoint(with: list) ? 0 : 1 }
        func anyPhrase(_ list: [String]) -> Double { list.contains { lower.contains($0) } ? 1 : 0 }

        var opening = words.drop { ["please", "important", "note", "now", "then", "first"].contains($0) }
        if let colon = lower.firstIndex(of: ":"), lower.distance(from: lower.startIndex, to: colon) < 30 {
            // "SYSTEM NOTE: ignore …", "Assistant: Sure …": the words after a short label.
            let after = lower[lower.index(after: colon)...].split { !($0.isLetter || $0.isNumber || $0 == "'") }
            if let first = after.first, imperatives.contains(first) { opening = after[...] }
        }
        let opensImperative = opening.first.map { imperatives.contains($0) } ?? false

        let link = lower.contains("http://") || lower.contains("https://") || lower.contains("www.")
        var linkWithQuery = false
        if link, let start = lower.range(of: "http") ?? lower.range(of: "www.") {
            let url = lower[start.lowerBound...].prefix { !$0.isWhitespace }
            linkWithQuery = url.contains("?") || url.contains("=")
        }
        let shouting =
            sentence.split(separator: " ").filter { word in
                let letters = word.filter(\.isLetter)
                return letters.count >= 4 && letters.allSatisfy(\.isUppercase)
            }.count
        let restricted =
            (!wordSet.isDisjoint(with: restrictions) && !wordSet.isDisjoint(with: outputVerbs))
            || lower.contains("and nothing else")
        let quoted =
            (lower.contains("'") && lower.split(separator: "'").count >= 3 || lower.contains("\""))
            && !wordSet.isDisjoint(with: outputVerbs)
        let overrideVerb = !wordSet.isDisjoint(with: overrideVerbs)
        let aboutOutput = !wordSet.isDisjoint(with: outputWords)
        return [
            anyPhrase(delimiters),
            overrideVerb && (!wordSet.isDisjoint(with: overrideObjects) || !wordSet.isDisjoint(with: overriddenThings))
                ? 1 : 0,
            overrideVerb ? 1 : 0,
            any(modelWords) + (lower.contains("language model") ? 1 : 0) > 0 ? 1 : 0,
            any(systemWords),
            any(secondPerson),
            opensImperative ? 1 : 0,
            opensImperative && aboutOutput ? 1 : 0,
            aboutOutput ? 1 : 0,
            restricted ? 1 : 0,
            quoted ? 1 : 0,
            any(secrets),
            link ? 1 : 0,
            linkWithQuery ? 1 : 0,
            anyPhrase(everyAnswer),
            anyPhrase(rolePlay),
            min(Double(shouting), 2) / 2,
            openingAddressees.contains { lower.hasPrefix($0) } ? 1 : 0,
            anyPhrase(whileAnswering),
            any(modelWords) + any(systemWords) > 0 && !wordSet.isDisjoint(with: ["must", "should", "shall"]) ? 1 : 0,
        ]
    }
}

// MARK: Training

extension InjectionClassifier {
    /// One line of `infra/labelled/injection.jsonl`.
    public struct Example: Sendable, Decodable {
        public var text: String
        public var injection: Bool
        public var source: String
    }

    public static func examples(jsonLines data: Data) throws -> [Example] {
        try JSONLines.decode(Example.self, from: data)
    }

    /// The fitting used for the shipped weights.
    public static func fit(_ examples: [Example]) -> LogisticRegression {
        Self.fit(featured: examples.map { (Self.features($0.text), $0.injection) })
    }

    /// Precision and recall of `fit` judged by 5-fold cross-validation.
    public static func crossValidate(_ examples: [Example], folds: Int = 5) -> BinaryConfusion {
        LogisticRegression.crossValidate(
            examples.map { (Self.features($0.text), $0.injection) }, folds: folds, fit: Self.fit(featured:))
    }

    /// Positives are weighted up to the negatives' count, so the model does not lean to the
    /// larger class.
    static func fit(featured examples: [(features: [Double], label: Bool)]) -> LogisticRegression {
        let positives = max(1, examples.filter(\.label).count)
        return LogisticRegression.fit(
            examples, positiveWeight: Double(max(examples.count - positives, 1)) / Double(positives))
    }
}
