import Foundation
import PostgresNIO
import Shared
import TestSupport
import Testing

/// The audit trail end to end: a node records every query's outcome in its spool before it
/// answers, ships it to the control plane, which stores it once in PostgreSQL.
extension ProcessClusters {
    @Suite("the audit trail end to end: every outcome recorded, shipped once, nothing lost", .serialized)
    struct AuditClusterTests {
        /// Every stored event's JSON, as the database owner sees them (row-level security hides none).
        static func storedEvents(_ cluster: Cluster) async throws -> [[String: Any]] {
            let texts = try await withPostgresClient(cluster.database.owner) { client in
                var texts: [String] = []
                let rows = try await client.query("SELECT event::text FROM audit_events")
                for try await text in rows.decode(String.self) { texts.append(text) }
                return texts
            }
            return texts.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }

        /// The stored events by request id, once every id of `expected` has one (or after 20 s).
        static func events(
            _ cluster: Cluster, covering expected: Set<String>
        ) async throws -> [String: [[String: Any]]] {
            var byRequest: [String: [[String: Any]]] = [:]
            _ = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                byRequest = Dictionary(grouping: try await Self.storedEvents(cluster)) {
                    $0["request_id"] as? String ?? ""
                }
                return expected.isSubset(of: Set(byRequest.keys))
            }
            return byRequest
        }

        /// The stored events that `matching` picks, once there is at least one (or after 20 s).
        static func events(
            _ cluster: Cluster, matching: @escaping @Sendable ([String: Any]) -> Bool
        ) async throws -> [[String: Any]] {
            var found: [[String: Any]] = []
            _ = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                found = try await Self.storedEvents(cluster).filter(matching)
                return !found.isEmpty
            }
            return found
        }

        static func ask(
            _ node: ServerProcess, key: String, _ question: String, requestID: String, timeout: Duration = .seconds(60)
        ) async throws -> TestHTTP.Reply {
            let body = String(
                decoding: try JSONSerialization.data(withJSONObject: ["question": question]), as: UTF8.self)
            return try await TestHTTP.send(
                "POST", node.baseURL + "/api/v1/query", bearer: key, json: body, headers: ["X-Request-ID": requestID],
                timeout: timeout)
        }

        /// Waits until the node answers from the demo canon, asking with `key` (an Enterprise key:
        /// the polls never use up a small tier's limit).
        static func waitForCanon(_ node: ServerProcess, key: String) async throws {
            let loaded = try await TestHTTP.waitUntil(timeout: .seconds(60)) {
                let reply = try await Self.ask(node, key: key, "How is the Lagrangian defined?", requestID: "poll")
                return ((reply.json?["citations"] as? [Any])?.isEmpty) == false
            }
            #expect(loaded != nil, "the demo canon never loaded")
        }

        @Test(
            "answers, cache hits, refusals (401, 403, 429) and invalid queries each leave one event; questions are redacted and fingerprinted"
        )
        func everyOutcome() async throws {
            try await Cluster.with(nodeCount: 1, nodeSettings: ["audit.ship_interval_ms": "100"]) { cluster in
                let node = cluster.nodes[0]
                _ = try await QueryClusterTests.publishDemoCanon(cluster)
                let (tenant, admin) = try await cluster.makeTenant(slug: "lab", tier: "free")
                let key = try await cluster.createKey(token: admin)
                let statsOnly = try await cluster.createKey(token: admin, scopes: #"["stats:read"]"#)
                let (_, pollerAdmin) = try await cluster.makeTenant(slug: "poller", tier: "enterprise")
                let poller = try await cluster.createKey(token: pollerAdmin)
                #expect(try await cluster.waitForAllNodes(poller.text, status: 200) != nil)
                try await Self.waitForCanon(node, key: poller.text)

                let question = "What is the principle of stationary action?"
                #expect(try await Self.ask(node, key: key.text, question, requestID: "answered").status == 200)
                let exact = try await Self.ask(node, key: key.text, question, requestID: "exact")
                #expect(exact.headers["x-zaas-cache"] == "exact")
                let personal = "Mail jane.doe@example.org: what is the principle of stationary action?"
                #expect(try await Self.ask(node, key: key.text, personal, requestID: "personal").status == 200)
                #expect(try await Self.ask(node, key: key.text, "", requestID: "invalid").status == 400)
                #expect(
                    try await Self.ask(node, key: "zaas_live_nope", question, requestID: "unknown-key").status == 401)
                #expect(try await Self.ask(node, key: statsOnly.text, question, requestID: "no-scope").status == 403)
                // Free: 10 queries an hour; three were used.
                for index in 0..<7 {
                    #expect(try await Self.ask(node, key: key.text, question, requestID: "fill-\(index)").status == 200)
                }
                #expect(try await Self.ask(node, key: key.text, question, requestID: "limited").status == 429)

                let expected: [String: (outcome: String, status: Int)] = [
                    "answered": ("answered", 200), "exact": ("cache_exact", 200), "personal": ("answered", 200),
                    "invalid": ("invalid", 400), "unknown-key": ("refused", 401), "no-scope": ("refused", 403),
                    "limited": ("refused", 429),
                ]
                let events = try await Self.events(cluster, covering: Set(expected.keys))
                for (requestID, (outcome, status)) in expected {
                    let found = events[requestID] ?? []
                    #expect(found.count == 1, "\(requestID): \(found.count) events")
                    guard let event = found.first else { continue }
                    #expect(event["outcome"] as? String == outcome, "\(requestID): \(event)")
                    #expect(event["status"] as? Int == status, "\(requestID)")
                    #expect(event["node"] as? String == node.name)
                    let owner = event["tenant_id"] as? String
                    #expect(owner == (requestID == "unknown-key" ? nil : tenant.lowercased), "\(requestID)")
                    if status != 200 {
                        #expect((event["problem_type"] as? String)?.hasPrefix(Problem.typeBase) == true, "\(requestID)")
                    }
                }
                for index in 0..<7 { #expect(events["fill-\(index)"]?.count == 1) }

                let answered = try #require(events["answered"]?.first)
                let asked = try #require(answered["question"] as? [String: Any])
                #expect(asked["text"] as? String == question && asked["redacted"] as? Bool == true)
                let answer = try #require(answered["answer"] as? [String: Any])
                #expect((answer["answer"] as? String)?.isEmpty == false)
                #expect(answer["model_used"] as? String == "zora-extractive-local")
                let citations = try #require(answer["citations"] as? [[String: Any]])
                #expect(!citations.isEmpty && citations.allSatisfy { $0["snippet"] == nil && $0["id"] != nil })
                #expect(answered["cache"] as? String == "miss")
                #expect(answered["query_id"] as? String != nil)
                #expect((answered["timings_ms"] as? [String: Any])?["total"] != nil)
                // Repeats group by fingerprint; the stored question of the personal one is redacted.
                let hit = try #require(events["exact"]?.first?["question"] as? [String: Any])
                #expect(hit["fingerprint"] as? String == asked["fingerprint"] as? String)
                let redacted = try #require(events["personal"]?.first?["question"] as? [String: Any])
                #expect(redacted["text"] as? String == "Mail [email]: what is the principle of stationary action?")
                #expect(redacted["fingerprint"] as? String != asked["fingerprint"] as? String)

                // GET /api/v1/stats (a stats:read key): the rollups say what the stored events say.
                let hour = (Date().timeIntervalSince1970 / 3600).rounded(.down) * 3600
                let range =
                    "from=\(Date(timeIntervalSince1970: hour - 3600).formatted(.iso8601))&to=\(Date(timeIntervalSince1970: hour + 3600).formatted(.iso8601))"
                let stats = try await TestHTTP.send(
                    "GET", node.baseURL + "/api/v1/stats?\(range)", bearer: statsOnly.text)
                #expect(stats.status == 200, "\(stats.text)")
                let report = try UsageReport.decoder.decode(UsageReport.self, from: Data(stats.text.utf8))
                var expectedTotals = UsageReport.Counters()
                var keys: Set<String> = []
                for event in try await Self.storedEvents(cluster)
                where event["tenant_id"] as? String == tenant.lowercased && event["kind"] as? String == "query" {
                    expectedTotals.add(
                        outcome: event["outcome"] as? String ?? "", status: event["status"] as? Int ?? 0, queries: 1)
                    keys.insert(event["key_id"] as? String ?? "")
                }
                #expect(report.totals == expectedTotals)
                #expect(
                    report.totals.queries == 13 && report.totals.refusedByLimit == 1 && report.totals.refusedOther == 1)
                #expect(Set(report.byKey.map(\.keyId)) == keys)
                #expect(report.latency.samples == report.totals.answered + report.totals.cacheHits)
                // Free: 10 an hour, all spent.
                #expect(
                    report.limit
                        == UsageReport.Limit(limit: 10, remaining: 0, resetSeconds: report.limit?.resetSeconds ?? -1))
                #expect(
                    try await TestHTTP.send("GET", node.baseURL + "/api/v1/stats", bearer: key.text).status == 403)
                let bad = try await TestHTTP.send(
                    "GET", node.baseURL + "/api/v1/stats?period=2026-13", bearer: statsOnly.text)
                #expect(bad.status == 422 && bad.headers["content-type"] == "application/problem+json", "\(bad.text)")
                #expect(bad.json?["type"] as? String == Problem.typeBase + "validation-failed")
            }
        }

        @Test(
            "control plane down: queries are answered and their events wait in the spool; back up: all arrive, none twice; kill -9 under load loses no answered query's event"
        )
        func durability() async throws {
            try await Cluster.with(nodeCount: 1, nodeSettings: ["audit.ship_interval_ms": "100"]) { cluster in
                let node = cluster.nodes[0]
                _ = try await QueryClusterTests.publishDemoCanon(cluster)
                let (_, admin) = try await cluster.makeTenant(slug: "lab", tier: "enterprise")
                let key = try await cluster.createKey(token: admin)
                let statsOnly = try await cluster.createKey(token: admin, scopes: #"["stats:read"]"#)
                #expect(try await cluster.waitForAllNodes(key.text, status: 200) != nil)
                #expect(try await cluster.waitForAllNodes(statsOnly.text, status: 200) != nil)
                try await Self.waitForCanon(node, key: key.text)
                let questions = [
                    "What is the principle of stationary action?", "How is the Lagrangian defined?",
                    "What does Noether's theorem say?",
                ]

                // The control plane away: the node answers from what it holds, and spools.
                _ = await cluster.control.terminate()
                var whileDown: Set<String> = []
                for index in 0..<30 {
                    let reply = try await Self.ask(
                        node, key: key.text, questions[index % questions.count], requestID: "down-\(index)")
                    #expect(reply.status == 200, "\(reply.text)")
                    whileDown.insert("down-\(index)")
                }
                // Usage figures live in the control plane: a clear 503 while it is away.
                let stats = try await TestHTTP.send("GET", node.baseURL + "/api/v1/stats", bearer: statsOnly.text)
                #expect(stats.status == 503, "\(stats.text)")
                #expect(stats.json?["type"] as? String == Problem.typeBase + "stats-unavailable")
                #expect(stats.headers["retry-after"] == "5")
                try await Task.sleep(for: .milliseconds(500))
                let metrics = try await TestHTTP.send("GET", node.metricsURL).text
                let spooled = metrics.split(separator: "\n").first { $0.hasPrefix("zaas_audit_spool_bytes ") }
                #expect(
                    spooled.flatMap { Double($0.split(separator: " ")[1]) }.map { $0 > 0 } == true, "\(spooled ?? "")")
                try await cluster.startControl()
                let afterOutage = try await Self.events(cluster, covering: whileDown)
                for requestID in whileDown {
                    #expect(afterOutage[requestID]?.count == 1, "\(requestID): \(afterOutage[requestID]?.count ?? 0)")
                }

                // Load from four clients; the node is killed (SIGKILL) in the middle of it.
                let sent = await withTaskGroup(of: Set<String>.self) { group in
                    for client in 0..<4 {
                        group.addTask {
                            var answered: Set<String> = []
                            for index in 0..<10_000 {
                                let requestID = "load-\(client)-\(index)"
                                guard
                                    let reply = try? await Self.ask(
                                        node, key: key.text, questions[index % questions.count], requestID: requestID,
                                        timeout: .seconds(5))
                                else { break }
                                if reply.status == 200 { answered.insert(requestID) }
                            }
                            return answered
                        }
                    }
                    group.addTask {
                        try? await Task.sleep(for: .seconds(2))
                        node.kill()
                        return []
                    }
                    return await group.reduce(into: Set<String>()) { $0.formUnion($1) }
                }
                #expect(sent.count > 20, "too little load before the kill: \(sent.count)")
                try await cluster.start(node)
                let afterKill = try await Self.events(cluster, covering: sent)
                let missing = sent.filter { afterKill[$0] == nil }
                #expect(missing.isEmpty, "\(missing.count) of \(sent.count) answered queries have no event")
                #expect(sent.allSatisfy { (afterKill[$0]?.count ?? 0) <= 1 }, "an event stored twice")
                // Nothing anywhere is stored twice.
                let all = try await Self.storedEvents(cluster).compactMap { $0["id"] as? String }
                #expect(Set(all).count == all.count)
            }
        }
        @Test(
            "a query the node cannot answer (Redis down, limits set to refuse: 503) is recorded as failed with its problem type"
        )
        func failedQuery() async throws {
            let redis = try RedisServerProcess()
            try await redis.start()
            defer { redis.stop() }
            let settings = [
                "redis.port": String(redis.port), "redis.password": "", "rate_limit.redis_fallback": "refuse",
                "audit.ship_interval_ms": "100",
            ]
            try await Cluster.with(nodeCount: 1, nodeSettings: settings) { cluster in
                let node = cluster.nodes[0]
                let (tenant, admin) = try await cluster.makeTenant(slug: "lab", tier: "enterprise")
                let key = try await cluster.createKey(token: admin)
                #expect(try await cluster.waitForAllNodes(key.text, status: 200) != nil)
                try await redis.kill()
                var attempts = 0
                let refused = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                    attempts += 1
                    return try await Self.ask(
                        node, key: key.text, "What is the principle of stationary action?",
                        requestID: "failed-\(attempts)"
                    ).status == 503
                }
                #expect(refused != nil, "no 503 with Redis down and rate_limit.redis_fallback=refuse")
                let requestID = "failed-\(attempts)"
                let events = try await Self.events(cluster) { $0["request_id"] as? String == requestID }
                #expect(events.count == 1)
                let event = try #require(events.first)
                #expect(event["outcome"] as? String == "failed", "\(event)")
                #expect(event["status"] as? Int == 503)
                #expect(event["problem_type"] as? String == Problem.typeBase + "rate-limiter-unavailable", "\(event)")
                #expect(event["tenant_id"] as? String == tenant.lowercased)
                #expect(event["answer"] == nil)
            }
        }

        @Test("questions are kept raw only where the tenant opted in: in audit events and in the answer cache")
        func rawQuestionsOptIn() async throws {
            try await Cluster.with(nodeCount: 1, nodeSettings: ["audit.ship_interval_ms": "100"]) { cluster in
                let node = cluster.nodes[0]
                let ops = try await QueryClusterTests.publishDemoCanon(cluster)
                let (redacting, redactingAdmin) = try await cluster.makeTenant(slug: "private", tier: "enterprise")
                let (raw, rawAdmin) = try await cluster.makeTenant(slug: "open", tier: "enterprise")
                let policy = try await TestHTTP.send(
                    "PUT", cluster.control.baseURL + "/admin/v1/tenants/\(raw.lowercased)/quota-policy", bearer: ops,
                    json: #"{"store_raw_questions": true}"#)
                #expect(policy.status == 200, "\(policy.text)")
                #expect((policy.json?["limits"] as? [String: Any])?["store_raw_questions"] as? Bool == true)
                // Keys made after the policy: a node that knows the key knows the policy.
                let redactingKey = try await cluster.createKey(token: redactingAdmin)
                let rawKey = try await cluster.createKey(token: rawAdmin)
                #expect(try await cluster.waitForAllNodes(rawKey.text, status: 200) != nil)
                #expect(try await cluster.waitForAllNodes(redactingKey.text, status: 200) != nil)
                try await Self.waitForCanon(node, key: redactingKey.text)

                let question = "Mail ada@example.org: how is the Lagrangian defined?"
                #expect(try await Self.ask(node, key: redactingKey.text, question, requestID: "private").status == 200)
                #expect(try await Self.ask(node, key: rawKey.text, question, requestID: "open").status == 200)
                // A semantic hit is recorded as one, with its similarity.
                let original = try await Self.ask(
                    node, key: redactingKey.text, "What does Noether's theorem state?", requestID: "original")
                #expect(original.headers["x-zaas-cache"] == "miss")
                let paraphrase = try await Self.ask(
                    node, key: redactingKey.text, "What exactly does Noether's theorem state?", requestID: "paraphrase")
                #expect(paraphrase.headers["x-zaas-cache"] == "semantic", "\(paraphrase.headers)")
                let events = try await Self.events(cluster, covering: ["private", "open", "paraphrase"])
                let semantic = try #require(events["paraphrase"]?.first)
                #expect(
                    semantic["outcome"] as? String == "cache_semantic" && semantic["cache"] as? String == "semantic")
                #expect((semantic["cache_similarity"] as? Double).map { $0 >= 0.95 } == true, "\(semantic)")
                let hidden = try #require(events["private"]?.first?["question"] as? [String: Any])
                #expect(hidden["text"] as? String == "Mail [email]: how is the Lagrangian defined?")
                #expect(hidden["redacted"] as? Bool == true)
                let kept = try #require(events["open"]?.first?["question"] as? [String: Any])
                #expect(kept["text"] as? String == question && kept["redacted"] as? Bool == false)

                // The persistent answer cache (written in batches through the control plane).
                var cached: [UUID: String] = [:]
                _ = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                    cached = try await withPostgresClient(cluster.database.owner) { client in
                        var found: [UUID: String] = [:]
                        let rows = try await client.query(
                            "SELECT tenant_id, question FROM answer_cache WHERE question LIKE 'mail %'")
                        for try await (tenant, text) in rows.decode((UUID, String).self) { found[tenant] = text }
                        return found
                    }
                    return cached.count == 2
                }
                let redactedCopy = try #require(cached[redacting])
                #expect(
                    redactedCopy.wholeMatch(of: /mail \[email \d{8}\]: how is the lagrangian defined\?/) != nil,
                    "\(redactedCopy)")
                #expect(cached[raw] == "mail ada@example.org: how is the lagrangian defined?")
            }
        }
    }
}
