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
                // client's 20 s), none with a 500. The first may fail at once (its connection is
                // closed under it) or wait for the probe's verdict; once the probe has given it
                // (health says so), every write is refused at once.
                proxy.cut()
                let clock = ContinuousClock()
                func write(_ index: Int) async -> Duration? {
                    let started = clock.now
                    let reply: TestHTTP.Reply
                    do {
                        reply = try await Self.createTenant(cluster, ops, slug: "during-\(index)")
                    } catch {
                        let log = cluster.control.logTail(40)
                        Issue.record("write \(index) during the outage: \(error) after \(clock.now - started)\n\(log)")
                        return nil
                    }
                    #expect(reply.status == 503, "\(reply.status) \(reply.text)")
                    #expect(reply.headers["content-type"] == "application/problem+json")
                    #expect(reply.json?["type"] as? String == "https://zaas.dev/problems/database-unavailable")
                    #expect(reply.headers["retry-after"] == "5")
                    #expect(!reply.text.contains("PSQL") && !reply.text.contains("127.0.0.1"))
                    return clock.now - started
                }
                _ = await write(0)
                // Health fails on its own query at once; the probe's verdict comes after 8 s.
                let noticed = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                    let health = try? await TestHTTP.send("GET", control + "/healthz")
                    let checks = health?.json?["checks"] as? [String: [String: Any]]
                    return health?.status == 503 && checks?["database_probe"]?["status"] as? String == "down"
                }
                #expect(noticed != nil, "the control plane never noticed the outage")
                for index in 1..<6 {
                    if let took = await write(index) {
                        #expect(took < .seconds(3), "write \(index) took \(took)")
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

    @Suite("faults: processes stopped and killed mid-work", .serialized)
    struct ProcessFaultTests {
        typealias Query = QueryClusterTests

        static func version(_ cluster: Cluster, _ ops: String, _ id: String) async throws -> [String: Any] {
            let reply = try await TestHTTP.send(
                "GET", cluster.control.baseURL + "/admin/v1/base-canon/versions/\(id)", bearer: ops)
            return reply.json ?? [:]
        }

        @Test(
            "control plane stopped mid-build: taken up again at once after the restart; killed right after publishing: the node loads the canon once it is back; a node SIGKILLed under load: the other answers, the restarted one serves again, and every acknowledged query stays counted"
        )
        func processFaults() async throws {
            try await Cluster.with(nodeCount: 2) { cluster in
                let control = cluster.control.baseURL
                func signIn() async throws -> String {
                    let reply = try await TestHTTP.send(
                        "POST", control + "/admin/v1/sessions",
                        json: #"{"email": "ops@zaas.example", "password": "\#(Cluster.password)"}"#)
                    return try #require(reply.json?["token"] as? String, "\(reply.text)")
                }
                var ops = try await signIn()
                let upload = try await TestHTTP.send(
                    "POST", control + "/admin/v1/base-canon/versions?publish=true", bearer: ops,
                    json: try Query.demoCanonJSON(), timeout: .seconds(60))
                let id = try #require(upload.json?["id"] as? String, "\(upload.text)")

                // Stopped while building: the build is handed back, and the restarted control
                // plane finishes it well within the 60-second lease a crash would leave.
                let building = try await TestHTTP.waitUntil(timeout: .seconds(60)) {
                    try await Self.version(cluster, ops, id)["state"] as? String == "building"
                }
                #expect(building != nil)
                #expect(await cluster.control.terminate() == 0)
                try await cluster.startControl()
                ops = try await signIn()
                let state = try await Self.version(cluster, ops, id)["state"] as? String
                #expect(state == "queued" || state == "building", "\(state ?? "none") after the restart")
                let built = try await TestHTTP.waitUntil(timeout: .seconds(40)) {
                    let version = try await Self.version(cluster, ops, id)
                    return version["state"] as? String == "ready" && version["published"] as? Bool == true
                }
                #expect(built != nil, "not built within 40 s of the restart")

                // Killed as the nodes go to fetch the new artifact: they get it once it is back.
                cluster.control.kill()
                try await Task.sleep(for: .seconds(1))
                try await cluster.startControl()
                let (_, admin) = try await cluster.makeTenant(slug: "team", tier: "team")
                let key = try await cluster.createKey(token: admin)
                #expect(
                    try await Query.waitForCitation(
                        cluster, key: key.text, "How is the Lagrangian defined?", id: "def.lagrangian", present: true))

                // A node killed under load: the other keeps answering; the restarted one serves
                // again; the acknowledged queries are all still counted against the hour's limit.
                let (first, second) = (cluster.nodes[0], cluster.nodes[1])
                // The bucket refills continuously (GCRA: the hour's limit spread over the hour), so
                // what was spent is read from the remaining count before and after, less the refill.
                let clock = ContinuousClock()
                let before = try await Query.query(second, key: key.text, "Which principle is stationary?")
                let remainingBefore = try #require(Int(before.headers["ratelimit-remaining"] ?? ""))
                let loadStarted = clock.now
                let counter = QueryCounter()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for worker in 0..<4 {
                        group.addTask {
                            for index in 0..<15 {
                                let node = worker % 2 == 0 ? first : second
                                let body = #"{"question": "What is the action? \#(worker)-\#(index)"}"#
                                let reply = await TestHTTP.sendAbandoningAfter(
                                    .seconds(15), "POST", node.baseURL + "/api/v1/query", bearer: key.text, json: body)
                                await counter.record(node: node.name, status: reply?.status)
                            }
                        }
                    }
                    group.addTask {
                        try await Task.sleep(for: .milliseconds(300))
                        first.kill()
                    }
                    try await group.waitForAll()
                }
                let tally = await counter.tally
                #expect(tally[second.name]?[200, default: 0] == 30, "\(tally)")
                #expect(tally.values.flatMap(\.keys).allSatisfy { [200, 0].contains($0) }, "\(tally)")
                try await cluster.start(first)
                var refusedWhileStarting = 0
                let again = try await TestHTTP.waitUntil(timeout: .seconds(30)) {
                    let status = (try? await Query.query(first, key: key.text, "What is the action?"))?.status
                    if let status, status != 200 { refusedWhileStarting += 1 }
                    return status == 200
                }
                #expect(again != nil)
                let acknowledged = tally.values.map { $0[200, default: 0] }.reduce(0, +) + 1
                // Requests that got no answer (or a refusal while the node started) may or may not count.
                let lost = tally.values.map { $0[0, default: 0] }.reduce(0, +) + refusedWhileStarting
                let last = try await Query.query(second, key: key.text, "Which principle is stationary?")
                let remainingAfter = try #require(Int(last.headers["ratelimit-remaining"] ?? ""))
                let limit = try #require(Int(last.headers["ratelimit-limit"] ?? ""))
                let elapsed = Double((clock.now - loadStarted).components.seconds) + 1
                let refill = Int((Double(limit) * elapsed / 3600).rounded(.up)) + 1
                let spent = remainingBefore - remainingAfter  // the final query included
                #expect(
                    spent + refill >= acknowledged + 1,
                    "spent \(spent), refill ≤ \(refill), \(acknowledged) acknowledged")
                #expect(
                    spent <= acknowledged + 1 + lost, "spent \(spent), \(acknowledged) acknowledged, \(lost) unanswered"
                )
            }
        }
    }
}

/// Query outcomes per node and status (0: no answer, as when the node died mid-request).
actor QueryCounter {
    private(set) var tally: [String: [Int: Int]] = [:]

    func record(node: String, status: Int?) {
        tally[node, default: [:]][status ?? 0, default: 0] += 1
    }
}
