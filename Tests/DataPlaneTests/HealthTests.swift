import Common
import Configuration
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import TestSupport
import Testing

@testable import ControlPlane
@testable import DataPlane

@Suite("data plane /api/v1/health against real Redis and a live control plane")
struct DataPlaneHealthTests {
    static func configuration(_ settings: [String: String]) async throws -> DataPlaneConfiguration {
        var environment: [String: String] = [:]
        let redis = TestEnvironment.shared
        let base: [String: String] = [
            "http.port": "0",
            "node.id": "test-node",
            "redis.port": String(redis.redisPort),
            "redis.password": redis.redisPassword ?? "",
            "redis.reconnect_backoff_ms": "50",
            // The suite runs beside Argon2 and PostgreSQL work on two cores: give PING more than 500 ms.
            "redis.command_timeout_ms": "3000",
            "control.check_interval_ms": "100",
            "control.timeout_ms": "500",
        ]
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

    @Test("Redis and the control plane up: 200 ok, with node id and config version 0")
    func healthy() async throws {
        try await TestDatabase.withFresh { database in
            var environment: [String: String] = ["ZAAS_HTTP_PORT": "0"]
            for (key, value) in TestEnvironment.shared.controlPlaneSettings(database: database.name) {
                environment[ConfigurationError.environmentName(key)] = value
            }
            let control = try await ControlPlane.buildApplication(
                reader: ConfigurationLoader.reader(
                    defaults: ControlPlane.ControlPlaneConfiguration.defaults, environment: environment)
            )
            try await control.test(.live) { controlClient in
                let configuration = try await Self.configuration([
                    "control.url": "http://127.0.0.1:\(controlClient.port!)"
                ])
                try await Self.makeApp(configuration).test(.router) { client in
                    try await client.execute(uri: "/api/v1/health", method: .get) { response in
                        #expect(response.status == .ok)
                        let body = try json(response.body)
                        #expect(body["status"] as? String == "ok")
                        #expect(body["node_id"] as? String == "test-node")
                        #expect(body["config_version"] as? Int == 0)
                        let checks = try #require(body["checks"] as? [String: [String: Any]])
                        #expect(checks["redis"]?["status"] as? String == "up")
                        #expect(checks["control_plane"]?["status"] as? String == "up")
                    }
                }
            }
        }
    }

    @Test("control plane unreachable: still serving, 200 degraded")
    func controlPlaneDown() async throws {
        let closed = try RedisServerProcess.freePort()
        let configuration = try await Self.configuration(["control.url": "http://127.0.0.1:\(closed)"])
        try await Self.makeApp(configuration).test(.router) { client in
            try await client.execute(uri: "/api/v1/health", method: .get) { response in
                #expect(response.status == .ok)
                let body = try json(response.body)
                #expect(body["status"] as? String == "degraded")
                let checks = try #require(body["checks"] as? [String: [String: Any]])
                #expect(checks["control_plane"]?["status"] as? String == "down")
            }
        }
    }

    @Test("Redis killed: 503 problem+json with the reason; Redis back: 200 again, same node")
    func redisOutageAndRecovery() async throws {
        let server = try RedisServerProcess()
        try await server.start()
        defer { server.stop() }
        let closed = try RedisServerProcess.freePort()
        let configuration = try await Self.configuration([
            "redis.port": String(server.port),
            "redis.password": "",
            "control.url": "http://127.0.0.1:\(closed)",
        ])
        try await Self.makeApp(configuration).test(.router) { client in
            try await client.execute(uri: "/api/v1/health", method: .get) { response in
                #expect(response.status == .ok)
            }
            try await server.kill()
            try await client.execute(uri: "/api/v1/health", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.contentType] == "application/problem+json")
                let body = try json(response.body)
                #expect(body["type"] as? String == "https://zaas.dev/problems/unhealthy")
                let reasons = try #require(body["reasons"] as? [String])
                #expect(reasons.contains { $0.hasPrefix("redis is down") })
            }
            try await server.start()
            var status: HTTPResponse.Status = .serviceUnavailable
            for _ in 0..<40 where status != .ok {
                try await Task.sleep(for: .milliseconds(50))
                status = try await client.execute(uri: "/api/v1/health", method: .get).status
            }
            #expect(status == .ok)
        }
    }
}
