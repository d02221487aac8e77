import Foundation
import TestSupport
import Testing

extension ProcessClusters {
    /// Nodes that enroll for their own credential with the fleet's enrollment secret, as the pods
    /// of the Kubernetes Deployment do (infra/k8s, docs/deployment.md).
    @Suite("node enrollment: pods obtain, renew and hand back their own credentials", .serialized)
    struct EnrollmentClusterTests {
        static let secret = String(repeating: "5e", count: 32)

        static func credentials(_ cluster: Cluster, _ ops: String) async throws -> [[String: Any]] {
            let listed = try await TestHTTP.send(
                "GET", cluster.control.baseURL + "/admin/v1/nodes/credentials", bearer: ops)
            return try #require(listed.json?["items"] as? [[String: Any]], "\(listed.status) \(listed.text)")
        }

        static func active(_ items: [[String: Any]], node: String) -> [[String: Any]] {
            items.filter { $0["node_id"] as? String == node && $0["status"] as? String == "active" }
        }

        static func enroll(_ cluster: Cluster, node: String, secret: String?, body: String? = nil) async throws
            -> TestHTTP.Reply
        {
            try await TestHTTP.send(
                "POST", cluster.control.baseURL + "/internal/v1/enroll", bearer: secret,
                json: body ?? #"{"node_id": "\#(node)"}"#)
        }

        static func expectProblem(_ reply: TestHTTP.Reply, _ status: Int, _ slug: String) {
            #expect(reply.status == status, "\(reply.status) \(reply.text)")
            #expect(reply.headers["content-type"] == "application/problem+json")
            #expect(reply.json?["type"] as? String == "https://zaas.dev/problems/\(slug)", "\(reply.text)")
        }

        @Test(
            "a node given only the enrollment secret enrolls and serves; wrong secrets and bad ids are refused; a node gone without a word is retired, a live one is not; a retired node enrolls again; a stopped node hands its credential back; restarted while the control plane is down, it starts with the kept one"
        )
        func enrollment() async throws {
            try await Cluster.with(
                nodeCount: 1,
                nodeSettings: [
                    "nodes.token": "", "nodes.enrollment_secret": Self.secret, "control.watch_wait_seconds": "2",
                ],
                controlSettings: [
                    "nodes.enrollment_secret": Self.secret, "nodes.enrolled_retire_after_seconds": "6",
                    "config.watch_max_wait_seconds": "2",
                ]
            ) { cluster in
                let control = cluster.control.baseURL
                let node = cluster.nodes[0]
                let signIn = try await TestHTTP.send(
                    "POST", control + "/admin/v1/sessions",
                    json: #"{"email": "ops@zaas.example", "password": "\#(Cluster.password)"}"#)
                let ops = try #require(signIn.json?["token"] as? String, "\(signIn.text)")
                let (_, admin) = try await cluster.makeTenant(slug: "lab")
                let key = try await cluster.createKey(token: admin)

                // Enrolled at start: it receives the configuration with a credential of its own,
                // which replaced the one the test harness had issued for its id.
                #expect(try await cluster.waitForAllNodes(key.text, status: 200, timeout: .seconds(20)) != nil)
                var items = try await Self.credentials(cluster, ops)
                let enrolled = Self.active(items, node: "node-1")
                #expect(enrolled.count == 1 && enrolled.first?["enrolled"] as? Bool == true, "\(items)")
                let firstID = try #require(enrolled.first?["id"] as? String)
                let kept = try #require(node.environment["ZAAS_NODE_STATE_DIR"]) + "/enrolled-credential"
                let keptToken = try String(contentsOfFile: kept, encoding: .utf8)
                #expect(keptToken.hasPrefix("znode_"))
                let mode = try FileManager.default.attributesOfItem(atPath: kept)[.posixPermissions] as? Int
                #expect(mode == 0o600)

                // Refusals, each a problem and none a credential.
                Self.expectProblem(
                    try await Self.enroll(cluster, node: "x", secret: nil), 401, "node-enrollment-refused")
                Self.expectProblem(
                    try await Self.enroll(cluster, node: "x", secret: String(repeating: "00", count: 32)), 401,
                    "node-enrollment-refused")
                Self.expectProblem(
                    try await Self.enroll(cluster, node: "../x", secret: Self.secret), 422, "validation-failed")
                Self.expectProblem(
                    try await Self.enroll(
                        cluster, node: "x", secret: Self.secret, body: #"{"node_id": "x", "replace": false}"#),
                    422, "validation-failed")
                Self.expectProblem(
                    try await Self.enroll(cluster, node: "x", secret: Self.secret, body: "[1]"), 400, "bad-request")

                // One that enrolls and never reports is retired; the live node is not. One that
                // hands its credential back is revoked at once; an operator's cannot be handed back.
                let ghost = try await Self.enroll(cluster, node: "ghost-1", secret: Self.secret)
                #expect(ghost.status == 201, "\(ghost.text)")
                let leaver = try #require(
                    try await Self.enroll(cluster, node: "ghost-2", secret: Self.secret).json?["token"] as? String)
                let left = try await TestHTTP.send("DELETE", control + "/internal/v1/enroll", bearer: leaver)
                #expect(left.status == 204, "\(left.text)")
                Self.expectProblem(
                    try await TestHTTP.send("DELETE", control + "/internal/v1/enroll", bearer: leaver), 401,
                    "node-unauthenticated")
                let issued = try await TestHTTP.send(
                    "POST", control + "/admin/v1/nodes/credentials", bearer: ops, json: #"{"node_id": "manual-1"}"#)
                let manual = try #require(issued.json?["token"] as? String, "\(issued.text)")
                Self.expectProblem(
                    try await TestHTTP.send("DELETE", control + "/internal/v1/enroll", bearer: manual), 409,
                    "node-credential-not-enrolled")
                let retired = try await TestHTTP.waitUntil(timeout: .seconds(30)) {
                    Self.active(try await Self.credentials(cluster, ops), node: "ghost-1").isEmpty
                }
                #expect(retired != nil, "the silent node was never retired")
                items = try await Self.credentials(cluster, ops)
                #expect(Self.active(items, node: "node-1").map { $0["id"] as? String } == [firstID], "\(items)")
                #expect(Self.active(items, node: "ghost-2").isEmpty)
                #expect(Self.active(items, node: "manual-1").count == 1)

                // Retired under a running node (as after a long partition): its next call is
                // refused, it enrolls again and carries on.
                let revoke = try await TestHTTP.send(
                    "DELETE", control + "/admin/v1/nodes/credentials/\(firstID)", bearer: ops)
                #expect(revoke.status == 200)
                let renewed = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                    let active = Self.active(try await Self.credentials(cluster, ops), node: "node-1")
                    return active.count == 1 && active.first?["id"] as? String != firstID
                }
                #expect(renewed != nil, "the node did not enroll again")
                let (_, other) = try await cluster.makeTenant(slug: "after-renewal")
                let later = try await cluster.createKey(token: other)
                #expect(try await cluster.waitForAllNodes(later.text, status: 200, timeout: .seconds(20)) != nil)

                // Stopped: the credential is handed back and the kept copy removed.
                #expect(await node.terminate() == 0)
                #expect(Self.active(try await Self.credentials(cluster, ops), node: "node-1").isEmpty)
                #expect(!FileManager.default.fileExists(atPath: kept))

                // Killed, then started while the control plane is down: it starts with the
                // credential it kept and serves keys from its configuration copy.
                try await cluster.start(node)
                #expect(try await cluster.waitForAllNodes(key.text, status: 200, timeout: .seconds(20)) != nil)
                node.kill()
                #expect(await cluster.control.terminate() == 0)
                try await cluster.start(node)
                #expect(try await cluster.waitForAllNodes(key.text, status: 200, timeout: .seconds(30)) != nil)
                #expect(node.log().contains("starting with the credential kept from the last enrollment"))
            }
        }
    }
}
