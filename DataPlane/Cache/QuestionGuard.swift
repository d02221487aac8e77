import Canon
import Foundation

/// Similar embeddings are not enough to serve a cached answer: questions that differ only in a
/// number, a negation, the question word or one key term ("three examples" / "two examples",
/// "who proposed" / "when was it proposed", "predict" / "not predict", "Lagrangian" /
/// "Hamiltonian") embed above 0.95 with all-MiniLM-L6-v2. The guard compares the two questions'
/// words, which costs microseconds, and refuses the hit when any of these differ:
///
/// - numbers (digits, and number and ordinal words up to "thousand"), as multisets;
/// - negation (not, no, never, none, nothing, nobody, neither, nor, without, cannot, -n't);
/// - the question word (who, whom, whose, what, when, where, why, how; which as what): the
///   first one, since later ones join clauses;
/// - key terms: content words (stop words dropped, plural endings stripped) present in one
///   question and not the other, unless a word of the other question shares its first five
///   letters (`defined` / `definition`), and the term is one `isKeyTerm` accepts (the query path
///   passes "the tenant's canon contains it": words the canon does not know cannot change which
///   passages answer, so `explain` / `describe` may differ);
/// - key terms swapped around a directional word ("the Hamiltonian from the Lagrangian" / "the
///   Lagrangian from the Hamiltonian").
///
/// Words that only pad a question (exactly, briefly, please…) are ignored, as is a closing "or
/// not" and "one" after a modal verb ("how does one…").
public enum QuestionGuard {
    public enum Verdict: String, Sendable, Equatable {
        case compatible
        case numbers
        case negation
        case questionWord = "question_word"
        case keyTerm = "key_term"
        case wordOrder = "word_order"
    }

    /// Unicode NFKC, case folded, runs of white space as one space, trimmed: "What  is ＡＩ?"
    /// and "what is ai?" are the same question.
    public static func normalize(_ question: String) -> String {
        // ASCII (most questions): NFKC changes nothing and case folding is lower-casing.
        if question.utf8.allSatisfy({ $0 < 0x80 }) {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(question.utf8.count)
            var pendingSpace = false
            for byte in question.utf8 {
                if byte == 0x20 || (0x09...0x0D).contains(byte) {
                    pendingSpace = !bytes.isEmpty
                    continue
                }
                if pendingSpace { bytes.append(0x20) }
                pendingSpace = false
                bytes.append((0x41...0x5A).contains(byte) ? byte + 32 : byte)
            }
            return String(decoding: bytes, as: UTF8.self)
        }
        return question.precomposedStringWithCompatibilityMapping
            .folding(options: [.caseInsensitive], locale: nil)
            .split(whereSeparator: \.isWhitespace)
            .joined(separator: " ")
    }

    public static func compare(_ a: String, _ b: String, isKeyTerm: (String) -> Bool = { _ in true }) -> Verdict {
        let first = Words(a)
        let second = Words(b)
        if first.numbers != second.numbers { return .numbers }
        if first.negated != second.negated { return .negation }
        if first.questionWords != second.questionWords { return .questionWord }
        let (firstTerms, secondTerms) = (Set(first.terms), Set(second.terms))
        for (mine, theirs) in [(firstTerms, secondTerms), (secondTerms, firstTerms)] {
            for term in mine where !theirs.contains(term) && isKeyTerm(term) {
                let prefix = term.prefix(5)
                if term.count >= 5, theirs.contains(where: { $0.count >= 5 && $0.prefix(5) == prefix }) { continue }
                return .keyTerm
            }
        }
        // The same key terms around a directional word the other way round ("the Hamiltonian
        // from the Lagrangian" / "the Lagrangian from the Hamiltonian").
        let firstPairs = first.directed.filter { isKeyTerm($0.0) && isKeyTerm($0.1) }
        if second.directed.contains(where: { pair in firstPairs.contains { $0.0 == pair.1 && $0.1 == pair.0 } }) {
            return .wordOrder
        }
        return .compatible
    }

    struct Words {
        var numbers: [String: Int] = [:]
        var negated = false
        /// The interrogative: the first question word (`which` counts as `what`); later ones are
        /// conjunctions ("why is energy conserved when…").
        var questionWords: Set<String> = []
        /// Content terms in order of appearance.
        var terms: [String] = []
        /// The nearest content terms before and after each directional word (from, to, into…).
        var directed: [(String, String)] = []

        init(_ text: String) {
            var lowered = text.lowercased()
                .replacingOccurrences(of: "n't", with: " not").replacingOccurrences(of: "n’t", with: " not")
            // "Is X the case or not?" asks the same as "Is X the case?".
            for ending in [" or not?", " or not"] where lowered.hasSuffix(ending) {
                lowered = String(lowered.dropLast(ending.count))
            }
            var word = ""
            var words: [String] = []
            for character in lowered {
                if character.isLetter || character.isNumber || character == "." && !word.isEmpty && word.last!.isNumber
                {
                    word.append(character)
                } else if !word.isEmpty {
                    words.append(word)
                    word = ""
                }
            }
            if !word.isEmpty { words.append(word) }
            words = words.map { $0.hasSuffix(".") ? String($0.dropLast()) : $0 }
            var previousTerm: String?
            var pendingDirection = false
            for (position, word) in words.enumerated() {
                let afterModal = position > 0 && QuestionGuard.modals.contains(words[position - 1])
                if word == "one" && afterModal {
                    // "How does one get…": a pronoun, not a number.
                } else if let number = QuestionGuard.number(word) {
                    self.numbers[number, default: 0] += 1
                } else if QuestionGuard.negations.contains(word) {
                    self.negated = true
                } else if QuestionGuard.questionWords.contains(word) {
                    if self.questionWords.isEmpty { self.questionWords.insert(word == "which" ? "what" : word) }
                } else if QuestionGuard.directions.contains(word) {
                    pendingDirection = previousTerm != nil
                    continue
                }
                let terms = TextAnalyzer.terms(word).filter { !QuestionGuard.fillers.contains($0) }
                guard let term = terms.first, QuestionGuard.number(term) == nil, !(word == "one" && afterModal) else {
                    continue
                }
                self.terms.append(term)
                if pendingDirection, let before = previousTerm { self.directed.append((before, term)) }
                pendingDirection = false
                previousTerm = term
            }
        }
    }

    static let negations: Set<String> = [
        "not", "no", "never", "none", "nothing", "nobody", "neither", "nor", "without", "cannot", "nowhere",
    ]
    /// Words a question adds without changing what it asks.
    static let fillers: Set<String> = [
        "exactly", "briefly", "actually", "really", "please", "quick", "quickly", "question", "say", "simply",
        "basically", "precisely", "roughly", "short", "again",
    ]
    static let modals: Set<String> = [
        "does", "do", "did", "can", "could", "would", "should", "will", "might", "must", "may", "shall",
    ]
    static let directions: Set<String> = ["from", "to", "into", "onto", "than", "versus", "vs", "towards", "toward"]
    static let questionWords: Set<String> = ["who", "whom", "whose", "what", "when", "where", "why", "how", "which"]
    static let numberWords: [String: String] = {
        let cardinals = [
            "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
            "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
        ]
        let ordinals = [
            "zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
        ]
        var words: [String: String] = [:]
        for (value, word) in cardinals.enumerated() { words[word] = String(value) }
        for (value, word) in ordinals.enumerated() { words[word] = String(value) }
        for (word, value) in [
            ("thirty", "30"), ("forty", "40"), ("fifty", "50"), ("hundred", "100"), ("thousand", "1000"),
            ("once", "1"), ("twice", "2"), ("single", "1"), ("double", "2"), ("triple", "3"), ("half", "0.5"),
            ("pair", "2"), ("dozen", "12"), ("both", "2"),
        ] {
            words[word] = value
        }
        return words
    }()

    /// The value a number word or numeral stands for (`"3"`, `"three"` and `"third"` are all "3").
    static func number(_ word: String) -> String? {
        if let value = Self.numberWords[word] { return value }
        if let first = word.first, first.isNumber, let value = Double(word) {
            return value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        }
        return nil
    }
}
