import Foundation
import Hummingbird
import NIOCore

/// A health document: overall status plus one entry per dependency.
///
/// Served as `application/json` with 200 when the service can do its job; when it cannot, the same
/// facts go out as 503 problem+json (`type` …/unhealthy) with the checks as extension members.
public struct HealthReport: Sendable, Encodable {
    public enum Status: String, Sendable, Encodable {
        /// Everything is up.
        case ok
        /// Serving, but a dependency that is not on the critical path is down.
        case degraded
        /// Cannot serve.
        case down
    }

    public struct Check: Sendable, Encodable {
        public var status: String
        public var latencyMilliseconds: Double?
        public var detail: String?

        public init(status: String, latencyMilliseconds: Double? = nil, detail: String? = nil) {
            self.status = status
            self.latencyMilliseconds = latencyMilliseconds
            self.detail = detail
        }

        enum CodingKeys: String, CodingKey {
            case status
            case latencyMilliseconds = "latency_ms"
            case detail
        }
    }

    public var status: Status
    public var service: String
    public var version: String
    public var checks: [String: Check]
    public var extra: [String: ProblemValue]

    public init(
        status: Status,
        service: String,
        version: String = ZaaSBuild.version,
        checks: [String: Check],
        extra: [String: ProblemValue] = [:]
    ) {
        self.status = status
        self.service = service
        self.version = version
        self.checks = checks
        self.extra = extra
    }

    /// Why the service is not fully healthy, one line per failing check.
    public var reasons: [String] {
        self.checks.keys.sorted().compactMap { name in
            let check = self.checks[name]!
            guard check.status != "up" else { return nil }
            return "\(name) is \(check.status)" + (check.detail.map { ": \($0)" } ?? "")
        }
    }

    private var members: [String: ProblemValue] {
        var members = self.extra
        members["status"] = .string(self.status.rawValue)
        members["service"] = .string(self.service)
        members["version"] = .string(self.version)
        var checks: [String: ProblemValue] = [:]
        for (name, check) in self.checks {
            var entry: [String: ProblemValue] = ["status": .string(check.status)]
            if let latency = check.latencyMilliseconds {
                entry["latency_ms"] = .double((latency * 1000).rounded() / 1000)
            }
            if let detail = check.detail { entry["detail"] = .string(detail) }
            checks[name] = .object(entry)
        }
        members["checks"] = .object(checks)
        return members
    }

    public func response(request: Request) -> Response {
        if self.status == .down {
            // In a problem document `status` is the HTTP status code (RFC 9457), so the
            // health state travels as `health_status`.
            var members = self.members
            members["health_status"] = members.removeValue(forKey: "status")
            members["reasons"] = .array(self.reasons.map(ProblemValue.string))
            let problem = Problem(
                slug: "unhealthy",
                title: "Service Unavailable",
                status: .serviceUnavailable,
                detail: self.reasons.joined(separator: "; "),
                extensions: members,
                headers: [.retryAfter: "1"]
            )
            return problem.response(instance: request.uri.path, requestID: request.headers[.requestID])
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(self.members)) ?? Data("{}".utf8)
        return Response(
            status: .ok,
            headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}
