import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Shared

/// `GET /api/v1/stats`: the tenant's usage for a period (a key with `stats:read`; docs/billing.md).
/// The figures come from the control plane, which keeps the rollups of the audit trail; this node
/// adds the rate limit the key meets now and what remains of it, read from the shared buckets
/// without spending a query. `period=YYYY-MM`, or `from` and `to` on whole hours; the current
/// calendar month (UTC) by default. Bad parameters get the control plane's 422.
struct StatsController: Sendable {
    let control: ControlPlaneClient
    let limiter: RateLimiter

    func addRoutes(to group: RouterGroup<AuthenticatedRequestContext>) {
        group.get { request, context in
            var query: [(String, String)] = []
            for name in ["period", "from", "to"] {
                if let value = request.uri.queryParameters[Substring(name)] { query.append((name, String(value))) }
            }
            let reply: ControlPlaneClient.Reply
            do {
                reply = try await self.control.stats(tenant: context.tenant.id, query: query)
            } catch {
                context.logger.warning("stats could not reach the control plane", metadata: ["error": "\(error)"])
                throw Problem.statsUnavailable
            }
            guard reply.status == 200 else {
                // The control plane's problem (a bad period) is the caller's: passed on as it is.
                guard (400..<500).contains(reply.status) else { throw Problem.statsUnavailable }
                return Response(
                    status: HTTPResponse.Status(code: Int(reply.status)),
                    headers: [.contentType: "application/problem+json", .cacheControl: "no-store"],
                    body: .init(byteBuffer: reply.body))
            }
            var report = try UsageReport.decoder.decode(UsageReport.self, from: Data(reply.body.readableBytesView))
            let buckets = RateLimitBucket.buckets(
                key: context.key.id, tenant: context.tenant.id, policy: context.policy)
            if let now = try? await self.limiter.decide(buckets, cost: 0) {
                report.limit = UsageReport.Limit(limit: now.limit, remaining: now.remaining, resetSeconds: now.reset)
            }
            return try JSONResponse.make(report)
        }
    }
}

extension Problem {
    /// The control plane, which keeps usage, cannot be reached.
    static var statsUnavailable: Problem {
        Problem(
            slug: "stats-unavailable", title: "Service Unavailable", status: .serviceUnavailable,
            detail: "Usage figures come from the control plane, which this node cannot reach now. Queries still work.",
            headers: [.retryAfter: "5"])
    }
}
