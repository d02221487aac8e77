import Crypto
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Shared

/// Nodes that enroll themselves (`InternalAPI.enroll`), as the pods of an autoscaled Deployment
/// do: no operator issues each one a credential.
///
/// - `POST /internal/v1/enroll` with `Authorization: Bearer <nodes.enrollment_secret>` and
///   `{"node_id": …}`: a credential of the node's own, shown once, replacing any active one of
///   that node id (a restarted pod enrolls again). The secret lets a holder only become a node:
///   it cannot sign in, issue keys or revoke other credentials.
/// - `DELETE /internal/v1/enroll` with the node's credential: an enrolled node hands it back as it
///   stops, so it leaves the fleet at once instead of being listed as stale.
struct EnrollmentController: Sendable {
    let credentials: NodeCredentialCache
    let secretDigest: [UInt8]?

    /// Before the node authenticator: the caller holds no credential yet.
    func addRoutes(to router: Router<AdminRequestContext>) {
        router.post(RouterPath(InternalAPI.enroll)) { request, context in
            guard let expected = self.secretDigest else { throw Problem.nodeEnrollmentDisabled }
            guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
                Self.matches(String(header.dropFirst("Bearer ".count)), expected)
            else { throw Problem.nodeEnrollmentRefused }
            struct Enroll: Decodable {
                let nodeId: String
            }
            let body = try await StrictJSON.decode(
                Enroll.self, from: request, context: context, allowedFields: ["node_id"], maximumBytes: 1024)
            guard NodeRegistry.isValidNodeID(body.nodeId) else {
                throw Problem.validation([FieldError("node_id", "1 to 200 characters of letters, digits and . _ : -")])
            }
            let (credential, token) = try await self.credentials.store.issue(
                nodeID: body.nodeId, operatorID: nil, replace: true, logger: context.logger)
            context.logger.notice(
                "node enrolled", metadata: ["credential": "\(credential.id)", "node": "\(credential.nodeId)"])
            return try StrictJSON.response(
                NodeEnrollment(nodeId: credential.nodeId, token: token.text), status: .created)
        }
    }

    /// Behind the node authenticator: the credential handed back is the one presented.
    func addReleaseRoute(to group: RouterGroup<NodeContext>) {
        group.delete(RouterPath(InternalAPI.enroll)) { _, context in
            let id = context.node.credentialID
            guard try await self.credentials.store.release(id: id, logger: context.logger) != nil else {
                throw Problem.nodeCredentialNotEnrolled
            }
            self.credentials.forget(credentialID: id)
            context.logger.notice("node left the fleet", metadata: ["credential": "\(id)"])
            return Response(status: .noContent)
        }
    }

    /// Compares digests, so the time taken says nothing about how much of the secret matched.
    static func matches(_ presented: String, _ expected: [UInt8]) -> Bool {
        let digest = Array(SHA256.hash(data: Array(presented.utf8)))
        return zip(digest, expected).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0 && digest.count == expected.count
    }
}

/// Revokes enrolled credentials whose node has gone without handing its credential back (a pod
/// killed, a machine lost): every quarter of `retireAfter`, at most once a minute. The first round
/// waits `retireAfter` from the control plane's start: after an outage of the control plane
/// itself, live nodes report again before any of them is judged gone.
struct EnrolledNodeRetirer: Service {
    let credentials: NodeCredentialCache
    let retireAfter: Duration
    let logger: Logger

    func run() async throws {
        let interval = min(self.retireAfter / 4, .seconds(60))
        await Rounds.run(firstAfter: self.retireAfter, every: interval) {
            do {
                for credential in try await self.credentials.store.retireEnrolled(
                    after: self.retireAfter, logger: self.logger)
                {
                    self.credentials.forget(credentialID: credential.id)
                    self.logger.notice(
                        "enrolled node retired: not seen for the retirement period",
                        metadata: ["credential": "\(credential.id)", "node": "\(credential.nodeId)"])
                }
                return true
            } catch {
                self.logger.warning("retiring enrolled nodes failed", metadata: ["error": "\(error)"])
                return false
            }
        }
    }
}

extension Problem {
    static var nodeEnrollmentDisabled: Problem {
        Problem(
            slug: "node-enrollment-disabled", title: "Forbidden", status: .forbidden,
            detail:
                "Nodes cannot enroll themselves here: nodes.enrollment_secret is not set. Issue a credential with `zaasctl nodes issue`."
        )
    }

    static var nodeEnrollmentRefused: Problem {
        Problem(
            slug: "node-enrollment-refused", title: "Unauthorized", status: .unauthorized,
            detail: "Send the fleet's enrollment secret (nodes.enrollment_secret) as `Authorization: Bearer <secret>`.",
            headers: [.wwwAuthenticate: "Bearer"])
    }

    static var nodeCredentialNotEnrolled: Problem {
        Problem(
            slug: "node-credential-not-enrolled", title: "Conflict", status: .conflict,
            detail: "Only a credential the node enrolled for can be handed back; an operator revokes issued ones.")
    }
}
