import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Shared

/// Obtains the node's credential by enrolling (`POST /internal/v1/enroll` with the fleet's
/// `nodes.enrollment_secret`) before the node starts: how the pods of an autoscaled Deployment
/// join the fleet without an operator issuing each one a credential (docs/deployment.md).
///
/// The credential is kept in the node's state folder (mode 0600). A node that restarts while the
/// control plane is out of reach starts with the kept one after `fallbackAfter` and serves from
/// its configuration copy, as a node given its credential would (static stability); with nothing
/// kept it waits for the control plane. A refusal (wrong secret, enrollment disabled, a bad node
/// id) stops the node at once with the control plane's reason.
public struct NodeEnroller: Sendable {
    let secret: String
    let nodeID: String
    /// Where the credential is kept.
    let path: String
    let maximumBackoff: Duration
    var fallbackAfter: Duration = .seconds(10)
    let logger: Logger

    public init(configuration: DataPlaneConfiguration, secret: String, logger: Logger) {
        self.secret = secret
        self.nodeID = configuration.nodeID
        self.path = configuration.stateDirectory + "/enrolled-credential"
        self.maximumBackoff = configuration.maximumBackoff
        self.logger = logger
    }

    /// Enrolls, trying again until the control plane answers; after `fallbackAfter` without an
    /// answer, the credential kept from the last enrollment, if any.
    func credential(using client: ControlPlaneClient) async throws -> String {
        let kept = self.kept()
        let started = ContinuousClock.now
        var backoff = Duration.milliseconds(100)
        while true {
            do {
                return try await self.attempt(using: client)
            } catch let error as EnrollmentError {
                throw error
            } catch {
                try Task.checkCancellation()
                if let kept, ContinuousClock.now - started >= self.fallbackAfter {
                    self.logger.warning(
                        "enrollment failed: starting with the credential kept from the last enrollment",
                        metadata: ["error": "\(error)"])
                    return kept
                }
                self.logger.warning(
                    "enrollment failed: trying again", metadata: ["error": "\(error)", "in": "\(backoff)"])
                try await Task.sleep(for: backoff)
                backoff = min(backoff * 2, self.maximumBackoff)
            }
        }
    }

    /// One enrollment: the new credential, kept. Throws `EnrollmentError` when the control plane
    /// refuses (the same request would be refused again), other errors when it could not answer.
    func attempt(using client: ControlPlaneClient) async throws -> String {
        let reply = try await client.enroll(nodeID: self.nodeID, secret: self.secret)
        switch reply.status {
        case 201:
            let enrollment = try ControlPlaneClient.decoder.decode(
                NodeEnrollment.self, from: Data(reply.body.readableBytesView))
            guard Self.isCredential(enrollment.token), enrollment.nodeId == self.nodeID else {
                throw EnrollmentError.refused("the control plane's answer is not a credential for \(self.nodeID)")
            }
            try self.keep(enrollment.token)
            self.logger.notice("enrolled: this node holds a credential of its own")
            return enrollment.token
        case 400, 401, 403, 409, 415, 422:
            throw EnrollmentError.refused(ControlPlaneError(reply).description)
        default:
            throw ControlPlaneError(reply)
        }
    }

    static func isCredential(_ text: String) -> Bool {
        text.hasPrefix("znode_") && Hex.isLowercase(String(text.dropFirst(6)), count: 64)
    }

    private func kept() -> String? {
        guard let data = FileManager.default.contents(atPath: self.path),
            let text = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
            Self.isCredential(text)
        else { return nil }
        return text
    }

    private func keep(_ token: String) throws {
        let directory = (self.path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try SnapshotFiles.writeAtomically(Array(token.utf8), to: self.path, directory: directory)
    }

    /// The kept credential is no longer valid once handed back.
    func forget() {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}

public enum EnrollmentError: Error, CustomStringConvertible {
    /// The control plane refused: sending the same again gets the same answer.
    case refused(String)

    public var description: String {
        switch self {
        case .refused(let reason): "node enrollment refused: \(reason)"
        }
    }
}

/// Hands an enrolled node's credential back when the node stops, after every service that uses it
/// (listed right after the control-plane client, so it stops just before it): the node leaves the
/// fleet at once instead of being listed as stale until it is retired.
struct EnrollmentRelease: Service {
    let control: ControlPlaneClient
    let enroller: NodeEnroller

    func run() async throws {
        try? await gracefulShutdown()
        do {
            try await self.control.leave()
            self.enroller.forget()
            self.enroller.logger.notice("left the fleet: the enrolled credential is handed back")
        } catch {
            self.enroller.logger.warning(
                "could not hand the enrolled credential back; the control plane retires it",
                metadata: ["error": "\(error)"])
        }
    }
}
