import Configuration
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import Shared
import TestSupport
import Testing

@testable import ControlPlane

@Suite("control plane /healthz against real PostgreSQL")
struct ControlPlaneHealthTests {
    static func configuration(database: String, overrides: [String: String] = [:]) async throws
        -> ControlPlaneConfiguration
    {
        var environment: [String: String] = [:]
        for (key, value) in TestEnvironment.shared.controlPlaneSettings(database: database).merging(
            overrides, uniquingKeysWith: { $1 })
        {
            environment[ConfigurationError.environmentName(key)] = value
        }
        environment["ZAAS_HTTP_PORT"] = "0"
        let reader = try await ConfigurationLoader.reader(
            defaults: ControlPlaneConfiguration.defaults, environment: environment)
        return try ControlPlaneConfiguration(reader: reader)
    }

    func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
    }

    @Test("healthy after start: migrations run by the app, PostgreSQL up, 200")
    func healthy() async throws {
        try await TestDatabase.withFresh { database in
            let configuration = try await Self.configuration(database: database.name)
            let app = try await buildApplication(configuration: configuration)
            try await app.test(.live) { client in
                try await client.execute(uri: "/healthz", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType] == "application/json")
                    let body = try json(response.body)
                    #expect(body["status"] as? String == "ok")
                    let checks = try #require(body["checks"] as? [String: [String: Any]])
                    #expect(checks["postgres"]?["status"] as? String == "up")
                    #expect(checks["migrations"]?["status"] as? String == "up")
                    #expect(checks["database_probe"]?["status"] as? String == "up")
                }
                try await client.execute(uri: "/nowhere", method: .get) { response in
                    #expect(response.status == .notFound)
                    #expect(response.headers[.contentType] == "application/problem+json")
                }
            }
        }
    }

    /// The control plane's router over its PostgreSQL client, without the start-up steps
    /// (migrations, role check) that `buildApplication` adds.
    static func routerApplication(_ configuration: ControlPlaneConfiguration) async throws
        -> some ApplicationProtocol
    {
        let postgres = PostgresClient(configuration: configuration.database.applicationClient)
        let router = try buildRouter(
            postgres: postgres,
            auth: try await makeAuthService(postgres: postgres, configuration: configuration),
            distribution: ConfigDistribution(
                postgres: postgres, settings: configuration.distribution, logger: Logger(label: "test")),
            builder: CanonBuildWorker(
                postgres: postgres, modelDirectory: configuration.canon.modelDirectory, threads: 1,
                logger: Logger(label: "test")),
            configuration: configuration
        )
        return Application(router: router, services: [postgres])
    }

    @Test("without migrations applied, health is 503 problem+json")
    func notMigrated() async throws {
        try await TestDatabase.withFresh { database in
            let configuration = try await Self.configuration(database: database.name)
            let app = try await Self.routerApplication(configuration)
            try await app.test(.router) { client in
                try await client.execute(uri: "/healthz", method: .get) { response in
                    #expect(response.status == .serviceUnavailable)
                    #expect(response.headers[.contentType] == "application/problem+json")
                    let body = try json(response.body)
                    #expect(body["type"] as? String == "https://zaas.dev/problems/unhealthy")
                    #expect(body["status"] as? Int == 503)
                    #expect(body["health_status"] as? String == "down")
                }
            }
        }
    }

    @Test("PostgreSQL unreachable: 503 with a reason and no connection details")
    func postgresDown() async throws {
        let closedPort = try RedisServerProcess.freePort()
        let configuration = try await Self.configuration(
            database: "zaas",
            overrides: ["postgres.port": String(closedPort), "postgres.connect_timeout_ms": "500"]
        )
        let app = try await Self.routerApplication(configuration)
        try await app.test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let body = try json(response.body)
                let reasons = try #require(body["reasons"] as? [String])
                #expect(reasons.contains { $0.hasPrefix("postgres is down") })
                let text = String(buffer: response.body)
                #expect(!text.contains(String(closedPort)))
                #expect(!text.contains(TestEnvironment.shared.appPassword))
            }
        }
    }
}

@Suite("control plane configuration")
struct ControlPlaneConfigurationTests {
    static func configuration(_ overrides: [String: String]) async throws -> ControlPlaneConfiguration {
        var environment = [
            "ZAAS_POSTGRES_PASSWORD": "x", "ZAAS_KEYS_PEPPER": String(repeating: "ab", count: 32),
            "ZAAS_CONFIG_SIGNING_KEY": String(repeating: "cd", count: 32),
        ]
        environment.merge(overrides) { $1 }
        return try ControlPlaneConfiguration(
            reader: try await ConfigurationLoader.reader(
                defaults: ControlPlaneConfiguration.defaults, environment: environment)
        )
    }

    @Test("a short or non-hex key pepper, or half a bootstrap operator, stops the control plane at start")
    func invalidSecuritySettings() async throws {
        for pepper in ["", "abcd", String(repeating: "AB", count: 32), String(repeating: "zz", count: 32)] {
            await #expect(throws: ConfigurationError.self, "\(pepper.prefix(8))") {
                _ = try await Self.configuration(["ZAAS_KEYS_PEPPER": pepper])
            }
        }
        await #expect(throws: ConfigurationError.self) {
            _ = try await Self.configuration(["ZAAS_BOOTSTRAP_OPERATOR_EMAIL": "ops@zaas.example"])
        }
        await #expect(throws: ConfigurationError.self) {
            _ = try await Self.configuration(["ZAAS_SESSIONS_LIFETIME_SECONDS": "10"])
        }
        // The config-signing key: present and well formed, or no start.
        for (key, value) in [
            ("ZAAS_CONFIG_SIGNING_KEY", ""), ("ZAAS_CONFIG_SIGNING_KEY", "abcd"),
            ("ZAAS_CONFIG_SIGNING_KEY", String(repeating: "CD", count: 32)),
            ("ZAAS_NODES_MAX_CREDENTIALS", "0"), ("ZAAS_CANON_MAX_PENDING_BUILDS_PER_TENANT", "0"),
            ("ZAAS_CANON_KEEP_UNPUBLISHED_VERSIONS", "x"),
            ("ZAAS_CONFIG_WATCH_MAX_WAIT_SECONDS", "0"),
        ] {
            await #expect(throws: ConfigurationError.self, "\(key)=\(value)") {
                _ = try await Self.configuration([key: value])
            }
        }
        let message = await #expect(throws: ConfigurationError.self) {
            _ = try await Self.configuration(["ZAAS_CONFIG_SIGNING_KEY": "abcd"])
        }
        #expect(message?.description.contains("ZAAS_CONFIG_SIGNING_KEY") == true)
        #expect(message?.description.contains("abcd") == false)
        let valid = try await Self.configuration([
            "ZAAS_BOOTSTRAP_OPERATOR_EMAIL": "ops@zaas.example",
            "ZAAS_BOOTSTRAP_OPERATOR_PASSWORD": "long enough 12345",
        ])
        #expect(valid.keyPepper.count == 32)
        #expect(valid.bootstrapOperator?.email == "ops@zaas.example")
    }
}

@Suite("the database probe's verdict")
struct DatabaseProbeVerdictTests {
    static func probe() -> DatabaseProbe {
        let configuration = PostgresClient.Configuration(
            host: "127.0.0.1", port: 1, username: "nobody", password: nil, database: nil, tls: .disable)
        return DatabaseProbe(
            configuration: configuration, outageAfter: .seconds(4), logger: Logger(label: "test.probe"))
    }

    @Test(
        "one slow or failed probe is no outage, nor a stall of the process; failures lasting outageAfter are; one success ends it"
    )
    func verdict() {
        let probe = Self.probe()
        let start = ContinuousClock.now
        // A probe that began at 0 s and timed out at 2 s, another failed at 3 s: still reachable.
        probe.record(succeeded: false, attemptStarted: start, now: start + .seconds(2))
        #expect(probe.isReachable)
        probe.record(succeeded: false, attemptStarted: start + .seconds(3), now: start + .seconds(3.5))
        #expect(probe.isReachable)
        // Failing since 0 s, still failing at 4 s: unreachable.
        probe.record(succeeded: false, attemptStarted: start + .seconds(3), now: start + .seconds(4))
        #expect(!probe.isReachable)
        probe.record(succeeded: false, attemptStarted: start + .seconds(5), now: start + .seconds(5))
        #expect(!probe.isReachable)
        // One success: reachable, and the next failure starts a new count.
        probe.record(succeeded: true, attemptStarted: start + .seconds(6), now: start + .seconds(6))
        #expect(probe.isReachable)
        probe.record(succeeded: false, attemptStarted: start + .seconds(7), now: start + .seconds(10))
        #expect(probe.isReachable)
        probe.record(succeeded: false, attemptStarted: start + .seconds(11), now: start + .seconds(11))
        #expect(probe.isReachable)
        probe.record(succeeded: false, attemptStarted: start + .seconds(12), now: start + .seconds(12))
        #expect(!probe.isReachable)
        probe.record(succeeded: true, attemptStarted: start + .seconds(13), now: start + .seconds(13))
        #expect(probe.isReachable)
        // The process stalled for 10 s while a probe was out: it times out when the process runs
        // again, one failure 10 s long, and the next probe answers. Never unreachable.
        probe.record(succeeded: false, attemptStarted: start + .seconds(14), now: start + .seconds(24))
        #expect(probe.isReachable)
        probe.record(succeeded: true, attemptStarted: start + .seconds(14), now: start + .seconds(25))
        #expect(probe.isReachable)
    }

    @Test("a wait that ends on time is evidence (an answer, a failure, or silence); one that ends late is none")
    func waits() {
        let probe = Self.probe()  // timeout 2 s, stall tolerance 1 s
        #expect(probe.verdict(true, waited: .milliseconds(3)) == true)
        #expect(probe.verdict(false, waited: .milliseconds(3)) == false)
        #expect(probe.verdict(nil, waited: .seconds(2.2)) == false)
        // Its own timer ran 4 s late: the attempt may not have had a thread either.
        #expect(probe.verdict(nil, waited: .seconds(6)) == nil)
        // An answer is an answer, however late it was taken.
        #expect(probe.verdict(true, waited: .seconds(6)) == true)
        #expect(probe.verdict(false, waited: .seconds(6)) == false)
    }
}
