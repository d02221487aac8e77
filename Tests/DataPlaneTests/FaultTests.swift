import Foundation
import TestSupport
import Testing

extension ProcessClusters {
    /// Faults the unit suites cannot show: the database taken away from a running control plane.
    @Suite("faults: PostgreSQL out of reach of a running control plane", .serialized)
    struct DatabaseFaultTests {
        static func tenantSlugs(_ cluster: Cluster, _ token: String) async throws -> [String] {
            let listed = try await TestHTTP.send(
                "GET", cluster.control.baseURL + "/admin/v1/tenants?limit=100", bearer: token)
            let items = try #require(listed.json?["items"] as? [[String: Any]], "\(listed.status) \(listed.text)")
            return items.compactMap { $0["slug"] as? String }.sorted()
        }

        static func createTenant(_ cluster: Cluster, _ token: String, slug: String) async throws -> TestHTTP.Reply {
            try await TestHTTP.send(
                "POST", cluster.control.baseURL + "/admin/v1/tenants", bearer: token,
                json: #"{"name": "\#(slug)", "slug": "\#(slug)", "tier": "pro"}"#, timeout: .seconds(20))
        }

        @Test(
            "PostgreSQL out of reach: admin calls get 503 database-unavailable with Retry-After within seconds, nothing half-written, nodes keep answering; back: writes succeed"
        )
        func postgresOutage() async throws {
            let proxy = try TCPProxy(target: TestEnvironment.shared.postgresPort)
            try await proxy.restore()
            defer { proxy.cut() }
            try await Cluster.with(nodeCount: 1, controlSettings: ["postgres.port": String(proxy.port)]) { cluster in
                let control = cluster.control.baseURL
                let signIn = try await TestHTTP.send(
                    "POST", control + "/admin/v1/sessions",
                    json: #"{"email": "ops@zaas.example", "password": "\#(Cluster.password)"}"#)
                let ops = try #require(signIn.json?["token"] as? String, "\(signIn.text)")
                #expect(try await Self.createTenant(cluster, ops, slug: "before").status == 201)
                let (_, admin) = try await cluster.makeTenant(slug: "lab")
                let key = try await cluster.createKey(token: admin)
                #expect(try await cluster.waitForAllNodes(key.text, status: 200) != nil)

                // Taken away while writes are being made: each answered (none hangs past the
                // client's 20 s), none with a 500; once the control plane has noticed, 503 at once.
                proxy.cut()
                let clock = ContinuousClock()
                var statuses: [Int] = []
                for index in 0..<6 {
                    let started = clock.now
                    let reply = try await Self.createTenant(cluster, ops, slug: "during-\(index)")
                    statuses.append(reply.status)
                    #expect(reply.status == 503, "\(reply.status) \(reply.text)")
                    #expect(reply.headers["content-type"] == "application/problem+json")
                    #expect(reply.json?["type"] as? String == "https://zaas.dev/problems/database-unavailable")
                    #expect(reply.headers["retry-after"] == "5")
                    #expect(!reply.text.contains("PSQL") && !reply.text.contains("127.0.0.1"))
                    if index > 0 {
                        #expect(clock.now - started < .seconds(3), "write \(index) took \(clock.now - started)")
                    }
                }
                let health = try await TestHTTP.send("GET", control + "/healthz")
                #expect(health.status == 503)
                // The data plane does not need the database to answer.
                #expect(try await cluster.keyStatus(key.text, on: cluster.nodes[0]) == 200)

                // Back: writes succeed again, and exactly the acknowledged ones exist.
                try await proxy.restore()
                let back = try await TestHTTP.waitUntil(timeout: .seconds(30)) {
                    (try? await TestHTTP.send("GET", control + "/healthz"))?.status == 200
                }
                #expect(back != nil)
                let after = try await TestHTTP.waitUntil(timeout: .seconds(10)) {
                    (try? await Self.createTenant(cluster, ops, slug: "after"))?.status == 201
                }
                #expect(after != nil)
                #expect(try await Self.tenantSlugs(cluster, ops) == ["after", "before", "lab"])
            }
        }
    }
}
