import Foundation
import Shared
import TestSupport
import Testing

/// Rate limits across three data-plane nodes as processes, sharing one Redis.
extension ProcessClusters {
    @Suite("rate limits end to end: control plane and three nodes as processes", .serialized)
    struct RateLimitClusterTests {
        static let question = #"{"question": "What is the principle of stationary action?"}"#
        /// Patient with Redis: a command timing out under the test machine's load would (rightly)
        /// send a node to its local share and change the counts.
        static let redisSettings = ["redis.command_timeout_ms": "3000", "redis.connect_timeout_ms": "3000"]

        static func query(_ node: ServerProcess, key: String, body: String = Self.question) async throws
            -> TestHTTP.Reply
        {
            try await TestHTTP.send(
                "POST", node.baseURL + "/api/v1/query", bearer: key, json: body, timeout: .seconds(60))
        }

        /// `count` queries at once, spread round-robin over the nodes; their statuses.
        static func burst(_ cluster: Cluster, key: String, count: Int) async throws -> [TestHTTP.Reply] {
            try await withThrowingTaskGroup(of: TestHTTP.Reply.self) { group in
                for index in 0..<count {
                    let node = cluster.nodes[index % cluster.nodes.count]
                    group.addTask { try await Self.query(node, key: key) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
        }

        @Test(
            "a Free key (10/h): exactly 10 of 60 concurrent queries over three nodes; headers count down across nodes; 429 problem+json with Retry-After; invalid queries do not count"
        )
        func exactAcrossNodes() async throws {
            try await Cluster.with(nodeCount: 3, nodeSettings: Self.redisSettings) { cluster in
                // Two Free tenants: the tier's 10 an hour is the whole tenant's, whatever its keys.
                let (_, admin) = try await cluster.makeTenant(slug: "free", tier: "free")
                let (_, burstAdmin) = try await cluster.makeTenant(slug: "free-burst", tier: "free")
                let burstKey = try await cluster.createKey(token: burstAdmin)
                let countdownKey = try await cluster.createKey(token: admin)
                let secondKey = try await cluster.createKey(token: admin)
                #expect(try await cluster.waitForAllNodes(countdownKey.text, status: 200) != nil)
                #expect(try await cluster.waitForAllNodes(burstKey.text, status: 200) != nil)
                #expect(try await cluster.waitForAllNodes(secondKey.text, status: 200) != nil)

                // One at a time, each on the next node: the remaining count goes down by one each time,
                // cache hits included (the same question: from the second on, exact hits).
                var remaining: [Int] = []
                for index in 0..<10 {
                    let reply = try await Self.query(cluster.nodes[index % 3], key: countdownKey.text)
                    #expect(reply.status == 200, "\(reply.text)")
                    #expect(reply.headers["ratelimit-limit"] == "10")
                    #expect(reply.headers["retry-after"] == nil)
                    #expect(reply.headers["x-zaas-cache"] == (index == 0 ? "miss" : "exact"))
                    remaining.append(Int(reply.headers["ratelimit-remaining"] ?? "") ?? -1)
                    if index == 0 {
                        // One query of ten spent: the bucket is full again in 360 s.
                        #expect((350...360).contains(Int(reply.headers["ratelimit-reset"] ?? "") ?? 0))
                    }
                }
                #expect(remaining == Array((0..<10).reversed()))
                let refused = try await Self.query(cluster.nodes[1], key: countdownKey.text)
                #expect(refused.status == 429)
                #expect(refused.headers["content-type"] == "application/problem+json")
                #expect(refused.json?["type"] as? String == "https://zaas.dev/problems/rate-limited")
                #expect((340...360).contains(Int(refused.headers["retry-after"] ?? "") ?? 0), "\(refused.headers)")
                #expect(refused.headers["ratelimit-remaining"] == "0")
                #expect(refused.headers["ratelimit-limit"] == "10")
                // The tenant's other key has spent nothing of its own, but the tenant has no queries left.
                let other = try await Self.query(cluster.nodes[0], key: secondKey.text)
                #expect(other.status == 429, "\(other.text)")
                // An invalid query is not counted (nor refused for the limit), and still shows it.
                let invalid = try await Self.query(cluster.nodes[2], key: countdownKey.text, body: #"{"question": ""}"#)
                #expect(invalid.status == 400)
                #expect(invalid.headers["ratelimit-remaining"] == "0")

                // Many times the limit at once, over all three nodes: exactly the limit admitted.
                let replies = try await Self.burst(cluster, key: burstKey.text, count: 60)
                #expect(replies.filter { $0.status == 200 }.count == 10)
                #expect(replies.filter { $0.status == 429 }.count == 50)
                let admittedRemaining = replies.filter { $0.status == 200 }.compactMap {
                    Int($0.headers["ratelimit-remaining"] ?? "")
                }
                #expect(admittedRemaining.sorted() == Array(0..<10))
                #expect(replies.filter { $0.status == 429 }.allSatisfy { $0.headers["retry-after"] != nil })
            }
        }

        @Test(
            "Redis killed: each of three nodes admits its share (10 / 3 = 3) of a fresh key, a used-up key stays refused, health degraded; Redis back: shared again, charged with what was admitted"
        )
        func redisOutage() async throws {
            let redis = try RedisServerProcess()
            try await redis.start()
            defer { redis.stop() }
            let settings = Self.redisSettings.merging([
                "redis.port": String(redis.port), "redis.password": "", "redis.reconnect_backoff_ms": "100",
                "rate_limit.probe_interval_ms": "200",
            ]) { $1 }
            try await Cluster.with(nodeCount: 3, nodeSettings: settings) { cluster in
                // Two Free tenants (the tier's limit is each tenant's): one used up before the outage.
                let (_, admin) = try await cluster.makeTenant(slug: "free", tier: "free")
                let (_, freshAdmin) = try await cluster.makeTenant(slug: "free-fresh", tier: "free")
                let (_, asyncAdmin) = try await cluster.makeTenant(slug: "free-async", tier: "free")
                let used = try await cluster.createKey(token: admin)
                let fresh = try await cluster.createKey(token: freshAdmin)
                let asking = try await cluster.createKey(token: asyncAdmin)
                #expect(try await cluster.waitForAllNodes(used.text, status: 200) != nil)
                #expect(try await cluster.waitForAllNodes(fresh.text, status: 200) != nil)
                #expect(try await cluster.waitForAllNodes(asking.text, status: 200) != nil)
                // Every node knows there are three (the registry's count comes with each watch answer).
                for node in cluster.nodes {
                    let three = try await TestHTTP.waitUntil(timeout: .seconds(30)) {
                        try await cluster.health(node).body["live_nodes"] as? Int == 3
                    }
                    #expect(three != nil, "\(node.name) does not see three live nodes")
                }
                let before = try await Self.burst(cluster, key: used.text, count: 30)
                #expect(before.filter { $0.status == 200 }.count == 10)
                // Each node's last word from Redis on this key: nothing left.
                for node in cluster.nodes { #expect(try await Self.query(node, key: used.text).status == 429) }

                try await redis.kill()
                let during = try await Self.burst(cluster, key: fresh.text, count: 60)
                #expect(during.filter { $0.status == 200 }.count == 9, "\(during.map(\.status))")
                #expect(during.filter { $0.status == 200 }.allSatisfy { $0.headers["ratelimit-limit"] == "3" })
                #expect(during.allSatisfy { [200, 429].contains($0.status) })
                let usedDuring = try await Self.burst(cluster, key: used.text, count: 30)
                #expect(usedDuring.allSatisfy { $0.status == 429 }, "\(usedDuring.map(\.status))")
                // Asynchronous queries live in Redis: neither submitted nor read while it is away.
                let submitted = try await Self.query(
                    cluster.nodes[0], key: asking.text,
                    body: #"{"question": "What is the principle of stationary action?", "async": true}"#)
                let status = try await TestHTTP.send(
                    "GET", cluster.nodes[0].baseURL + "/api/v1/queries/\(UUID())", bearer: asking.text)
                for reply in [submitted, status] {
                    #expect(reply.status == 503, "\(reply.text)")
                    #expect(reply.json?["type"] as? String == Problem.typeBase + "async-unavailable")
                    #expect(reply.headers["retry-after"] == "5")
                }
                for node in cluster.nodes {
                    let health = try await cluster.health(node)
                    #expect(health.status == 200)
                    #expect(health.body["status"] as? String == "degraded")
                    let checks = health.body["checks"] as? [String: [String: Any]]
                    #expect(checks?["rate_limit"]?["status"] as? String == "degraded")
                }

                try await redis.start()
                for node in cluster.nodes {
                    let back = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                        let checks = try await cluster.health(node).body["checks"] as? [String: [String: Any]]
                        return checks?["rate_limit"]?["status"] as? String == "up"
                    }
                    #expect(back != nil, "\(node.name) did not return to Redis")
                }
                // The 9 admitted during the outage were charged to Redis: one query of the hour is left.
                let after = try await Self.burst(cluster, key: fresh.text, count: 6)
                #expect(after.filter { $0.status == 200 }.count == 1, "\(after.map(\.status))")
            }
        }
    }
}
