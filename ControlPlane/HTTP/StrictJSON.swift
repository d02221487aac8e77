import Foundation
import Hummingbird
import Shared

/// Reads a JSON request body strictly: a JSON object, no fields the endpoint does not know,
/// within the context's size limit. Each failure is a precise problem, and nothing is changed.
enum StrictJSON {
    static func decode<Body: Decodable>(
        _ type: Body.Type,
        from request: Request,
        context: some RequestContext,
        allowedFields: Set<String>,
        maximumBytes: Int? = nil
    ) async throws -> Body {
        let limit = maximumBytes ?? context.maxUploadSize
        if let contentType = request.headers[.contentType], !contentType.lowercased().hasPrefix("application/json") {
            throw Problem.unsupportedMediaType("Send the body as application/json.")
        }
        let buffer = try await request.collectBody(upTo: limit)
        let data = Data(buffer.readableBytesView)
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw Problem.badRequest("The body is not valid JSON.")
        }
        guard let fields = object as? [String: Any] else {
            throw Problem.badRequest("The body must be a JSON object.")
        }
        let unknown = Set(fields.keys).subtracting(allowedFields).sorted()
        if !unknown.isEmpty {
            throw Problem.validation(unknown.map { FieldError($0, "unknown field") })
        }
        do {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            return try decoder.decode(Body.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw Problem.validation([FieldError(key.stringValue, "is required")])
        } catch let DecodingError.typeMismatch(_, context) {
            throw Problem.validation([FieldError(Self.path(context), "has the wrong type")])
        } catch let DecodingError.valueNotFound(_, context) {
            throw Problem.validation([FieldError(Self.path(context), "must not be null")])
        } catch let DecodingError.dataCorrupted(context) {
            throw Problem.validation([FieldError(Self.path(context), "is not valid")])
        }
    }

    static func path(_ context: DecodingError.Context) -> String {
        let path = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        return path.isEmpty ? "body" : path
    }

    /// A JSON response with the given status.
    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws
        -> Response
    {
        try JSONResponse.make(value, status: status, headers: headers)
    }
}
