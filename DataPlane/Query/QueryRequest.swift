import Foundation
import HTTPTypes
import NIOCore
import Shared

/// A validated `POST /api/v1/query` body.
struct QueryRequest: Sendable, Equatable {
    enum ModelPreference: String, Sendable, CaseIterable {
        case auto, local, cloud
        case largeLocal = "large-local"
    }

    static let fields: Set<String> = ["question", "context", "max_citations", "model_preference", "async"]
    static let maximumQuestion = 4000
    static let maximumContext = 16000
    static let maximumCitations = 20
    static let defaultCitations = 5

    var question: String
    var context: String?
    var maxCitations: Int
    var modelPreference: ModelPreference
    /// `true`: answered later (202 and the query's id now, the answer from
    /// `GET /api/v1/queries/{id}`); `false`: answered in the response. nil (not said): as the
    /// tenant's quota policy says for the class the query is routed to (`async_model_classes`).
    var async: Bool?

    /// Every problem of the body at once; the tier's citation limit caps `max_citations`.
    init(json bytes: ByteBuffer, citationLimit: Int) throws {
        let fields: [String: JSONValue]
        do {
            fields = try JSONDecoder().decode([String: JSONValue].self, from: Data(bytes.readableBytesView))
        } catch {
            throw Problem.invalidQuery(["body": "must be a JSON object"])
        }
        var errors: [String: String] = [:]
        for unknown in Set(fields.keys).subtracting(Self.fields) { errors[unknown] = "unknown field" }

        var question = ""
        switch fields["question"] {
        case .string(let text):
            question = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if question.isEmpty {
                errors["question"] = "must not be empty"
            } else if let problem = TextRules.problem(question, length: 1...Self.maximumQuestion, multiline: true) {
                errors["question"] = problem
            }
        case nil: errors["question"] = "is required"
        default: errors["question"] = "must be a string"
        }

        var context: String?
        switch fields["context"] {
        case nil, .null: break
        case .string(let text):
            if let problem = TextRules.problem(text, length: 0...Self.maximumContext, multiline: true) {
                errors["context"] = problem
            } else if !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                context = text
            }
        default: errors["context"] = "must be a string"
        }

        var maxCitations = min(Self.defaultCitations, citationLimit)
        switch fields["max_citations"] {
        case nil: break
        case .integer(let value) where (0...Self.maximumCitations).contains(value):
            if value > citationLimit {
                errors["max_citations"] = "must be at most \(citationLimit) on this tenant's tier"
            } else {
                maxCitations = value
            }
        default: errors["max_citations"] = "must be an integer from 0 to \(Self.maximumCitations)"
        }

        var preference = ModelPreference.auto
        switch fields["model_preference"] {
        case nil: break
        case .string(let text) where ModelPreference(rawValue: text) != nil:
            preference = ModelPreference(rawValue: text)!
        default:
            errors["model_preference"] =
                "must be one of \(ModelPreference.allCases.map(\.rawValue).joined(separator: ", "))"
        }

        var async: Bool?
        switch fields["async"] {
        case nil, .null: break
        case .bool(let value): async = value
        default: errors["async"] = "must be true or false"
        }
        guard errors.isEmpty else { throw Problem.invalidQuery(errors) }
        self.question = question
        self.context = context
        self.maxCitations = maxCitations
        self.modelPreference = preference
        self.async = async
    }
}

extension QueryRequest {
    /// A model class the tenant's tier (or quota policy) does not include is refused (403);
    /// `auto` always passes: the router picks among the classes the tenant has.
    func requireAllowed(by policy: TenantPolicy) throws {
        let requested: ModelClasses
        switch self.modelPreference {
        case .auto: return
        case .local: requested = .local
        case .cloud: requested = .cloud
        case .largeLocal: requested = .largeLocal
        }
        guard policy.modelClasses.contains(requested) else {
            throw Problem.modelClassNotAllowed(self.modelPreference.rawValue, tier: policy.tier)
        }
    }
}

/// Any JSON value, keeping its type: `true` is not 1, `2.5` is not an integer.
enum JSONValue: Decodable, Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case other

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        // Strings first: most fields are strings, and every failed attempt costs a thrown error.
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else {
            self = .other
        }
    }
}

extension Problem {
    /// 400 with every invalid field, sorted by name.
    static func invalidQuery(_ errors: [String: String]) -> Problem {
        .fieldErrors(
            slug: "invalid-query", title: "Bad Request", status: .badRequest,
            errors.sorted { $0.key < $1.key }.map { FieldError($0.key, $0.value) })
    }
}

extension Problem {
    static func modelClassNotAllowed(_ modelClass: String, tier: String) -> Problem {
        Problem(
            slug: "model-class-not-allowed", title: "Forbidden", status: .forbidden,
            detail:
                "The \(tier) tier does not include \(modelClass) models. Send model_preference auto, or a class the tier includes."
        )
    }
}
