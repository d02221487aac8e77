import AsyncHTTPClient
import ControlPlane
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PostgresNIO
import ServiceLifecycle
import Shared
import TestSupport

// Latency of the admin API's two costly operations, over HTTP on loopback against the real
// control plane and PostgreSQL: signing in (Argon2id with OWASP parameters) and creating an API
// key (CSPRNG, HMAC, insert, change-log trigger). Sequential requests; p50 and p99 in ms.

@main
struct AdminBench {
    static func main() async throws {
        try await runBenchmark()
    }
}

func runBenchmark() async throws {
    let signIns = Int(ProcessInfo.processInfo.environment["BENCH_SIGNINS"] ?? "200") ?? 200
    let keyCreations = Int(ProcessInfo.processInfo.environment["BENCH_KEYS"] ?? "1000") ?? 1000
    let password = "benchmark passphrase 2026"
    var logger = Logger(label: "bench-admin")
    logger.logLevel = .warning
    let quietLogger = logger
    try await TestDatabase.withFresh { database in
        _ = try await withPostgresClient(database.owner) { owner in
            try await Migrator(applicationRole: TestEnvironment.shared.appUser, logger: quietLogger).migrate(
                client: owner)
        }
        let port = try RedisServerProcess.freePort()
        var environment: [String: String] = [
            "ZAAS_HTTP_PORT": String(port), "ZAAS_LOG_LEVEL": "warning", "ZAAS_MIGRATIONS_ON_START": "false",
            "ZAAS_BOOTSTRAP_OPERATOR_EMAIL": "ops@bench.example", "ZAAS_BOOTSTRAP_OPERATOR_PASSWORD": password,
        ]
        for (key, value) in TestEnvironment.shared.controlPlaneSettings(database: database.name) {
            environment[ConfigurationError.environmentName(key)] = value
        }
        let configuration = try ControlPlaneConfiguration(
            reader: try await ConfigurationLoader.reader(
                defaults: ControlPlaneConfiguration.defaults, environment: environment)
        )
        let app = try await buildApplication(configuration: configuration)
        let group = ServiceGroup(services: [app], logger: quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let base = "http://127.0.0.1:\(port)"
            let client = HTTPClient.shared
            for _ in 0..<300 {
                if let (status, _) = try? await call(client, .GET, base + "/healthz"), status == .ok { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            let (_, operatorSession) = try await call(
                client, .POST, base + "/admin/v1/sessions",
                json: #"{"email": "ops@bench.example", "password": "\#(password)"}"#
            )
            let operatorToken = operatorSession["token"] as! String
            let (_, tenant) = try await call(
                client, .POST, base + "/admin/v1/tenants", token: operatorToken,
                json: #"{"name": "Bench", "slug": "bench", "tier": "enterprise"}"#
            )
            let tenantID = tenant["id"] as! String
            _ = try await call(
                client, .POST, base + "/admin/v1/tenants/\(tenantID)/admins", token: operatorToken,
                json: #"{"email": "admin@bench.example", "password": "\#(password)", "role": "admin"}"#
            )

            let clock = ContinuousClock()
            var signInTimes: [Double] = []
            var token = ""
            for _ in 0..<signIns {
                let start = clock.now
                let (status, session) = try await call(
                    client, .POST, base + "/admin/v1/sessions",
                    json: #"{"email": "admin@bench.example", "password": "\#(password)"}"#
                )
                signInTimes.append((clock.now - start).milliseconds)
                precondition(status == .created, "sign-in failed: \(status)")
                token = session["token"] as! String
            }
            var keyTimes: [Double] = []
            for index in 0..<keyCreations {
                let start = clock.now
                let (status, _) = try await call(
                    client, .POST, base + "/admin/v1/keys", token: token,
                    json: #"{"name": "bench \#(index)", "scopes": ["query"]}"#
                )
                keyTimes.append((clock.now - start).milliseconds)
                precondition(status == .created, "key creation failed: \(status)")
            }
            // Failed sign-ins: an unknown email and a wrong password should cost about the same.
            var unknownTimes: [Double] = []
            var wrongTimes: [Double] = []
            for index in 0..<signIns {
                for (email, isUnknown) in [("nobody\(index)@bench.example", true), ("admin@bench.example", false)] {
                    let start = clock.now
                    let (status, _) = try await call(
                        client, .POST, base + "/admin/v1/sessions",
                        json: #"{"email": "\#(email)", "password": "not the password"}"#
                    )
                    precondition(status == .unauthorized, "failed sign-in answered \(status)")
                    if isUnknown {
                        unknownTimes.append((clock.now - start).milliseconds)
                    } else {
                        wrongTimes.append((clock.now - start).milliseconds)
                    }
                }
            }
            print(
                "bench-admin: \(ProcessInfo.processInfo.activeProcessorCount) cores, loopback HTTP, sequential requests"
            )
            report("sign-in (POST /admin/v1/sessions)", signInTimes)
            report("key creation (POST /admin/v1/keys)", keyTimes)
            report("failed sign-in, unknown email", unknownTimes)
            report("failed sign-in, wrong password", wrongTimes)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}

func report(_ name: String, _ samples: [Double]) {
    let sorted = samples.sorted()
    print(
        String(
            format: "%@: n=%d p50=%.2f ms p99=%.2f ms min=%.2f ms max=%.2f ms",
            name, sorted.count, percentile(sorted, 50), percentile(sorted, 99), sorted.first!, sorted.last!
        )
    )
}

func call(
    _ client: HTTPClient,
    _ method: HTTPMethod,
    _ url: String,
    token: String? = nil,
    json: String? = nil
) async throws -> (HTTPResponseStatus, [String: Any]) {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    if let json {
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: json))
    }
    let response = try await client.execute(request, timeout: .seconds(30))
    let body = try await response.body.collect(upTo: 1 << 20)
    let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]) ?? [:]
    return (response.status, object)
}
