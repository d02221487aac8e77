import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Turns every error that reaches the edge into RFC 9457 problem+json.
///
/// Known problems render as they are; Hummingbird's own HTTP errors (unknown route, body too large)
/// map to the matching problem; anything else is logged with its cause and shown to the caller as a
/// bare `internal-error`, so no internals leak.
public struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    /// A plane's own errors that have a problem of their own (the control plane: the database
    /// out of reach is 503 `database-unavailable`, not an internal error).
    let translate: @Sendable (any Error) -> Problem?

    public init(translate: @escaping @Sendable (any Error) -> Problem? = { _ in nil }) {
        self.translate = translate
    }

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let problem = Self.problem(for: error, translate: self.translate, logger: context.logger)
            return problem.response(instance: request.uri.path, requestID: request.headers[.requestID])
        }
    }

    /// The problem `error` is shown to a caller as (logged when it is a defect).
    public static func problem(
        for error: any Error, translate: (any Error) -> Problem? = { _ in nil }, logger: Logger
    ) -> Problem {
        if !(error is Problem), let problem = translate(error) {
            logger.warning(
                "request failed", metadata: ["problem": "\(problem.slug)", "error": "\(String(reflecting: error))"])
            return problem
        }
        switch error {
        case let problem as Problem:
            // A 500 is a defect; other 5xx (overload shed, a dependency down) are expected outcomes
            // that their own metrics and state changes report, and would flood the log per request.
            if problem.status == .internalServerError {
                logger.error("request failed", metadata: ["problem": "\(problem.slug)"])
            } else if problem.status.kind == .serverError {
                logger.debug("request refused", metadata: ["problem": "\(problem.slug)"])
            }
            return problem
        case let httpError as HTTPError:
            let status = httpError.status
            if status.kind == .serverError {
                logger.error("request failed", metadata: ["status": "\(status.code)"])
                return status == .internalServerError ? .internalError : .forStatus(status)
            }
            var problem = Problem.forStatus(status, detail: httpError.body)
            for field in httpError.headers where field.name != .contentType && field.name != .contentLength {
                problem.headers.append(field)
            }
            return problem
        case is DecodingError:
            return .badRequest("The request body is not valid JSON for this endpoint.")
        default:
            logger.error("unhandled error", metadata: ["error": "\(String(reflecting: error))"])
            return .internalError
        }
    }
}
