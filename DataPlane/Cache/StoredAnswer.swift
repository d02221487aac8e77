import Foundation

/// An answer as the cache keeps it.
struct CachedAnswer: Codable, Sendable, Equatable {
    var answer: String
    var citations: [Citation]
    var confidence: Double
    var modelUsed: String
    var canonVersion: String
    var covered: Bool
    /// Which class answered and why (absent in answers cached before routing existed).
    var route: InferenceEngine.Route? = nil
    /// Why the answer is not from the first model tried, when it is not.
    var fallbackReason: String? = nil
    /// What the filter did to a model's answer (absent for the extractive answerer's).
    var filter: AnswerFilter.Report? = nil

    enum CodingKeys: String, CodingKey {
        case answer, citations, confidence, covered, route, filter
        case modelUsed = "model_used"
        case canonVersion = "canon_version"
        case fallbackReason = "fallback_reason"
    }
}

/// An answer as stored: `CachedAnswer` encoded once, as a JSON object whose fields are the
/// response's. A hit is answered by adding `cache_hit` and a fresh `query_id` to these bytes,
/// without decoding or encoding the answer again.
struct StoredAnswer: Sendable, Equatable {
    let json: [UInt8]

    init(_ answer: CachedAnswer) throws {
        self.json = Array(try StoredAnswer.encoder.encode(answer))
    }

    /// Bytes from a cache: accepted when they hold a non-empty JSON object (as this code writes them).
    init?(bytes: [UInt8]) {
        guard bytes.count > 2, bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}") else { return nil }
        self.json = bytes
    }

    var answer: CachedAnswer? { try? StoredAnswer.decoder.decode(CachedAnswer.self, from: Data(self.json)) }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
    static let decoder = JSONDecoder()
}

/// Which cache answered (`X-ZaaS-Cache`).
enum CacheOutcome: String, Sendable, CaseIterable {
    case exact, semantic, miss
}
