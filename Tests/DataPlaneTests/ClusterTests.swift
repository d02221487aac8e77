import ControlPlane
import Foundation
import Logging
import PostgresNIO
import Shared
import TestSupport
import Testing

/// The control plane and two data-plane nodes as real processes (the executables `swift build`
/// made), against real PostgreSQL and Redis.
/// Every suite that runs the planes as processes, one suite at a time: each starts a control
/// plane and up to three nodes (each loading the embedding model), and together, beside the rest
/// of the tests on two cores, they starved the machine long enough for Redis connects to time out.
@Suite(.serialized) enum ProcessClusters {}

final class Cluster: @unchecked Sendable {
    static let password = "long enough passphrase 42"
    static let logger = Logger(label: "test.cluster")

    let database: TestDatabase
    let control: ServerProcess
    let nodes: [ServerProcess]
    let directory: String

    /// `nodeSettings` override the nodes' settings (a private Redis, a fallback…).
    init(
        database: TestDatabase, nodeCount: Int = 2, nodeSettings: [String: String] = [:],
        controlSettings: [String: String] = [:]
    ) throws {
        self.database = database
        let directory = ConfigFixtures.temporaryDirectory()
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let environment = TestEnvironment.shared
        let controlPort = try RedisServerProcess.freePort()
        self.control = try ServerProcess(
            name: "control", executable: "zaas-control",
            settings: environment.controlPlaneSettings(database: database.name).merging([
                "bootstrap.operator_email": "ops@zaas.example",
                "bootstrap.operator_password": Self.password,
                "log.level": "info",
            ]) { $1 }.merging(controlSettings) { $1 },
            port: controlPort, logDirectory: directory)
        self.nodes = try (1...nodeCount).map { index in
            try ServerProcess(
                name: "node-\(index)", executable: "zaas-data",
                settings: environment.dataPlaneSettings(
                    controlURL: "http://127.0.0.1:\(controlPort)", nodeID: "node-\(index)",
                    stateDirectory: directory + "/node-\(index)-state"
                ).merging(["control.watch_wait_seconds": "10", "log.level": "info"]) { $1 }
                    .merging(nodeSettings) { $1 },
                port: try RedisServerProcess.freePort(), logDirectory: directory)
        }
    }

    deinit {
        for process in [self.control] + self.nodes { process.stop() }
    }

    /// Runs `body` with a started cluster; stops everything afterwards and shows logs on failure.
    static func with(
        nodeCount: Int = 2, nodeSettings: [String: String] = [:], controlSettings: [String: String] = [:],
        _ body: @Sendable (Cluster) async throws -> Void
    ) async throws {
        try await TestDatabase.withFresh { database in
            // Asynchronous queries of this cluster only: clusters of other tests share the Redis.
            let settings = ["jobs.namespace": "cluster-\(database.name.suffix(12))"].merging(nodeSettings) { $1 }
            let cluster = try Cluster(
                database: database, nodeCount: nodeCount, nodeSettings: settings, controlSettings: controlSettings)
            var failure: (any Error)?
            do {
                try await cluster.startControl()
                for node in cluster.nodes { try await cluster.start(node) }
                try await body(cluster)
            } catch {
                for process in [cluster.control] + cluster.nodes {
                    print("--- \(process.name) log ---\n\(process.logTail(40))")
                }
                failure = error
            }
            // Stopped together, each awaited without holding a thread.
            await withTaskGroup(of: Void.self) { group in
                for process in [cluster.control] + cluster.nodes { group.addTask { await process.terminate() } }
            }
            if let failure { throw failure }
            try? FileManager.default.removeItem(atPath: cluster.directory)
        }
    }

    func startControl() async throws {
        try await self.control.start()
        let ready = try await TestHTTP.waitUntil(timeout: .seconds(60)) {
            (try? await TestHTTP.send("GET", self.control.baseURL + "/healthz"))?.status == 200
        }
        guard ready != nil else { throw TestEnvironment.SetupError(message: "control plane not healthy") }
        // Each node's own credential, as an operator issues them (`zaasctl nodes issue`).
        try await self.database.enrollNodes(self.nodes.map(\.name))
    }

    /// Starts a node and waits until it answers health (any status: it may rightly be not ready).
    func start(_ node: ServerProcess) async throws {
        try await node.start()
        _ = try await TestHTTP.waitUntil(timeout: .seconds(30)) {
            (try? await TestHTTP.send("GET", node.baseURL + "/api/v1/health")) != nil
        }
    }

    func health(_ node: ServerProcess) async throws -> (status: Int, body: [String: Any]) {
        let reply = try await TestHTTP.send("GET", node.baseURL + "/api/v1/health")
        return (reply.status, reply.json ?? [:])
    }

    func keyStatus(_ key: String, on node: ServerProcess, tenantHeader: String? = nil) async throws -> Int {
        var headers: [String: String] = [:]
        if let tenantHeader { headers["X-Tenant-ID"] = tenantHeader }
        return try await TestHTTP.send("GET", node.baseURL + "/api/v1/key", bearer: key, headers: headers).status
    }

    /// Waits until `key` gets `status` from every node; returns the slowest node's wait.
    func waitForAllNodes(_ key: String, status: Int, timeout: Duration = .seconds(10)) async throws -> Duration? {
        var slowest: Duration = .zero
        for node in self.nodes where node.isRunning {
            guard
                let took = try await TestHTTP.waitUntil(
                    timeout: timeout,
                    {
                        try await self.keyStatus(key, on: node) == status
                    })
            else { return nil }
            slowest = max(slowest, took)
        }
        return slowest
    }

    /// Makes a tenant with an admin, signs the admin in, returns the tenant id and session token.
    func makeTenant(slug: String, tier: String = "pro") async throws -> (tenant: UUID, token: String) {
        let tenant = UUID()
        let hash = try await Argon2id().hash(Self.password)
        try await withPostgresClient(self.database.app) { client in
            try await ScopedDatabase(client: client).withOperator(UUID(), logger: Self.logger) { connection in
                try await connection.query(
                    "INSERT INTO tenants (id, name, slug, tier_id) VALUES (\(tenant), \(slug), \(slug), \(tier))",
                    logger: Self.logger)
                try await connection.query(
                    """
                    INSERT INTO admin_users (tenant_id, email, password_hash, role)
                    VALUES (\(tenant), \("admin@\(slug).example"), \(hash), 'admin')
                    """,
                    logger: Self.logger)
            }
        }
        let signIn = try await TestHTTP.send(
            "POST", self.control.baseURL + "/admin/v1/sessions",
            json: #"{"email": "admin@\#(slug).example", "password": "\#(Self.password)"}"#)
        guard signIn.status == 201, let token = signIn.json?["token"] as? String else {
            throw TestEnvironment.SetupError(message: "sign-in failed: \(signIn.text)")
        }
        return (tenant, token)
    }

    func createKey(token: String, scopes: String = #"["query"]"#) async throws -> (id: String, text: String) {
        let reply = try await TestHTTP.send(
            "POST", self.control.baseURL + "/admin/v1/keys", bearer: token,
            json: #"{"name": "cluster", "scopes": \#(scopes)}"#)
        guard reply.status == 201, let text = reply.json?["key"] as? String,
            let id = (reply.json?["api_key"] as? [String: Any])?["id"] as? String
        else { throw TestEnvironment.SetupError(message: "key creation failed: \(reply.text)") }
        return (id, text)
    }

    func revokeKey(_ id: String, token: String) async throws {
        let reply = try await TestHTTP.send("DELETE", self.control.baseURL + "/admin/v1/keys/\(id)", bearer: token)
        guard reply.status == 204 else { throw TestEnvironment.SetupError(message: "revoke failed: \(reply.text)") }
    }
}

extension ProcessClusters {
    @Suite("config distribution end to end: control plane and two nodes as processes", .serialized)
    struct ClusterTests {
        @Test("a key made through the admin API works on both nodes; revoked, both refuse it within a second")
        func keyLifecycle() async throws {
            try await Cluster.with { cluster in
                let (tenant, token) = try await cluster.makeTenant(slug: "lab")
                let key = try await cluster.createKey(token: token)
                let arrived = try await cluster.waitForAllNodes(key.text, status: 200)
                #expect(arrived != nil && arrived! < .seconds(1), "arrived after \(String(describing: arrived))")

                // What a node knows about the key.
                let info = try await TestHTTP.send("GET", cluster.nodes[0].baseURL + "/api/v1/key", bearer: key.text)
                let body = try #require(info.json)
                #expect(body["tenant_id"] as? String == tenant.uuidString.lowercased())
                #expect(body["id"] as? String == key.id)
                #expect(body["scopes"] as? [String] == ["query"])
                #expect((body["limits"] as? [String: Any])?["queries_per_hour"] as? Int == 100)
                // The key's tenant header must match; a malformed key is a 401 problem.
                #expect(
                    try await cluster.keyStatus(key.text, on: cluster.nodes[1], tenantHeader: UUID().uuidString) == 403)
                #expect(
                    try await cluster.keyStatus(key.text, on: cluster.nodes[1], tenantHeader: tenant.uuidString) == 200)
                let malformed = try await TestHTTP.send(
                    "GET", cluster.nodes[1].baseURL + "/api/v1/key", bearer: "zaas_x")
                #expect(malformed.status == 401)
                #expect(malformed.headers["content-type"] == "application/problem+json")
                #expect(malformed.json?["type"] as? String == "https://zaas.dev/problems/invalid-api-key")

                // Revocation: measured from the admin API's answer.
                try await cluster.revokeKey(key.id, token: token)
                let refused = try await cluster.waitForAllNodes(key.text, status: 401, timeout: .seconds(5))
                #expect(refused != nil && refused! < .seconds(1), "refused after \(String(describing: refused))")

                // Use reached the control plane in a batch: last_used_at is set.
                let second = try await cluster.createKey(token: token)
                _ = try await cluster.waitForAllNodes(second.text, status: 200)
                let used = try await TestHTTP.waitUntil(timeout: .seconds(5)) {
                    let reply = try await TestHTTP.send(
                        "GET", cluster.control.baseURL + "/admin/v1/keys/\(second.id)", bearer: token)
                    return reply.json?["last_used_at"] is String
                }
                #expect(used != nil)

                // Operators see both nodes, current.
                let operatorToken = try #require(
                    try await TestHTTP.send(
                        "POST", cluster.control.baseURL + "/admin/v1/sessions",
                        json: #"{"email": "ops@zaas.example", "password": "\#(Cluster.password)"}"#
                    ).json?["token"] as? String)
                let current = try await TestHTTP.waitUntil(timeout: .seconds(5)) {
                    let nodes = try await TestHTTP.send(
                        "GET", cluster.control.baseURL + "/admin/v1/nodes", bearer: operatorToken)
                    let items = nodes.json?["items"] as? [[String: Any]] ?? []
                    return items.map { $0["id"] as? String } == ["node-1", "node-2"]
                        && items.allSatisfy { $0["lag"] as? Int == 0 && $0["status"] as? String == "online" }
                }
                #expect(current != nil)
            }
        }

        @Test(
            "replay: a control plane behind the nodes (a restored database) is refused and nodes keep what they hold; advancing the version brings them its state"
        )
        func restoredDatabase() async throws {
            try await Cluster.with { cluster in
                let (_, token) = try await cluster.makeTenant(slug: "lab")
                let key = try await cluster.createKey(token: token)
                #expect(try await cluster.waitForAllNodes(key.text, status: 200) != nil)
                let held = try #require(try await cluster.health(cluster.nodes[0]).body["config_version"] as? Int)

                // The database goes back to an earlier point: its version counter is behind the nodes'.
                try await withPostgresClient(cluster.database.owner) { owner in
                    try await owner.query("DELETE FROM config_changes WHERE version > 1", logger: Cluster.logger)
                    try await owner.query(
                        "UPDATE config_version SET version = 1, compacted_through = 0", logger: Cluster.logger)
                }
                // A change on the restored control plane has a lower version than the nodes hold:
                // they refuse its snapshot as a replay and keep serving what they have.
                try await cluster.revokeKey(key.id, token: token)
                for node in cluster.nodes {
                    let refused = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                        node.log().contains("older than the \(held) this node holds")
                    }
                    #expect(refused != nil, "\(node.name) did not refuse the older snapshot")
                    #expect(try await cluster.keyStatus(key.text, on: node) == 200)
                    let health = try await cluster.health(node)
                    #expect(health.body["status"] as? String == "degraded")
                    #expect(health.body["config_version"] as? Int == held)
                }

                // An operator moves the version past what the nodes hold: they take the restored state.
                let signIn = try await TestHTTP.send(
                    "POST", cluster.control.baseURL + "/admin/v1/sessions",
                    json: #"{"email": "ops@zaas.example", "password": "\#(Cluster.password)"}"#)
                let ops = try #require(signIn.json?["token"] as? String)
                let tenantAdmin = try await TestHTTP.send(
                    "POST", cluster.control.baseURL + "/admin/v1/nodes/config-version", bearer: token, json: "{}")
                #expect(tenantAdmin.status == 403)
                let negative = try await TestHTTP.send(
                    "POST", cluster.control.baseURL + "/admin/v1/nodes/config-version", bearer: ops,
                    json: #"{"past": -1}"#)
                #expect(negative.status == 422, "\(negative.text)")
                let advanced = try await TestHTTP.send(
                    "POST", cluster.control.baseURL + "/admin/v1/nodes/config-version", bearer: ops, json: "{}")
                #expect(advanced.status == 200, "\(advanced.text)")
                let version = try #require(advanced.json?["config_version"] as? Int)
                #expect(version > held)
                #expect(try await cluster.waitForAllNodes(key.text, status: 401, timeout: .seconds(20)) != nil)
                for node in cluster.nodes {
                    let healthy = try await TestHTTP.waitUntil(timeout: .seconds(10)) {
                        let health = try await cluster.health(node)
                        return health.body["status"] as? String == "ok"
                            && health.body["config_version"] as? Int == version
                    }
                    #expect(healthy != nil, "\(node.name) did not take the advanced version")
                }
            }
        }

        @Test("faults: control plane killed, node restarted without it, corrupt disk copy, foreign signature")
        func faults() async throws {
            try await Cluster.with { cluster in
                let (_, token) = try await cluster.makeTenant(slug: "lab")
                let key = try await cluster.createKey(token: token)
                #expect(try await cluster.waitForAllNodes(key.text, status: 200) != nil)
                let version = try #require(try await cluster.health(cluster.nodes[0]).body["config_version"] as? Int)

                // Control plane killed: nodes keep answering from what they hold; health is degraded, not down.
                cluster.control.kill()
                for node in cluster.nodes {
                    #expect(try await cluster.keyStatus(key.text, on: node) == 200)
                    let degraded = try await TestHTTP.waitUntil(timeout: .seconds(5)) {
                        let health = try await cluster.health(node)
                        return health.status == 200 && health.body["status"] as? String == "degraded"
                    }
                    #expect(degraded != nil, "\(node.name) not degraded")
                }

                // A node restarted while the control plane is down serves from its disk copy.
                let node1 = cluster.nodes[0]
                #expect(await node1.terminate() == 0)
                try await cluster.start(node1)
                #expect(try await cluster.keyStatus(key.text, on: node1) == 200)
                let restarted = try await cluster.health(node1)
                #expect(restarted.status == 200 && restarted.body["status"] as? String == "degraded")
                #expect(restarted.body["config_version"] as? Int == version)
                #expect(node1.log().contains("configuration loaded from disk"))

                // A corrupt disk copy with no control plane: refused with a logged reason, not ready.
                let node2 = cluster.nodes[1]
                #expect(await node2.terminate() == 0)
                let snapshotPath = node2.environment["ZAAS_NODE_STATE_DIR"]! + "/config.snapshot"
                let saved = try Data(contentsOf: URL(fileURLWithPath: snapshotPath))
                try saved.prefix(saved.count / 2).write(to: URL(fileURLWithPath: snapshotPath))
                try await cluster.start(node2)
                let empty = try await cluster.health(node2)
                #expect(empty.status == 503)
                #expect((empty.body["reasons"] as? [String])?.contains { $0.hasPrefix("config is down") } == true)
                #expect(try await cluster.keyStatus(key.text, on: node2) == 503)
                #expect(node2.log().contains("snapshot file refused"))

                // Control plane back: both catch up without a restart, and see changes made since.
                try await cluster.startControl()
                let newKey = try await cluster.createKey(token: token)
                #expect(try await cluster.waitForAllNodes(newKey.text, status: 200) != nil)
                #expect(try await cluster.waitForAllNodes(key.text, status: 200) != nil)
                for node in cluster.nodes {
                    let healthy = try await TestHTTP.waitUntil(timeout: .seconds(5)) {
                        try await cluster.health(node).body["status"] as? String == "ok"
                    }
                    #expect(healthy != nil, "\(node.name) did not recover")
                }

                // A control plane signing with another key: nodes refuse its documents and keep theirs.
                await cluster.control.terminate()
                cluster.control.environment["ZAAS_CONFIG_SIGNING_KEY"] = ConfigSigningKey().hexSeed
                try await cluster.startControl()
                let rogue = try await cluster.createKey(token: token)
                try await cluster.revokeKey(newKey.id, token: token)
                try await Task.sleep(for: .seconds(1))
                for node in cluster.nodes {
                    #expect(try await cluster.keyStatus(rogue.text, on: node) == 401)
                    #expect(try await cluster.keyStatus(newKey.text, on: node) == 200)  // its revocation came unsigned
                    let health = try await cluster.health(node)
                    #expect(health.body["status"] as? String == "degraded")
                    #expect(node.log().contains("config document refused"))
                }
            }
        }
    }
}
