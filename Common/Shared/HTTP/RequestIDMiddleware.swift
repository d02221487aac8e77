import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Gives every request an id: the caller's `X-Request-ID` when it is well formed, else a new UUID.
/// The id goes on the response, into the request's log metadata and into problem documents.
public struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        var request = request
        let id: String
        if let supplied = request.headers[.requestID], Self.isAcceptable(supplied) {
            id = supplied
        } else {
            id = UUID().uuidString.lowercased()
            var head = request.head
            head.headerFields[.requestID] = id
            request = Request(head: head, body: request.body)
        }
        var context = context
        context.logger[metadataKey: "request_id"] = .string(id)
        var response = try await next(request, context)
        response.headers[.requestID] = id
        return response
    }

    /// Up to 128 characters of `[A-Za-z0-9._-]`, so a caller cannot inject text into our logs.
    static func isAcceptable(_ id: String) -> Bool {
        guard !id.isEmpty, id.utf8.count <= 128 else { return false }
        return id.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2D || byte == 0x2E || byte == 0x5F
        }
    }
}
