import ControlPlane
import Foundation
import Logging
import PostgresNIO
import Shared
import TestSupport
import Testing

/// The answer cache across two nodes as processes, over the demo canon.
extension ProcessClusters {
    @Suite("answer cache end to end: control plane and two nodes as processes", .serialized)
    struct CacheClusterTests {
        static func query(
            _ node: ServerProcess, key: String, _ question: String, extra: String = ""
        ) async throws -> TestHTTP.Reply {
            try await QueryClusterTests.query(node, key: key, question, extra: extra)
        }

        /// The sum of a counter's samples in a node's /metrics whose labels contain `labels`.
        static func counter(_ node: ServerProcess, _ name: String, labels: String = "") async throws -> Double {
            let text = try await TestHTTP.send("GET", node.metricsURL).text
            return text.split(separator: "\n").filter { $0.hasPrefix(name) && (labels.isEmpty || $0.contains(labels)) }
                .compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
        }

        /// Signs the operator in and publishes the demo canon as the base canon.
        static func publishDemoCanon(_ cluster: Cluster) async throws {
            let signIn = try await TestHTTP.send(
                "POST", cluster.control.baseURL + "/admin/v1/sessions",
                json: #"{"email": "ops@zaas.example", "password": "\#(Cluster.password)"}"#)
            let ops = try #require(signIn.json?["token"] as? String)
            let upload = try await TestHTTP.send(
                "POST", cluster.control.baseURL + "/admin/v1/base-canon/versions?publish=true", bearer: ops,
                json: try QueryClusterTests.demoCanonJSON(), timeout: .seconds(60))
            #expect(upload.status == 202, "\(upload.text)")
        }

        /// Rows of the persistent cache for a tenant (with `citing`: only answers that cite
        /// something), read as an operator.
        static func persisted(
            _ cluster: Cluster, tenant: UUID, citing: Bool = false, digests: [String]? = nil
        ) async throws -> Int {
            try await withPostgresClient(cluster.database.app) { client in
                try await ScopedDatabase(client: client).withOperator(UUID(), logger: Cluster.logger) { connection in
                    let rows = try await connection.query(
                        """
                        SELECT count(*)::int8 FROM answer_cache WHERE tenant_id = \(tenant)
                            AND (NOT \(citing) OR jsonb_array_length(answer -> 'citations') > 0)
                            AND (\(digests)::text[] IS NULL OR digest = ANY (\(digests)))
                        """, logger: Cluster.logger)
                    var count = 0
                    for try await value in rows.decode(Int.self) { count = value }
                    return count
                }
            }
        }

        /// A tenant's cache keys in the shared Redis (answers and semantic streams).
        static func cacheKeys(tenant: UUID) async throws -> [String] {
            let redis = RedisClient(configuration: TestEnvironment.shared.redis, logger: Cluster.logger)
            defer { Task { await redis.shutdown() } }
            var cursor = "0"
            var keys: [String] = []
            repeat {
                let reply = try await redis.send([
                    "SCAN", .string(cursor), "MATCH", .string("zaas:{t:\(tenant.uuidString.lowercased())}:[qs]c:*"),
                    "COUNT", 1000,
                ])
                cursor = reply.array?.first?.string ?? "0"
                keys += (reply.array?.last?.array ?? []).compactMap(\.string)
            } while cursor != "0"
            return keys
        }

        /// Deletes a tenant's exact-cache keys from the shared Redis, as an eviction would.
        static func evictFromRedis(tenant: UUID) async throws -> Int {
            let redis = RedisClient(configuration: TestEnvironment.shared.redis, logger: Cluster.logger)
            defer { Task { await redis.shutdown() } }
            var cursor = "0"
            var deleted = 0
            repeat {
                let reply = try await redis.send([
                    "SCAN", .string(cursor), "MATCH", .string("zaas:{t:\(tenant.uuidString.lowercased())}:qc:*"),
                    "COUNT", 1000,
                ])
                let parts = reply.array ?? []
                cursor = parts.first?.string ?? "0"
                for key in parts.last?.array ?? [] {
                    if let name = key.string { deleted += Int(try await redis.send(["DEL", .string(name)]).int ?? 0) }
                }
            } while cursor != "0"
            return deleted
        }

        @Test(
            "persistent tier: answers reach PostgreSQL in the background; after an eviction from Redis they are served from there and put back in Redis; answers of a replaced canon version are swept"
        )
        func persistentTier() async throws {
            // A patient control-plane timeout: the lookup must not give up while the test machine is loaded.
            try await Cluster.with(
                nodeSettings: ["control.timeout_ms": "10000"], controlSettings: ["cache.sweep_interval_seconds": "1"]
            ) { cluster in
                try await Self.publishDemoCanon(cluster)
                let (tenant, admin) = try await cluster.makeTenant(slug: "ent", tier: "enterprise")
                let key = try await cluster.createKey(token: admin, scopes: #"["query", "canon:write"]"#).text
                #expect(try await cluster.waitForAllNodes(key, status: 200, timeout: .seconds(20)) != nil)
                let question = "What does Noether's theorem say?"
                // The first answer from the base canon, once the nodes have it.
                var first: TestHTTP.Reply?
                _ = try await TestHTTP.waitUntil(timeout: .seconds(60)) {
                    let reply = try await Self.query(cluster.nodes[0], key: key, question)
                    if reply.status == 200 && !QueryClusterTests.citedIDs(reply).isEmpty { first = reply }
                    return first != nil
                }
                let answer = try #require(first?.json?["answer"] as? String)
                let stored = try await TestHTTP.waitUntil(timeout: .seconds(10)) {
                    try await Self.persisted(cluster, tenant: tenant, citing: true) >= 1
                }
                #expect(
                    stored != nil,
                    "the answer did not reach PostgreSQL: \(cluster.nodes[0].logTail(20)) \(cluster.control.logTail(20))"
                )

                #expect(try await Self.evictFromRedis(tenant: tenant) >= 1)
                let fromPostgres = try await Self.query(cluster.nodes[1], key: key, question)
                let lookupErrors = try await Self.counter(cluster.nodes[1], "zaas_persistent_cache_lookup_errors_total")
                #expect(fromPostgres.headers["x-zaas-cache"] == "exact", "lookup errors: \(lookupErrors)")
                #expect(fromPostgres.json?["cache_hit"] as? Bool == true)
                #expect(fromPostgres.json?["answer"] as? String == answer)
                // Its audit event says which tier answered.
                let queryID = try #require(fromPostgres.json?["query_id"] as? String)
                let events = try await AuditClusterTests.events(cluster) { $0["query_id"] as? String == queryID }
                #expect(events.count == 1)
                #expect(events.first?["outcome"] as? String == "cache_persistent", "\(events)")
                #expect(events.first?["cache"] as? String == "persistent")
                #expect((events.first?["answer"] as? [String: Any])?["answer"] as? String == answer)
                // Back in Redis: found there without asking PostgreSQL (evicting again proves it was there).
                #expect(try await Self.evictFromRedis(tenant: tenant) == 1)

                // The internal API stores what it can and names, by index, what it refuses for
                // good, so one bad answer never holds up the others (a NUL, a question over the
                // column's limit in code points, a TTL of 0 or past the maximum, a NUL escape in
                // the answer were each once a whole-batch refusal retried forever).
                let internalURL = cluster.control.baseURL + "/internal/v1/cache"
                let node = TestEnvironment.shared.nodeToken(for: "node-1")
                func entry(digest: Character, question: String = "q", answer: String = #"{\"a\": 1}"#, ttl: Int = 60)
                    -> String
                {
                    #"{"tenant_id": "\#(tenant.uuidString)", "digest": "\#(String(repeating: digest, count: 64))", "scope": "\#(String(repeating: "0", count: 32))", "question": "\#(question)", "answer": "\#(answer)", "ttl_seconds": \#(ttl)}"#
                }
                let entries = [
                    #"{"tenant_id": "\#(tenant.uuidString)", "digest": "xyz", "scope": "00", "question": "", "answer": "[1]", "ttl_seconds": 0}"#,
                    entry(digest: "a"),
                    entry(digest: "b", question: "nul \\u0000 inside"),
                    entry(digest: "c", question: "e" + String(repeating: "\\u0301", count: 20_000)),
                    entry(digest: "d", ttl: 0),
                    entry(digest: "e", ttl: 2_592_001),
                    entry(digest: "f", answer: #"{\"a\": \"\\u0000\"}"#),
                    entry(digest: "1", ttl: 2_592_000),
                ]
                let mixed = try await TestHTTP.send(
                    "POST", internalURL, bearer: node, json: #"{"entries": [\#(entries.joined(separator: ","))]}"#)
                #expect(mixed.status == 200, "\(mixed.text)")
                #expect(mixed.json?["stored"] as? Int == 2, "\(mixed.text)")
                let refused = (mixed.json?["refused"] as? [[String: Any]]) ?? []
                #expect(refused.compactMap { $0["index"] as? Int } == [0, 2, 3, 4, 5, 6], "\(mixed.text)")
                let firstReason = refused.first?["reason"] as? String ?? ""
                for field in ["digest", "scope", "question", "answer", "ttl_seconds"] {
                    #expect(firstReason.contains(field), "\(firstReason)")
                }
                #expect(
                    try await Self.persisted(
                        cluster, tenant: tenant, digests: ["a", "1"].map { String(repeating: $0, count: 64) }) == 2)
                let tooMany = try await TestHTTP.send(
                    "POST", internalURL, bearer: node,
                    json: #"{"entries": [\#(Array(repeating: entry(digest: "a"), count: 501).joined(separator: ","))]}"#
                )
                #expect(tooMany.status == 422 && tooMany.headers["content-type"] == "application/problem+json")
                #expect(try await TestHTTP.send("POST", internalURL, json: #"{"entries": []}"#).status == 401)
                #expect(try await TestHTTP.send("GET", internalURL + "/\(tenant)/nothex", bearer: node).status == 404)
                #expect(try await Self.persisted(cluster, tenant: tenant) >= 1)

                // A publish: the old answers leave PostgreSQL in the background.
                let update = try await TestHTTP.send(
                    "POST", cluster.nodes[0].baseURL + "/api/v1/canon/update", bearer: key,
                    json:
                        #"{"upsert": [{"id": "lab.note", "kind": "narrative", "title": "Lab note", "body": "Our cryostat boils off 1.2 litres of helium a day.", "status": "Narrative"}]}"#
                )
                #expect(update.status == 202, "\(update.text)")
                let swept = try await TestHTTP.waitUntil(timeout: .seconds(60)) {
                    try await Self.persisted(cluster, tenant: tenant) == 0
                }
                #expect(swept != nil, "answers of the replaced canon were not swept")
            }
        }

        @Test(
            "semantic hits: a paraphrase is served on the other node with its similarity; never to another tenant, with context, another max_citations, or for a near miss (Lagrangian / Hamiltonian)"
        )
        func semanticCache() async throws {
            try await Cluster.with { cluster in
                try await Self.publishDemoCanon(cluster)
                let (aTenant, aAdmin) = try await cluster.makeTenant(slug: "a", tier: "enterprise")
                let (_, bAdmin) = try await cluster.makeTenant(slug: "b", tier: "enterprise")
                let a = try await cluster.createKey(token: aAdmin).text
                let b = try await cluster.createKey(token: bAdmin).text
                #expect(try await cluster.waitForAllNodes(b, status: 200, timeout: .seconds(20)) != nil)
                for key in [a, b] {
                    #expect(
                        try await QueryClusterTests.waitForCitation(
                            cluster, key: key, "How is the Lagrangian defined?", id: "def.lagrangian", present: true))
                }

                let original = "What does Noether's theorem state?"
                let paraphrase = "What exactly does Noether's theorem state?"
                let first = try await Self.query(cluster.nodes[0], key: a, original)
                #expect(first.headers["x-zaas-cache"] == "miss")
                let hit = try await Self.query(cluster.nodes[1], key: a, paraphrase)
                #expect(hit.headers["x-zaas-cache"] == "semantic", "\(hit.headers)")
                let similarity = Double(hit.headers["x-zaas-cache-similarity"] ?? "") ?? 0
                #expect(similarity >= 0.95 && similarity <= 1, "\(similarity)")
                #expect(hit.json?["cache_hit"] as? Bool == true)
                #expect(abs((hit.json?["cache_similarity"] as? Double ?? 0) - similarity) < 0.001)
                #expect(hit.json?["answer"] as? String == first.json?["answer"] as? String)
                // The paraphrase is now an exact hit of its own.
                #expect(try await Self.query(cluster.nodes[0], key: a, paraphrase).headers["x-zaas-cache"] == "exact")

                // Tenant B: the same paraphrase is a miss, never A's answer.
                let other = try await Self.query(cluster.nodes[1], key: b, paraphrase)
                #expect(other.headers["x-zaas-cache"] == "miss")
                #expect(other.json?["cache_hit"] as? Bool == false)

                // Context, or another max_citations: never served semantically.
                let reworded = "What exactly does Noether's theorem say?"
                let withContext = try await Self.query(
                    cluster.nodes[0], key: a, reworded, extra: #""context": "We study conservation laws.""#)
                #expect(withContext.headers["x-zaas-cache"] == "miss")
                let fewer = try await Self.query(
                    cluster.nodes[0], key: a, paraphrase + " ", extra: #""max_citations": 2"#)
                #expect(fewer.headers["x-zaas-cache"] == "miss")

                // A near miss: similar sentences, another question.
                let lagrangian = try await Self.query(
                    cluster.nodes[0], key: a, "What is the Lagrangian of a free particle?")
                #expect(lagrangian.headers["x-zaas-cache"] == "miss")
                let hamiltonian = try await Self.query(
                    cluster.nodes[1], key: a, "What is the Hamiltonian of a free particle?")
                #expect(hamiltonian.headers["x-zaas-cache"] == "miss", "\(hamiltonian.headers)")
                #expect(hamiltonian.json?["answer"] as? String != lagrangian.json?["answer"] as? String)
                // Near misses that embed above 0.95 (0.996 and 0.97 with this model): the guard refuses them.
                for (asked, then) in [
                    (
                        "How do you get the Hamiltonian from the Lagrangian?",
                        "How do you get the Lagrangian from the Hamiltonian?"
                    ),
                    ("Does the theory predict a fifth force?", "Does the theory not predict a fifth force?"),
                ] {
                    #expect(try await Self.query(cluster.nodes[0], key: a, asked).headers["x-zaas-cache"] == "miss")
                    let reply = try await Self.query(cluster.nodes[1], key: a, then)
                    #expect(reply.headers["x-zaas-cache"] == "miss", "\(then): \(reply.headers)")
                }
                let refusals = try await Self.counter(cluster.nodes[1], "zaas_semantic_cache_guard_refusals_total")
                #expect(refusals >= 2)

                // The tenant's own threshold (its quota policy): at 1.0 only identical embeddings are served.
                let ops = try #require(
                    try await TestHTTP.send(
                        "POST", cluster.control.baseURL + "/admin/v1/sessions",
                        json: #"{"email": "ops@zaas.example", "password": "\#(Cluster.password)"}"#
                    ).json?["token"] as? String)
                let before = try #require(try await cluster.health(cluster.nodes[0]).body["config_version"] as? Int)
                let policy = try await TestHTTP.send(
                    "PUT",
                    cluster.control.baseURL + "/admin/v1/tenants/\(aTenant.uuidString.lowercased())/quota-policy",
                    bearer: ops, json: #"{"semantic_cache_threshold": 1}"#)
                #expect(policy.status == 200, "\(policy.text)")
                #expect((policy.json?["limits"] as? [String: Any])?["semantic_cache_threshold"] as? Double == 1)
                let invalid = try await TestHTTP.send(
                    "PUT",
                    cluster.control.baseURL + "/admin/v1/tenants/\(aTenant.uuidString.lowercased())/quota-policy",
                    bearer: ops, json: #"{"semantic_cache_threshold": 0.5}"#)
                #expect(invalid.status == 422)
                for node in cluster.nodes {
                    let arrived = try await TestHTTP.waitUntil(timeout: .seconds(10)) {
                        (try await cluster.health(node).body["config_version"] as? Int ?? 0) > before
                    }
                    #expect(arrived != nil)
                }
                // Tenant B keeps the default and gets the semantic hit; tenant A does not.
                for (key, expected) in [(b, "semantic"), (a, "miss")] {
                    #expect(
                        try await Self.query(cluster.nodes[0], key: key, "What is phase space?").headers["x-zaas-cache"]
                            == "miss")
                    let reply = try await Self.query(cluster.nodes[1], key: key, "What is the phase space?")
                    #expect(reply.headers["x-zaas-cache"] == expected, "\(reply.headers)")
                }
                // Streamed, a semantic hit is one `answer` event, and the header says which cache answered.
                let streamed = try await TestHTTP.send(
                    "POST", cluster.nodes[1].baseURL + "/api/v1/query", bearer: b,
                    json: #"{"question": "What is a phase space?"}"#, headers: ["Accept": "text/event-stream"])
                #expect(streamed.headers["x-zaas-cache"] == "semantic", "\(streamed.headers)")
                #expect(streamed.headers["x-zaas-cache-similarity"] != nil)
                let events = TestHTTP.events(streamed.body)
                #expect(events.map(\.name) == ["answer"], "\(streamed.text)")
                #expect(events.first?.json?["cache_hit"] as? Bool == true)
            }
        }

        @Test(
            "exact hits on the other node for the normalised question with a fresh query id; never across tenants, max_citations or context; concurrent misses computed once; a publish makes the next identical question a miss from the new version"
        )
        func exactCache() async throws {
            try await Cluster.with { cluster in
                try await Self.publishDemoCanon(cluster)
                let (entTenant, entAdmin) = try await cluster.makeTenant(slug: "ent", tier: "enterprise")
                let (_, otherAdmin) = try await cluster.makeTenant(slug: "other", tier: "enterprise")
                let key = try await cluster.createKey(token: entAdmin, scopes: #"["query", "canon:write"]"#).text
                let other = try await cluster.createKey(token: otherAdmin).text
                #expect(try await cluster.waitForAllNodes(other, status: 200, timeout: .seconds(20)) != nil)
                #expect(
                    try await QueryClusterTests.waitForCitation(
                        cluster, key: key, "How is the Lagrangian defined?", id: "def.lagrangian", present: true))

                let question = "What does Noether's theorem say?"
                let first = try await Self.query(cluster.nodes[0], key: key, question)
                #expect(first.status == 200)
                #expect(first.headers["x-zaas-cache"] == "miss")
                #expect(first.json?["cache_hit"] as? Bool == false)
                let hit = try await Self.query(cluster.nodes[1], key: key, "  WHAT does Noether's   THEOREM say? ")
                #expect(hit.status == 200)
                #expect(hit.headers["x-zaas-cache"] == "exact")
                #expect(hit.json?["cache_hit"] as? Bool == true)
                #expect(hit.json?["answer"] as? String == first.json?["answer"] as? String)
                #expect(QueryClusterTests.citedIDs(hit) == QueryClusterTests.citedIDs(first))
                #expect(!QueryClusterTests.citedIDs(hit).isEmpty)
                #expect(hit.json?["query_id"] as? String != first.json?["query_id"] as? String)

                // Another tenant asking the same: its own miss, then its own hit.
                let otherFirst = try await Self.query(cluster.nodes[1], key: other, question)
                #expect(otherFirst.headers["x-zaas-cache"] == "miss")
                #expect(try await Self.query(cluster.nodes[0], key: other, question).headers["x-zaas-cache"] == "exact")
                // Other max_citations, context or model preference: other answers.
                for extra in [
                    #""max_citations": 2"#, #""context": "We work on gauge theories.""#,
                    #""model_preference": "local""#,
                ] {
                    let reply = try await Self.query(cluster.nodes[0], key: key, question, extra: extra)
                    #expect(reply.status == 200 && reply.headers["x-zaas-cache"] == "miss", "\(extra)")
                }

                // Eight identical new questions at once on one node: answered once.
                let before = try await Self.counter(cluster.nodes[0], "zaas_queries_total")
                let together = "Which conservation law follows from time translation symmetry?"
                let replies = try await withThrowingTaskGroup(of: TestHTTP.Reply.self) { group in
                    for _ in 0..<8 { group.addTask { try await Self.query(cluster.nodes[0], key: key, together) } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(replies.allSatisfy { $0.status == 200 })
                #expect(Set(replies.compactMap { $0.json?["answer"] as? String }).count == 1)
                let after = try await Self.counter(cluster.nodes[0], "zaas_queries_total")
                #expect(after == before + 1, "\(before) → \(after)")
                #expect(
                    try await Self.counter(cluster.nodes[1], "zaas_cache_lookups_total", labels: #"result="exact""#)
                        >= 1)

                // A publish: the next identical question is a miss answered from the new version.
                let oldKeys = try await Self.cacheKeys(tenant: entTenant)
                #expect(oldKeys.contains { $0.contains(":qc:") } && oldKeys.contains { $0.contains(":sc:") })
                let update = try await TestHTTP.send(
                    "POST", cluster.nodes[0].baseURL + "/api/v1/canon/update", bearer: key,
                    json:
                        #"{"upsert": [{"id": "lab.note", "kind": "narrative", "title": "Lab note", "body": "Our cryostat boils off 1.2 litres of helium a day.", "status": "Narrative"}]}"#
                )
                #expect(update.status == 202, "\(update.text)")
                #expect(
                    try await QueryClusterTests.waitForCitation(
                        cluster, key: key, "How much helium does the cryostat boil off?", id: "lab.note", present: true)
                )
                let afterPublish = try await Self.query(cluster.nodes[1], key: key, question)
                #expect(afterPublish.headers["x-zaas-cache"] == "miss")
                #expect(afterPublish.json?["canon_version"] as? String == "ent-v1+base-v1")
                let again = try await Self.query(cluster.nodes[0], key: key, question)
                #expect(again.headers["x-zaas-cache"] == "exact")
                #expect(again.json?["canon_version"] as? String == "ent-v1+base-v1")
                // The old version's answers and semantic stream leave Redis in the background.
                let removed = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                    try await Set(Self.cacheKeys(tenant: entTenant)).isDisjoint(with: oldKeys)
                }
                #expect(removed != nil, "old cache keys still in Redis")
                // The other tenant's canon did not change: its answer is still cached.
                #expect(try await Self.query(cluster.nodes[1], key: other, question).headers["x-zaas-cache"] == "exact")
            }
        }
    }
}
