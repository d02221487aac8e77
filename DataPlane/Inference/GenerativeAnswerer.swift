import Canon
import Foundation
import Retrieval

/// An answer written by a model from the retrieved passages, with its citations checked: a
/// citation may name only a passage the model was given. Invented or out-of-range numbers are
/// removed from the text and lower the confidence; the passages cited are listed (renumbered in
/// the order the answer first cites them). An answer that cites nothing it was given is refused
/// (`unsupported_answer`), and the extractive answer replaces it.
struct GenerativeAnswerer: Sendable {
    struct Answer: Sendable, Equatable {
        var text: String
        var citations: [Citation]
        var confidence: Double
        /// Citation numbers the model wrote that named no passage it was given.
        var inventedCitations: Int
        /// Share of the answer's sentences that carry a valid citation.
        var supportedShare: Double
    }

    /// The passages of `retrieval` a model is given, in rank order: the entries the extractive
    /// answerer would cite, each as the text of the chunks that matched.
    static func passages(_ retrieval: RetrievalResult, layers: [CanonLayer], limit: Int, threshold: Float)
        -> [(entry: RetrievedEntry, passage: PromptBuilder.Passage)]
    {
        retrieval.entries.filter { $0.similarity >= threshold }.prefix(max(limit, 1)).map { found in
            let index = layers[found.layer].index
            let text = found.entry.chunks.sorted().map { index.chunkText[$0] }.joined(separator: "\n")
            return (found, PromptBuilder.Passage(title: found.entry.title, status: found.entry.status, text: text))
        }
    }

    /// Checks the model's `text` against the `given` passages (numbered from 1).
    /// `retrievalConfidence` is the extractive formula's value for the same retrieval; nil when
    /// the answer cites nothing it was given.
    static func checked(
        _ text: String, given: [(entry: RetrievedEntry, passage: PromptBuilder.Passage)], maxCitations: Int,
        retrievalConfidence: Double, snippets: [String: String]
    ) -> Answer? {
        var order: [Int] = []  // given passage index (0-based) by new citation number
        var invented = 0
        var valid = 0
        // The answer as shown, and as it would be without the `max_citations` cap (for support).
        var rewritten = ""
        var uncapped = ""
        var rest = Substring(text)
        func append(_ numbers: [Int], to text: inout String) {
            if numbers.isEmpty {
                // Nothing left of the marker: drop the space before it too.
                while text.last == " " { text.removeLast() }
            } else {
                text += numbers.map { "[\($0)]" }.joined()
            }
        }
        while let match = rest.firstMatch(of: Self.marker) {
            let before = rest[rest.startIndex..<match.range.lowerBound]
            rewritten += before
            uncapped += before
            var numbers: [Int] = []
            for part in match.output.1.split(separator: ",") {
                guard let number = Int(part.trimmingCharacters(in: .whitespaces)), (1...given.count).contains(number)
                else {
                    invented += 1
                    continue
                }
                valid += 1
                if !order.contains(number - 1) { order.append(number - 1) }
                let renumbered = (order.firstIndex(of: number - 1) ?? 0) + 1
                if !numbers.contains(renumbered) { numbers.append(renumbered) }
            }
            append(numbers.filter { $0 <= maxCitations }, to: &rewritten)
            append(numbers, to: &uncapped)
            rest = rest[match.range.upperBound...]
        }
        rewritten += rest
        uncapped += rest
        let answer = rewritten.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !answer.isEmpty else { return nil }

        let sentences = Chunker.sentences(uncapped.replacingOccurrences(of: "\n", with: " "))
        let supported = sentences.filter { $0.firstMatch(of: Self.marker) != nil }.count
        let supportedShare = sentences.isEmpty ? 0 : Double(supported) / Double(sentences.count)
        if maxCitations > 0, order.isEmpty { return nil }

        let kept = order.prefix(maxCitations)
        let citations = kept.map { index -> Citation in
            let found = given[index].entry
            return Citation(
                id: found.entry.id, title: found.entry.title, kind: found.entry.kind, status: found.entry.status,
                snippet: snippets[found.entry.id] ?? ExtractiveAnswerer.snippet(given[index].passage.text),
                score: ExtractiveAnswerer.rounded(found.fusedScore * 61 / 2), canonVersion: found.canonVersion)
        }
        let numbers = valid + invented
        let inventedShare = numbers == 0 ? 0 : Double(invented) / Double(numbers)
        let confidence =
            maxCitations == 0
            ? retrievalConfidence
            : retrievalConfidence * (0.5 + 0.5 * supportedShare) * (1 - 0.5 * inventedShare)
        return Answer(
            text: answer, citations: citations, confidence: ExtractiveAnswerer.rounded(confidence),
            inventedCitations: invented, supportedShare: supportedShare)
    }

    /// `[3]`, `[1, 2]`, `[ 4 ]`.
    nonisolated(unsafe) static let marker = /\[\s*(\d{1,4}(?:\s*,\s*\d{1,4})*)\s*\]/
}
