import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Shared

/// `POST /api/v1/query`: decodes the request, runs the `QueryPipeline` and renders its answer.
struct QueryController: Sendable {
    static let maximumBody = 64 * 1024

    let pipeline: QueryPipeline
    let inFlight: InFlightLimit

    func addRoutes(to group: RouterGroup<AuthenticatedRequestContext>) {
        group.post { request, context in
            try await self.query(request, context: context)
        }
    }

    func query(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        if let type = request.headers[.contentType], !type.lowercased().hasPrefix("application/json") {
            throw Problem.unsupportedMediaType("Send the query as application/json.")
        }
        try self.inFlight.enter()
        defer { self.inFlight.leave() }
        let body = try await request.collectBody(upTo: Self.maximumBody)
        let (answer, rateLimit) = try await self.pipeline.run(body, caller: context.caller)
        return Self.response(answer, rateLimit: rateLimit)
    }

    /// The stored answer with `cache_hit`, a fresh `query_id` (and the similarity of a semantic
    /// hit) added to its bytes; the limits and which cache answered in the headers.
    static func response(_ answer: QueryPipeline.Answer, rateLimit: RateLimitDecision) -> Response {
        var headers = rateLimit.headers
        headers[.zaasCache] = answer.outcome.rawValue
        headers[.contentType] = "application/json"
        headers[.cacheControl] = "no-store"
        let json = answer.stored.json
        var body = ByteBuffer()
        body.reserveCapacity(json.count + 128)
        body.writeBytes(json.dropLast())
        body.writeString(#","cache_hit":\#(answer.outcome != .miss),"query_id":"\#(UUID().lowercased)""#)
        if let similarity = answer.similarity {
            let rounded = String(format: "%.4f", Double(similarity))
            headers[.zaasCacheSimilarity] = rounded
            body.writeString(#","cache_similarity":\#(rounded)"#)
        }
        body.writeString("}")
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }
}
