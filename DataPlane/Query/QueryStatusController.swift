import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Shared

/// `GET /api/v1/queries/{id}`: an asynchronous query (`QueryJobs`). While it waits or runs, 202
/// with its state and `Retry-After`; once it has run, exactly the response the synchronous call
/// would have given (200 and the answer, or the problem and its status). Only the tenant that
/// asked sees it: any other id, like an unknown or expired one, is 404.
struct QueryStatusController: Sendable {
    let jobs: QueryJobs

    static func location(_ id: UUID) -> String { "/api/v1/queries/\(id.lowercased)" }

    func addRoutes(to group: RouterGroup<AuthenticatedRequestContext>) {
        group.get(":id") { _, context in
            guard let text = context.parameters.get("id"), let id = UUID(uuidString: text) else {
                throw Problem.queryNotFound
            }
            let status: QueryJobs.Status?
            do {
                status = try await self.jobs.status(id)
            } catch {
                throw Problem.asyncUnavailable
            }
            guard let status, status.tenant == context.tenant.id else { throw Problem.queryNotFound }
            switch status.state {
            case .queued, .running:
                let submitted = status.submittedAt.formatted(.iso8601)
                let body =
                    #"{"query_id":"\#(id.lowercased)","status":"\#(status.state.rawValue)","submitted_at":"\#(submitted)","attempts":\#(status.attempts)}"#
                return Response(
                    status: .accepted,
                    headers: [
                        .contentType: "application/json", .cacheControl: "no-store", .retryAfter: "1",
                        .location: Self.location(id),
                    ],
                    body: .init(byteBuffer: ByteBuffer(string: body)))
            case .done, .failed:
                let code = status.status ?? 500
                return Response(
                    status: HTTPResponse.Status(code: code),
                    headers: [
                        .contentType: status.state == .done ? "application/json" : "application/problem+json",
                        .cacheControl: "no-store",
                    ],
                    body: .init(byteBuffer: ByteBuffer(string: status.result ?? "")))
            }
        }
    }
}

extension Problem {
    /// No asynchronous query of this tenant has that id (never submitted, another tenant's, or
    /// its result has expired).
    static var queryNotFound: Problem {
        Problem(
            slug: "query-not-found", title: "Not Found", status: .notFound,
            detail: "No asynchronous query of this tenant has that id; results are kept for the tenant's cache TTL.")
    }

    /// Asynchronous queries are kept in Redis, which this node cannot reach now.
    static var asyncUnavailable: Problem {
        Problem(
            slug: "async-unavailable", title: "Service Unavailable", status: .serviceUnavailable,
            detail: "Asynchronous queries cannot be recorded or read now; ask synchronously or try again.",
            headers: [.retryAfter: "5"])
    }
}
