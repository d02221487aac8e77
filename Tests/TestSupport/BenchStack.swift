import Canon
import Foundation

/// A control plane and data-plane nodes as processes (the release build `make bench` made) over a
/// fresh database, for benchmarks that measure the real servers; with the admin calls they all
/// need to get an operator, a tenant and a key.
public final class BenchStack: @unchecked Sendable {
    public static let operatorEmail = "ops@bench.example"
    public static let password = "benchmark passphrase 2026"

    public let control: ServerProcess
    public let nodes: [ServerProcess]
    /// Where the processes' logs and state are (removed when `with` returns).
    public let directory: String

    /// Starts the control plane (healthy) and `nodeCount` nodes (answering health), runs `body`,
    /// stops everything. `settingsOfNode` adds settings to one node (by index from 1).
    public static func with<Result: Sendable>(
        nodeCount: Int = 1, controlSettings: [String: String] = [:], nodeSettings: [String: String] = [:],
        settingsOfNode: [Int: [String: String]] = [:],
        _ body: (BenchStack) async throws -> Result
    ) async throws -> Result {
        try await TestDatabase.withFresh { database in
            let directory = ConfigFixtures.temporaryDirectory()
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let environment = TestEnvironment.shared
            let control = try ServerProcess(
                name: "control", executable: "zaas-control",
                settings: environment.controlPlaneSettings(database: database.name).merging([
                    "log.level": "warning", "bootstrap.operator_email": Self.operatorEmail,
                    "bootstrap.operator_password": Self.password,
                ]) { $1 }.merging(controlSettings) { $1 },
                port: try RedisServerProcess.freePort(), logDirectory: directory)
            let nodes = try (1...max(1, nodeCount)).map { index in
                try ServerProcess(
                    name: "node-\(index)", executable: "zaas-data",
                    settings: environment.dataPlaneSettings(
                        controlURL: control.baseURL, nodeID: "node-\(index)",
                        stateDirectory: directory + "/node-\(index)"
                    ).merging(["log.level": "warning"]) { $1 }.merging(nodeSettings) { $1 }
                        .merging(settingsOfNode[index] ?? [:]) { $1 },
                    port: try RedisServerProcess.freePort(), logDirectory: directory)
            }
            let stack = BenchStack(control: control, nodes: nodes, directory: directory)
            defer { for process in [control] + nodes { process.stop() } }
            try await control.start()
            _ = try await TestHTTP.waitUntil(timeout: .seconds(60)) {
                (try? await TestHTTP.send("GET", control.baseURL + "/healthz"))?.status == 200
            }
            try await database.enrollNodes(nodes.map(\.name))
            for node in nodes {
                try await node.start()
                _ = try await TestHTTP.waitUntil(timeout: .seconds(60)) {
                    (try? await TestHTTP.send("GET", node.baseURL + "/api/v1/health")) != nil
                }
            }
            return try await body(stack)
        }
    }

    init(control: ServerProcess, nodes: [ServerProcess], directory: String) {
        self.control = control
        self.nodes = nodes
        self.directory = directory
    }

    public var node: ServerProcess { self.nodes[0] }

    /// A session token for `email`.
    public func signIn(_ email: String = BenchStack.operatorEmail) async throws -> String {
        let reply = try await TestHTTP.send(
            "POST", self.control.baseURL + "/admin/v1/sessions",
            json: #"{"email": "\#(email)", "password": "\#(Self.password)"}"#)
        guard let token = reply.json?["token"] as? String else {
            throw TestEnvironment.SetupError(message: "sign-in as \(email) failed: \(reply.text)")
        }
        return token
    }

    /// Uploads canon entries (a JSON array) as the base canon, published once built.
    public func publishBaseCanon(_ entriesJSON: String) async throws {
        let reply = try await TestHTTP.send(
            "POST", self.control.baseURL + "/admin/v1/base-canon/versions?publish=true",
            bearer: try await self.signIn(),
            json: entriesJSON, timeout: .seconds(60))
        guard reply.status == 202 else { throw TestEnvironment.SetupError(message: "canon upload: \(reply.text)") }
    }

    /// The demo canon (infra/demo-canon) as the base canon, published once built.
    public func publishDemoCanon() async throws {
        let entries = CanonArchive().parse(
            folder: TestEnvironment.repositoryRoot.appendingPathComponent("infra/demo-canon").path
        ).entries.map(\.entry)
        try await self.publishBaseCanon(String(decoding: try JSONEncoder().encode(entries), as: UTF8.self))
    }

    /// Registers a model backend in the catalog (`json`: the body of `POST /admin/v1/models`).
    public func addModel(_ json: String) async throws {
        let added = try await TestHTTP.send(
            "POST", self.control.baseURL + "/admin/v1/models", bearer: try await self.signIn(), json: json)
        guard added.status == 201 else { throw TestEnvironment.SetupError(message: "model: \(added.text)") }
    }

    /// A tenant on `tier` (with `quotaPolicy`, a JSON object, when given), its admin, and a key
    /// with `scopes`; the tenant's id and the key.
    public func makeTenantKey(
        slug: String, tier: String, quotaPolicy: String? = nil, scopes: String = #"["query"]"#
    ) async throws -> (tenantID: String, key: String) {
        let ops = try await self.signIn()
        let tenant = try await TestHTTP.send(
            "POST", self.control.baseURL + "/admin/v1/tenants", bearer: ops,
            json: #"{"name": "\#(slug)", "slug": "\#(slug)", "tier": "\#(tier)"}"#)
        guard let tenantID = tenant.json?["id"] as? String else {
            throw TestEnvironment.SetupError(message: "tenant: \(tenant.text)")
        }
        if let quotaPolicy {
            let reply = try await TestHTTP.send(
                "PUT", self.control.baseURL + "/admin/v1/tenants/\(tenantID)/quota-policy", bearer: ops,
                json: quotaPolicy)
            guard reply.status == 200 else { throw TestEnvironment.SetupError(message: "quota policy: \(reply.text)") }
        }
        let email = "admin@\(slug).example"
        _ = try await TestHTTP.send(
            "POST", self.control.baseURL + "/admin/v1/tenants/\(tenantID)/admins", bearer: ops,
            json: #"{"email": "\#(email)", "password": "\#(Self.password)", "role": "admin"}"#)
        let key = try await TestHTTP.send(
            "POST", self.control.baseURL + "/admin/v1/keys", bearer: try await self.signIn(email),
            json: #"{"name": "bench", "scopes": \#(scopes)}"#)
        guard let text = key.json?["key"] as? String else {
            throw TestEnvironment.SetupError(message: "key: \(key.text)")
        }
        return (tenantID, text)
    }
}
