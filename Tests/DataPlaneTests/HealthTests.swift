import Configuration
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Shared
import TestSupport
import Testing

@testable import ControlPlane
@testable import DataPlane

@Suite("data plane /api/v1/health against real Redis and a live control plane")
struct DataPlaneHealthTests {
    /// A node's configuration; `stateDirectory` defaults to a fresh, empty folder.
    static func configuration(_ settings: [String: String], stateDirectory: String? = nil) async throws
        -> DataPlaneConfiguration
    {
        var environment: [String: String] = [:]
        let base = TestEnvironment.shared.dataPlaneSettings(
            controlURL: "http://127.0.0.1:1", nodeID: "test-node",
            stateDirectory: stateDirectory ?? ConfigFixtures.temporaryDirectory()
        ).merging([
            "http.port": "0",
            "redis.reconnect_backoff_ms": "50",
            "redis.connect_timeout_ms": "3000",
            // The suite runs beside Argon2 and PostgreSQL work on two cores: give PING more than 500 ms.
            "redis.command_timeout_ms": "3000",
            "control.timeout_ms": "500",
        ]) { $1 }
        for (key, value) in base.merging(settings, uniquingKeysWith: { $1 }) {
            environment[ConfigurationError.environmentName(key)] = value
        }
        let reader = try await ConfigurationLoader.reader(
            defaults: DataPlaneConfiguration.defaults, environment: environment)
        return try DataPlaneConfiguration(reader: reader)
    }

    /// The node as `zaas-data` builds it; `.router` testing runs its services (Redis pool, monitor).
    static func makeApp(_ configuration: DataPlaneConfiguration) async throws -> some ApplicationProtocol {
        try await DataPlane.buildApplication(configuration: configuration)
    }

    func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
    }

    /// A control plane (built as `zaas-control` builds it) serving HTTP on a free port over a
    /// fresh database, for `body` to point nodes at.
    static func withLiveControlPlane(_ body: @escaping @Sendable (String) async throws -> Void) async throws {
        try await TestDatabase.withFresh { database in
            var environment: [String: String] = ["ZAAS_HTTP_PORT": "0"]
            for (key, value) in TestEnvironment.shared.controlPlaneSettings(database: database.name) {
                environment[ConfigurationError.environmentName(key)] = value
            }
            let control = try await ControlPlane.buildApplication(
                reader: ConfigurationLoader.reader(
                    defaults: ControlPlane.ControlPlaneConfiguration.defaults, environment: environment)
            )
            try await control.test(.live) { client in
                try await database.enrollNodes(["test-node", "probe"])
                try await body("http://127.0.0.1:\(client.port!)")
            }
        }
    }

    /// A folder holding a saved configuration, as a node that ran before would have.
    static func savedState() throws -> String {
        let directory = ConfigFixtures.temporaryDirectory()
        try ConfigFixtures.writeSnapshot(ConfigFixtures.snapshot(version: 7, tenants: [], keys: []), to: directory)
        return directory
    }

    @Test(
        "an unknown rate-limit fallback or a semantic threshold out of range stops the node at start, naming the setting"
    )
    func cacheAndLimitSettings() async throws {
        for (setting, value) in [
            ("rate_limit.redis_fallback", "sometimes"), ("cache.semantic_threshold", "0.5"),
            ("cache.semantic_threshold", "high"), ("rate_limit.probe_interval_ms", "0"),
        ] {
            await #expect(throws: ConfigurationError.self) { try await Self.configuration([setting: value]) }
            do {
                _ = try await Self.configuration([setting: value])
            } catch {
                #expect("\(error)".contains(setting), "\(error)")
            }
        }
        #expect(try await Self.configuration(["cache.semantic_threshold": "off"]).semanticThreshold == nil)
        #expect(try await Self.configuration(["cache.semantic_threshold": "0.97"]).semanticThreshold == 0.97)
        #expect(try await Self.configuration(["rate_limit.redis_fallback": "refuse"]).rateLimit.fallback == .refuse)
    }

    @Test("Redis and the control plane up: 200 ok, with node id and the config version it fetched")
    func healthy() async throws {
        try await Self.withLiveControlPlane { controlURL in
            let configuration = try await Self.configuration([
                "control.url": controlURL
            ])
            try await Self.makeApp(configuration).test(.router) { client in
                // The first watch answers with a full snapshot.
                var response = try await client.execute(uri: "/api/v1/health", method: .get)
                for _ in 0..<200 where response.status != .ok {
                    try await Task.sleep(for: .milliseconds(25))
                    response = try await client.execute(uri: "/api/v1/health", method: .get)
                }
                #expect(response.status == .ok)
                let body = try json(response.body)
                #expect(body["status"] as? String == "ok")
                #expect(body["node_id"] as? String == "test-node")
                // The version the control plane is at (a fresh database holds what migrations logged).
                let current = try await TestHTTP.send(
                    "GET", controlURL + "/internal/v1/config?node_id=probe",
                    bearer: TestEnvironment.shared.nodeToken(for: "probe"))
                #expect(current.status == 200)
                #expect(body["config_version"] as? Int == Int(current.headers["zaas-config-version"] ?? ""))
                #expect(body["config_age_seconds"] is Double)
                let checks = try #require(body["checks"] as? [String: [String: Any]])
                #expect(checks["redis"]?["status"] as? String == "up")
                #expect(checks["control_plane"]?["status"] as? String == "up")
                #expect(checks["config"]?["status"] as? String == "up")
            }
        }
    }

    @Test("a control plane that refuses the node's credential: unhealthy, degraded, the disk copy still served")
    func wrongNodeToken() async throws {
        try await Self.withLiveControlPlane { controlURL in
            let configuration = try await Self.configuration(
                [
                    "control.url": controlURL,
                    "nodes.token": "znode_" + String(repeating: "0", count: 64),
                ], stateDirectory: try Self.savedState())
            try await Self.makeApp(configuration).test(.router) { client in
                var body: [String: Any] = [:]
                for _ in 0..<200 {
                    body = try json(try await client.execute(uri: "/api/v1/health", method: .get).body)
                    let checks = body["checks"] as? [String: [String: Any]]
                    if checks?["control_plane"]?["status"] as? String == "unhealthy" { break }
                    try await Task.sleep(for: .milliseconds(25))
                }
                let checks = try #require(body["checks"] as? [String: [String: Any]])
                #expect(checks["control_plane"]?["status"] as? String == "unhealthy")
                #expect((checks["control_plane"]?["detail"] as? String)?.contains("401") == true)
                #expect(body["status"] as? String == "degraded")
                #expect(body["config_version"] as? Int == 7)
            }
        }
    }

    @Test("control plane unreachable, saved configuration on disk: serving it, 200 degraded")
    func controlPlaneDown() async throws {
        let closed = try RedisServerProcess.freePort()
        let configuration = try await Self.configuration(
            ["control.url": "http://127.0.0.1:\(closed)"], stateDirectory: try Self.savedState())
        try await Self.makeApp(configuration).test(.router) { client in
            var body: [String: Any] = [:]
            var status: HTTPResponse.Status = .serviceUnavailable
            for _ in 0..<150 {
                let response = try await client.execute(uri: "/api/v1/health", method: .get)
                status = response.status
                body = try json(response.body)
                let checks = body["checks"] as? [String: [String: Any]]
                if status == .ok, checks?["control_plane"]?["status"] as? String == "down" { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(status == .ok)
            #expect(body["status"] as? String == "degraded")
            #expect(body["config_version"] as? Int == 7)
            let checks = try #require(body["checks"] as? [String: [String: Any]])
            #expect(checks["control_plane"]?["status"] as? String == "down")
            #expect(checks["config"]?["status"] as? String == "up")
        }
    }

    @Test("control plane unreachable and nothing on disk: 503 not ready, and API calls say so")
    func nothingToServe() async throws {
        let closed = try RedisServerProcess.freePort()
        let configuration = try await Self.configuration(["control.url": "http://127.0.0.1:\(closed)"])
        try await Self.makeApp(configuration).test(.router) { client in
            try await client.execute(uri: "/api/v1/health", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let body = try json(response.body)
                let reasons = try #require(body["reasons"] as? [String])
                #expect(reasons.contains { $0.hasPrefix("config is down") })
            }
            let response = try await client.execute(
                uri: "/api/v1/key", method: .get,
                headers: [.authorization: "Bearer " + ConfigFixtures.key(tenant: UUID()).text])
            #expect(response.status == .serviceUnavailable)
            let type = try json(response.body)["type"] as? String
            #expect(type == "https://zaas.dev/problems/not-ready")
        }
    }

    @Test(
        "Redis killed: 200 degraded on the local rate-limit fallback, 503 with the reason when set to refuse; Redis back: 200 ok",
        arguments: ["local", "refuse"])
    func redisOutageAndRecovery(fallback: String) async throws {
        let server = try RedisServerProcess()
        try await server.start()
        defer { server.stop() }
        let closed = try RedisServerProcess.freePort()
        let configuration = try await Self.configuration(
            [
                "redis.port": String(server.port),
                "redis.password": "",
                "control.url": "http://127.0.0.1:\(closed)",
                "rate_limit.redis_fallback": fallback,
            ], stateDirectory: try Self.savedState())
        try await Self.makeApp(configuration).test(.router) { client in
            try await client.execute(uri: "/api/v1/health", method: .get) { response in
                #expect(response.status == .ok)
            }
            try await server.kill()
            try await client.execute(uri: "/api/v1/health", method: .get) { response in
                let body = try json(response.body)
                if fallback == "refuse" {
                    #expect(response.status == .serviceUnavailable)
                    #expect(response.headers[.contentType] == "application/problem+json")
                    #expect(body["type"] as? String == "https://zaas.dev/problems/unhealthy")
                    let reasons = try #require(body["reasons"] as? [String])
                    #expect(reasons.contains { $0.hasPrefix("redis is down") })
                } else {
                    #expect(response.status == .ok)
                    #expect(body["status"] as? String == "degraded")
                    let checks = try #require(body["checks"] as? [String: [String: Any]])
                    #expect(checks["redis"]?["status"] as? String == "down")
                }
            }
            try await server.start()
            var status: HTTPResponse.Status = .serviceUnavailable
            var redis: String?
            // The client reconnects with a backoff; on a loaded machine that can take seconds.
            let deadline = ContinuousClock.now + .seconds(20)
            while status != .ok || redis != "up", ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                let response = try await client.execute(uri: "/api/v1/health", method: .get)
                status = response.status
                redis =
                    ((try json(response.body)["checks"] as? [String: [String: Any]])?["redis"])?["status"] as? String
            }
            #expect(status == .ok)
            #expect(redis == "up")
        }
    }
}

@Suite("the audit health check")
struct AuditHealthCheckTests {
    static let now = Date(timeIntervalSince1970: 1_796_000_000)

    static func state(
        enabled: Bool = true, spooled: Int = 1000, appendFailure: String? = nil,
        whenFull: AuditRecorder.WhenFull = .refuse, shippingFailingFor seconds: TimeInterval? = nil
    ) -> AuditState {
        AuditState(
            enabled: enabled, spooledBytes: spooled, maximumBytes: 10_000, appendFailure: appendFailure,
            whenFull: whenFull,
            shippingFailure: seconds.map { (Self.now.addingTimeInterval(-$0), "control plane unreachable") })
    }

    @Test(
        "off when disabled; down when it cannot record and refuses; degraded when losing events, over 80 % full or shipping has failed for a minute; otherwise up",
        arguments: [
            (state(enabled: false, appendFailure: "disk full"), "off"),
            (state(), "up"),
            (state(spooled: 8000), "up"),
            (state(spooled: 8001), "degraded"),
            (state(appendFailure: "the audit spool is full"), "down"),
            (state(appendFailure: "the audit spool is full", whenFull: .answer), "degraded"),
            (state(shippingFailingFor: 59), "up"),
            (state(shippingFailingFor: 60), "degraded"),
            (state(appendFailure: "disk full", shippingFailingFor: 600), "down"),
        ])
    func status(state: AuditState, expected: String) {
        let check = HealthReport.Check.audit(state, now: Self.now)
        #expect(check.status == expected, "\(check.detail ?? "")")
        if let failure = state.appendFailure, state.enabled {
            #expect(check.detail?.contains(failure) == true)
            #expect(
                check.detail?.hasSuffix(state.whenFull == .refuse ? "refusing queries" : "answering without recording")
                    == true)
        }
        if expected == "degraded", let shipping = state.shippingFailure, state.appendFailure == nil {
            #expect(check.detail?.contains(shipping.reason) == true)
        }
    }
}
