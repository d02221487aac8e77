import Canon
import Foundation
import Retrieval
import Shared

/// The filter stage: what a model wrote, made safe to serve.
///
/// 1. Citations are parsed per sentence: a number naming no passage the model was given is
///    invented and removed.
/// 2. Guards drop a sentence that addresses someone as an instruction would (`instruction`,
///    the canon's own classifier), repeats the system prompt (`prompt_echo`), holds a string
///    shaped like a credential (`secret`), or links anywhere its supporting passage does not
///    (`link`).
/// 3. Attribution: every remaining sentence is embedded and attributed to the given passage that
///    supports it (`SentenceAttribution`); one no passage supports is dropped (`unsupported`), a
///    supported one carries that passage's citation even if the model forgot it. With
///    `max_citations` n, a sentence only passages beyond the first n support is dropped
///    (`over_citation_limit`): every sentence served carries a citation that is listed.
/// 4. Nothing left: nil, and the extractive answer replaces the model's.
///
/// Confidence (docs/routing.md): C = C_r × (0.5 + 0.5 s) × (1 − 0.5 i), where C_r is the
/// extractive formula's value for the same retrieval, s the share of the model's sentences kept
/// and i the share of its citation numbers that were invented.
struct AnswerFilter: Sendable {
    /// What the filter did to an answer; `changed` is false when the answer is served as written
    /// (citations renumbered in order of first use do not count as a change).
    struct Report: Sendable, Codable, Equatable {
        var changed: Bool
        /// Sentences dropped, by reason.
        var dropped: [String: Int]
        /// Citations the filter added to sentences the model had not cited them for.
        var citationsAdded: Int
        /// Citation numbers removed: invented, or naming a passage that does not support the sentence.
        var citationsRemoved: Int

        enum CodingKeys: String, CodingKey {
            case changed, dropped
            case citationsAdded = "citations_added"
            case citationsRemoved = "citations_removed"
        }
    }

    struct Answer: Sendable {
        var text: String
        var citations: [Citation]
        var confidence: Double
        var report: Report
    }

    /// A passage the model was given (numbered from 1 in the prompt).
    typealias Given = (entry: RetrievedEntry, passage: PromptBuilder.Passage)

    var attribution = SentenceAttribution()
    var classifier = InjectionClassifier.standard

    /// One sentence of the model's text: without its citation markers, the given passages it
    /// cited (0-based) and how many numbers it invented.
    struct Sentence: Sendable, Equatable {
        var plain: String
        var cited: [Int]
        var invented: Int
    }

    /// The sentences of `text` with their citations; markers standing alone after a sentence's
    /// end (`… energy. [2]`) belong to that sentence.
    static func sentences(_ text: String, passageCount: Int) -> [Sentence] {
        var sentences: [Sentence] = []
        let lines = text.split(whereSeparator: \.isNewline).map {
            // List markers and headings are layout, not content.
            $0.trimmingCharacters(in: .whitespaces).replacing(/^(?:[-*•]|\d{1,2}[.)]|#+)\s+/, with: "")
        }
        for sentence in Chunker.sentences(lines.joined(separator: " ")) {
            var plain = ""
            var cited: [Int] = []
            var invented = 0
            var rest = Substring(sentence)
            while let match = rest.firstMatch(of: Self.marker) {
                plain += rest[rest.startIndex..<match.range.lowerBound]
                while plain.last == " " { plain.removeLast() }
                for part in match.output.1.split(separator: ",") {
                    guard let number = Int(part.trimmingCharacters(in: .whitespaces)),
                        (1...passageCount).contains(number)
                    else {
                        invented += 1
                        continue
                    }
                    if !cited.contains(number - 1) { cited.append(number - 1) }
                }
                rest = rest[match.range.upperBound...]
            }
            plain += rest
            plain = plain.trimmingCharacters(in: .whitespaces)
            if plain.allSatisfy({ $0.isPunctuation || $0.isWhitespace }), !sentences.isEmpty {
                sentences[sentences.count - 1].cited += cited.filter {
                    !sentences[sentences.count - 1].cited.contains($0)
                }
                sentences[sentences.count - 1].invented += invented
                continue
            }
            sentences.append(Sentence(plain: plain, cited: cited, invented: invented))
        }
        return sentences
    }

    /// A streamed answer's sentences as they complete. A sentence is complete once text holding
    /// a letter follows it: a citation marker after its full stop (`… energy. [2]`) may still
    /// arrive and belongs to it. Sentence ends are found where `sentences` finds them, and text
    /// appended later never moves an end already found, so what is returned is final.
    struct SentenceStream: Sendable {
        let passageCount: Int
        private var text = ""
        private var returned = 0

        init(passageCount: Int) {
            self.passageCount = passageCount
        }

        /// The sentences `piece` completed.
        mutating func append(_ piece: String) -> [Sentence] {
            self.text += piece
            let sentences = AnswerFilter.sentences(self.text, passageCount: self.passageCount)
            guard let last = sentences.last else { return [] }
            let complete = last.plain.contains(where: \.isLetter) ? sentences.count - 1 : sentences.count - 2
            return self.take(sentences, upTo: complete)
        }

        /// The sentences left when the answer ends.
        mutating func finish() -> [Sentence] {
            let sentences = AnswerFilter.sentences(self.text, passageCount: self.passageCount)
            return self.take(sentences, upTo: sentences.count)
        }

        private mutating func take(_ sentences: [Sentence], upTo end: Int) -> [Sentence] {
            guard end > self.returned else { return [] }
            defer { self.returned = end }
            return Array(sentences[self.returned..<end])
        }
    }

    /// Why a guard drops `sentence`, or nil.
    func guardReason(_ sentence: String) -> String? {
        if self.classifier.isInjection(sentence) { return "instruction" }
        if Self.echoesSystemPrompt(sentence) { return "prompt_echo" }
        if sentence.contains(SecretShapes.pattern) { return "secret" }
        return nil
    }

    /// The filtered answer, or nil when nothing the model wrote can be served.
    /// - Parameter embed: the node's embedder (unit-length vectors, one per text).
    func filter(
        _ text: String, given: [Given], layers: [CanonLayer], maxCitations: Int, retrievalConfidence: Double,
        snippets: [String: String], embed: ([String]) async throws -> [[Float]]
    ) async throws -> Answer? {
        var session = Session(filter: self, given: given, layers: layers, maxCitations: maxCitations)
        let candidates = Self.sentences(text, passageCount: given.count).filter { session.screen($0) }
        let vectors = candidates.isEmpty ? [] : try await embed(candidates.map(\.plain))
        for (sentence, vector) in zip(candidates, vectors) { _ = session.attribute(sentence, vector: vector) }
        return session.answer(retrievalConfidence: retrievalConfidence, snippets: snippets)
    }

    /// The filter applied one sentence at a time, as a streamed answer arrives: each sentence is
    /// screened by the guards, then attributed, and is final once kept (its citation numbers are
    /// given in order of first use, as the whole answer's are). `answer` is the same as
    /// `filter` would give for the same sentences.
    struct Session: Sendable {
        let filter: AnswerFilter
        let given: [Given]
        let passages: [SentenceAttribution.Passage]
        let maxCitations: Int
        /// Given passage index by citation number − 1.
        private(set) var order: [Int] = []
        private(set) var kept: [(plain: String, numbers: [Int])] = []
        private var dropped: [String: Int] = [:]
        private var seen = 0
        private var markers = 0
        private var invented = 0
        private var added = 0
        private var removed = 0

        init(filter: AnswerFilter, given: [Given], layers: [CanonLayer], maxCitations: Int) {
            self.filter = filter
            self.given = given
            self.maxCitations = maxCitations
            self.passages = given.map { found in
                let index = layers[found.entry.layer].index
                return SentenceAttribution.Passage(
                    index: index, entry: found.entry.entry, chunks: index.servedChunks(of: found.entry.entry))
            }
        }

        /// Counts `sentence` and applies the guards: false when one drops it (it needs no embedding).
        mutating func screen(_ sentence: Sentence) -> Bool {
            self.seen += 1
            self.markers += sentence.cited.count + sentence.invented
            self.invented += sentence.invented
            self.removed += sentence.invented
            guard let reason = self.filter.guardReason(sentence.plain) else { return true }
            self.dropped[reason, default: 0] += 1
            return false
        }

        /// Attributes a screened sentence (`vector`: its embedding): the sentence as served, with
        /// its citation markers, or nil when it is dropped.
        mutating func attribute(_ sentence: Sentence, vector: [Float]) -> String? {
            let attribution = self.filter.attribution
            let scores = self.passages.map { attribution.support(sentence.plain, vector: vector, passage: $0) }
            let supporting = scores.indices.filter { scores[$0] >= attribution.threshold }
            let best = { (among: [Int]) in among.max { scores[$0] < scores[$1] } }
            // The model's own citation wins when it supports the sentence.
            guard let chosen = best(supporting.filter(sentence.cited.contains)) ?? best(supporting) else {
                return self.drop(sentence, "unsupported")
            }
            if let link = sentence.plain.firstMatch(of: AnswerFilter.link),
                !self.passages[chosen].text.contains(link.output.lowercased())
            {
                return self.drop(sentence, "link")
            }
            // The chosen passage first, then the others the model cited that support it too; with
            // `max_citations` n, only passages among the first n listed (every sentence served
            // carries a citation that is listed).
            var numbers: [Int] = []
            var listed: [Int] = []
            if self.maxCitations > 0 {
                for index in [chosen] + sentence.cited.filter({ $0 != chosen && supporting.contains($0) })
                where self.order.contains(index) || self.order.count < self.maxCitations {
                    if !self.order.contains(index) { self.order.append(index) }
                    numbers.append(self.order.firstIndex(of: index)! + 1)
                    listed.append(index)
                }
                guard !numbers.isEmpty else { return self.drop(sentence, "over_citation_limit") }
            }
            self.added += listed.filter { !sentence.cited.contains($0) }.count
            self.removed += sentence.cited.filter { !listed.contains($0) }.count
            self.kept.append((sentence.plain, numbers))
            return AnswerFilter.render(sentence.plain, citing: numbers)
        }

        private mutating func drop(_ sentence: Sentence, _ reason: String) -> String? {
            self.dropped[reason, default: 0] += 1
            self.removed += sentence.cited.count
            return nil
        }

        /// The citation listed as number `number` (1-based).
        func citation(_ number: Int, snippets: [String: String]) -> Citation {
            let passage = self.given[self.order[number - 1]]
            let found = passage.entry
            return Citation(
                id: found.entry.id, title: found.entry.title, kind: found.entry.kind, status: found.entry.status,
                snippet: snippets[found.entry.id] ?? ExtractiveAnswerer.snippet(passage.passage.text),
                score: ExtractiveAnswerer.rounded(found.fusedScore * 61 / 2), canonVersion: found.canonVersion)
        }

        /// The answer from the sentences kept so far, or nil when none was.
        func answer(retrievalConfidence: Double, snippets: [String: String]) -> Answer? {
            guard !self.kept.isEmpty else { return nil }
            let rendered = self.kept.map { AnswerFilter.render($0.plain, citing: $0.numbers) }.joined(separator: " ")
            let citations = self.order.indices.map { self.citation($0 + 1, snippets: snippets) }
            let keptShare = Double(self.kept.count) / Double(self.seen)
            let inventedShare = self.markers == 0 ? 0 : Double(self.invented) / Double(self.markers)
            let confidence = retrievalConfidence * (0.5 + 0.5 * keptShare) * (1 - 0.5 * inventedShare)
            let report = Report(
                changed: !self.dropped.isEmpty || self.added > 0 || (self.maxCitations > 0 && self.removed > 0),
                dropped: self.dropped, citationsAdded: self.added, citationsRemoved: self.removed)
            return Answer(
                text: rendered, citations: citations, confidence: ExtractiveAnswerer.rounded(confidence),
                report: report)
        }
    }

    /// `plain` with its citation markers before its closing punctuation: `Energy is conserved [1][2].`
    static func render(_ plain: String, citing numbers: [Int]) -> String {
        guard !numbers.isEmpty else { return plain }
        let markers = numbers.map { "[\($0)]" }.joined()
        guard let last = plain.last, ".!?".contains(last) else { return plain + " " + markers }
        return String(plain.dropLast()) + " " + markers + String(last)
    }

    /// Six words in a row of the system prompt.
    static func echoesSystemPrompt(_ sentence: String) -> Bool {
        let words = Self.words(sentence)
        guard words.count >= Self.echoLength else { return false }
        for start in 0...(words.count - Self.echoLength)
        where Self.systemShingles.contains(words[start..<(start + Self.echoLength)].joined(separator: " ")) {
            return true
        }
        return false
    }

    static let echoLength = 6
    static let systemShingles: Set<String> = {
        let words = Self.words(PromptBuilder.system)
        return Set((0...(words.count - echoLength)).map { words[$0..<($0 + echoLength)].joined(separator: " ") })
    }()

    static func words(_ text: String) -> [String] {
        text.lowercased().split { !($0.isLetter || $0.isNumber) }.map(String.init)
    }

    /// The passages of `retrieval` a model is given, in rank order: the entries the extractive
    /// answerer would cite, each as the text of its chunks (never an injected one).
    static func given(_ retrieval: RetrievalResult, layers: [CanonLayer], limit: Int, threshold: Float) -> [Given] {
        retrieval.entries.filter { $0.similarity >= threshold }.prefix(max(limit, 1)).map { found in
            let index = layers[found.layer].index
            let text = index.servedChunks(of: found.entry).map { index.chunkText[$0] }.joined(separator: "\n")
            return (found, PromptBuilder.Passage(title: found.entry.title, status: found.entry.status, text: text))
        }
    }

    /// `[3]`, `[1, 2]`, `[ 4 ]`.
    nonisolated(unsafe) static let marker = /\[\s*(\d{1,4}(?:\s*,\s*\d{1,4})*)\s*\]/

    /// A link, without the punctuation that may close the sentence after it.
    nonisolated(unsafe) static let link = /(?i)(?:https?:\/\/|www\.)[^\s<>()\[\]"'`]*[^\s<>()\[\]"'`.,;:!?]/
}
