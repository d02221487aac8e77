import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// An RFC 9457 problem: what the caller sees for every error, always as `application/problem+json`.
///
/// `type` is stable and documented (docs/problems.md); clients branch on it, never on `detail`.
public struct Problem: Error, Sendable, Equatable {
    /// The stable part of the `type` URI; `https://zaas.dev/problems/<slug>`.
    public var slug: String
    public var title: String
    public var status: HTTPResponse.Status
    public var detail: String?
    /// Extension members, e.g. `errors` for validation problems. Values must be JSON-safe.
    public var extensions: [String: ProblemValue]
    /// Headers to add to the response (for example `Retry-After`).
    public var headers: HTTPFields

    public static let typeBase = "https://zaas.dev/problems/"

    public init(
        slug: String,
        title: String,
        status: HTTPResponse.Status,
        detail: String? = nil,
        extensions: [String: ProblemValue] = [:],
        headers: HTTPFields = [:]
    ) {
        self.slug = slug
        self.title = title
        self.status = status
        self.detail = detail
        self.extensions = extensions
        self.headers = headers
    }

    public var type: String { Self.typeBase + slug }
}

/// A JSON value allowed in a problem's extension members.
public enum ProblemValue: Sendable, Equatable, Encodable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case array([ProblemValue])
    case object([String: ProblemValue])

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

// The catalogue of problems that both planes raise. Each has a stable slug.
extension Problem {
    public static func notFound(_ detail: String? = nil) -> Problem {
        Problem(slug: "not-found", title: "Not Found", status: .notFound, detail: detail)
    }

    public static func methodNotAllowed(_ detail: String? = nil) -> Problem {
        Problem(slug: "method-not-allowed", title: "Method Not Allowed", status: .methodNotAllowed, detail: detail)
    }

    public static func forbidden(_ detail: String) -> Problem {
        Problem(slug: "forbidden", title: "Forbidden", status: .forbidden, detail: detail)
    }

    /// Canon updates come with Enterprise (or a quota policy that allows them).
    public static var canonUpdatesNotAllowed: Problem {
        Problem(
            slug: "canon-updates-not-allowed", title: "Canon Updates Not Allowed", status: .forbidden,
            detail: "This tenant's tier does not include canon updates; they come with Enterprise "
                + "(or a quota policy that allows them).")
    }

    public static func badRequest(_ detail: String) -> Problem {
        Problem(slug: "bad-request", title: "Bad Request", status: .badRequest, detail: detail)
    }

    public static func payloadTooLarge(_ detail: String? = nil) -> Problem {
        Problem(slug: "payload-too-large", title: "Payload Too Large", status: .contentTooLarge, detail: detail)
    }

    public static func unsupportedMediaType(_ detail: String? = nil) -> Problem {
        Problem(
            slug: "unsupported-media-type",
            title: "Unsupported Media Type",
            status: .unsupportedMediaType,
            detail: detail
        )
    }

    public static func serviceUnavailable(_ detail: String? = nil) -> Problem {
        Problem(slug: "service-unavailable", title: "Service Unavailable", status: .serviceUnavailable, detail: detail)
    }

    /// The only thing the caller learns about a failure we did not anticipate.
    public static var internalError: Problem {
        Problem(
            slug: "internal-error",
            title: "Internal Server Error",
            status: .internalServerError,
            detail: "The server could not complete the request. Quote the request id when reporting this."
        )
    }

    /// A generic problem for a status code that no specific problem describes.
    public static func forStatus(_ status: HTTPResponse.Status, detail: String? = nil) -> Problem {
        switch status {
        case .notFound: return .notFound(detail)
        case .methodNotAllowed: return .methodNotAllowed(detail)
        case .contentTooLarge: return .payloadTooLarge(detail)
        case .unsupportedMediaType: return .unsupportedMediaType(detail)
        case .serviceUnavailable: return .serviceUnavailable(detail)
        case .internalServerError: return .internalError
        default:
            let slug = status.reasonPhrase.lowercased().split(whereSeparator: { !$0.isLetter && !$0.isNumber })
                .joined(separator: "-")
            return Problem(
                slug: slug.isEmpty ? "http-\(status.code)" : slug,
                title: status.reasonPhrase,
                status: status,
                detail: detail
            )
        }
    }
}

extension Problem: HTTPResponseError {
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        self.response(instance: request.uri.path, requestID: request.headers[.requestID])
    }

    /// Renders the problem as `application/problem+json`.
    public func response(instance: String?, requestID: String?) -> Response {
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        headers[.cacheControl] = "no-store"
        return Response(
            status: self.status,
            headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: self.json(instance: instance, requestID: requestID)))
        )
    }

    /// The problem's JSON object, on one line (as a server-sent event carries it too).
    public func json(instance: String?, requestID: String?) -> Data {
        var body: [String: ProblemValue] = self.extensions
        body["type"] = .string(self.type)
        body["title"] = .string(self.title)
        body["status"] = .int(self.status.code)
        if let detail { body["detail"] = .string(detail) }
        if let instance { body["instance"] = .string(instance) }
        if let requestID { body["request_id"] = .string(requestID) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding a dictionary of ProblemValue cannot fail.
        return (try? encoder.encode(body)) ?? Data(#"{"type":"\#(Problem.typeBase)internal-error"}"#.utf8)
    }
}
