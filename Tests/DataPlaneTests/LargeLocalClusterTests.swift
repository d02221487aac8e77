import Foundation
import Shared
import TestSupport
import Testing

/// The large-local class end to end with scripted providers (the real AirLLM sidecar has its own
/// suite, `AirLLMClusterTests`): a control plane and a node as processes, the demo canon, a Team
/// tenant whose quota policy drops the cloud class, and two providers registered as `local` and
/// `large-local` (the second also serves the `/metrics` the node's monitor reads).
extension ProcessClusters {
    @Suite(
        "large-local end to end: auto routing, asynchronous classes by policy, health from metrics, busy, keys revoked before a job runs",
        .serialized)
    struct LargeLocalClusterTests {
        typealias Query = QueryClusterTests

        struct Fixture {
            let cluster: Cluster
            let ops: String
            let local: FakeModelProvider
            let large: FakeModelProvider
            let tenant: UUID
            let admin: String
            let key: (id: String, text: String)
        }

        static let answer = "The Lagrangian is kinetic minus potential energy [1]."

        static func with(_ body: @Sendable (Fixture) async throws -> Void) async throws {
            let local = try FakeModelProvider()
            let large = try FakeModelProvider()
            try await local.start()
            try await large.start()
            defer {
                local.stop()
                large.stop()
            }
            // One job at a time, looked for often; the sidecars' metrics read five times a second.
            let settings = [
                "cache.semantic_threshold": "off", "models.monitor_interval_ms": "200", "jobs.workers": "1",
                "jobs.poll_ms": "50",
            ]
            try await Cluster.with(nodeCount: 1, nodeSettings: settings) { cluster in
                let ops = try await Query.publishDemoCanon(cluster)
                for (name, modelClass, provider, timeout) in [
                    ("fake-local", "local", local, 2000), ("fake-large", "large-local", large, 20_000),
                ] {
                    let added = try await TestHTTP.send(
                        "POST", cluster.control.baseURL + "/admin/v1/models", bearer: ops,
                        json: #"""
                            {"name": "\#(name)", "model_class": "\#(modelClass)", "base_url": "\#(provider.baseURL)",
                             "credential_name": null, "timeout_ms": \#(timeout), "max_concurrency": 2}
                            """#)
                    #expect(added.status == 201, "\(added.text)")
                }
                let (tenant, admin) = try await cluster.makeTenant(slug: "team", tier: "team")
                let key = try await cluster.createKey(token: admin)
                #expect(
                    try await Query.waitForCitation(
                        cluster, key: key.text, "What is a Lagrangian?", id: "def.lagrangian", present: true))
                let fixture = Fixture(
                    cluster: cluster, ops: ops, local: local, large: large, tenant: tenant, admin: admin, key: key)
                // No cloud, and every question complex enough for it: `auto` wants the large-local class.
                try await Self.setPolicy(
                    fixture, #"{"model_classes": ["local", "large-local"], "routing_threshold": 0}"#)
                try await local.reset()
                try await large.reset()
                try await body(fixture)
            }
        }

        /// Replaces the tenant's quota policy and waits until the node has the new config; the
        /// policy's limits as the control plane shows them.
        @discardableResult
        static func setPolicy(_ fixture: Fixture, _ json: String) async throws -> [String: Any] {
            let node = fixture.cluster.nodes[0]
            let before = try #require(try await fixture.cluster.health(node).body["config_version"] as? Int)
            let policy = try await TestHTTP.send(
                "PUT",
                fixture.cluster.control.baseURL
                    + "/admin/v1/tenants/\(fixture.tenant.uuidString.lowercased())/quota-policy",
                bearer: fixture.ops, json: json)
            #expect(policy.status == 200, "\(policy.text)")
            let arrived = try await TestHTTP.waitUntil(timeout: .seconds(10)) {
                (try await fixture.cluster.health(node).body["config_version"] as? Int ?? 0) > before
            }
            #expect(arrived != nil)
            return policy.json?["limits"] as? [String: Any] ?? [:]
        }

        static func ask(_ fixture: Fixture, _ question: String, extra: String = "") async throws -> TestHTTP.Reply {
            try await Query.query(fixture.cluster.nodes[0], key: fixture.key.text, question, extra: extra)
        }

        /// The result of an asynchronous query once it has run (any key of the tenant may read it).
        static func result(_ fixture: Fixture, _ submitted: TestHTTP.Reply, bearer: String? = nil) async throws
            -> TestHTTP.Reply
        {
            let location = try #require(submitted.headers["location"], "\(submitted.text)")
            var last: TestHTTP.Reply?
            _ = try await TestHTTP.waitUntil(timeout: .seconds(60)) {
                last = try await TestHTTP.send(
                    "GET", fixture.cluster.nodes[0].baseURL + location, bearer: bearer ?? fixture.key.text)
                return last?.status != 202
            }
            return try #require(last)
        }

        static func route(_ reply: TestHTTP.Reply) -> [String: Any] {
            reply.json?["route"] as? [String: Any] ?? [:]
        }

        @Test(
            "auto sends a complex question to large-local when cloud is not allowed; async_model_classes makes such a query 202 unless it says async: false; a local one stays synchronous"
        )
        func routingAndPolicy() async throws {
            try await Self.with { fixture in
                try await fixture.large.script([], default: .answer(Self.answer))
                try await fixture.local.script([], default: .answer(Self.answer))
                let routed = try await Self.ask(fixture, "How is the Lagrangian defined, at large?")
                #expect(routed.status == 200, "\(routed.text)")
                #expect(routed.json?["model_used"] as? String == "fake-large", "\(routed.text)")
                #expect(Self.route(routed)["class"] as? String == "large-local")
                #expect(
                    (Self.route(routed)["reason"] as? String)?.hasSuffix(
                        "but the tenant's tier does not allow cloud models; answered by large-local") == true,
                    "\(routed.text)")
                #expect(Query.citedIDs(routed) == ["def.lagrangian"], "\(routed.text)")

                // Large-local answers asynchronously for this tenant from now on.
                let limits = try await Self.setPolicy(
                    fixture,
                    #"{"model_classes": ["local", "large-local"], "routing_threshold": 0, "async_model_classes": ["large-local"]}"#
                )
                #expect(limits["async_model_classes"] as? [String] == ["large-local"], "\(limits)")
                let deferred = try await Self.ask(fixture, "How is the Lagrangian defined, later?")
                #expect(deferred.status == 202, "\(deferred.text)")
                #expect(deferred.json?["model_class"] as? String == "large-local")
                #expect(deferred.json?["status"] as? String == "queued")
                let result = try await Self.result(fixture, deferred)
                #expect(result.status == 200, "\(result.text)")
                #expect(result.json?["model_used"] as? String == "fake-large", "\(result.text)")
                #expect(result.json?["query_id"] as? String == deferred.json?["query_id"] as? String)
                #expect(Query.citedIDs(result) == ["def.lagrangian"])
                // Asked again: the answer the job stored, at once.
                let cached = try await Self.ask(fixture, "How is the Lagrangian defined, later?")
                #expect(cached.status == 200 && cached.json?["cache_hit"] as? Bool == true, "\(cached.text)")

                // The request's own word wins; a class the policy does not name is answered at once.
                let waited = try await Self.ask(
                    fixture, "How is the Lagrangian defined, now?", extra: #""async": false"#)
                #expect(waited.status == 200 && waited.json?["model_used"] as? String == "fake-large", "\(waited.text)")
                let local = try await Self.ask(
                    fixture, "How is the Lagrangian defined, locally?", extra: #""model_preference": "local""#)
                #expect(local.status == 200 && local.json?["model_used"] as? String == "fake-local", "\(local.text)")
                // A question the canon does not cover is never deferred: the extractive answerer says so at once.
                let uncovered = try await Self.ask(fixture, "What is the best pizza topping in Naples?")
                #expect(uncovered.status == 200 && uncovered.json?["covered"] as? Bool == false, "\(uncovered.text)")
                // Streaming is an answer as it comes: never deferred.
                let streamed = try await TestHTTP.send(
                    "POST", fixture.cluster.nodes[0].baseURL + "/api/v1/query", bearer: fixture.key.text,
                    json: #"{"question": "How is the Lagrangian defined, streamed?"}"#,
                    headers: ["Accept": "text/event-stream"], timeout: .seconds(60))
                #expect(streamed.status == 200 && streamed.text.contains("event: answer"), "\(streamed.text)")

                // An unknown class in the policy is refused, and the policy stays.
                let invalid = try await TestHTTP.send(
                    "PUT",
                    fixture.cluster.control.baseURL
                        + "/admin/v1/tenants/\(fixture.tenant.uuidString.lowercased())/quota-policy",
                    bearer: fixture.ops, json: #"{"async_model_classes": ["huge"]}"#)
                #expect(invalid.status == 422, "\(invalid.text)")
                #expect(invalid.text.contains("async_model_classes"))

                // The sidecar reports no model loaded: its circuit is held open, and a query that would
                // have gone to it is answered at once by the local class, saying why.
                try await fixture.large.setMetrics("airllm_model_loaded 0\n")
                var fallback: TestHTTP.Reply?
                var attempt = 0
                let held = try await TestHTTP.waitUntil(timeout: .seconds(10)) {
                    attempt += 1
                    fallback = try await Self.ask(fixture, "How is the Lagrangian defined, unhealthy \(attempt)?")
                    return fallback?.json?["fallback_reason"] as? String == "backend_unhealthy"
                }
                #expect(held != nil, "\(fallback?.text ?? "")")
                #expect(fallback?.status == 200)
                #expect(fallback?.json?["model_used"] as? String == "fake-local")
                #expect(Self.route(fallback!)["class"] as? String == "local")
                let metrics = try await TestHTTP.send("GET", fixture.cluster.nodes[0].metricsURL)
                #expect(metrics.text.contains(#"zaas_model_backend_up{model="fake-large"} 1"#), "\(metrics.text)")

                // Loaded again, then busy: 429 with Retry-After is honoured, not counted as broken.
                try await fixture.large.setMetrics("airllm_model_loaded 1\n")
                let back = try await TestHTTP.waitUntil(timeout: .seconds(10)) {
                    attempt += 1
                    let reply = try await Self.ask(
                        fixture, "How is the Lagrangian defined, back \(attempt)?", extra: #""async": false"#)
                    return reply.json?["model_used"] as? String == "fake-large"
                }
                #expect(back != nil)
                try await fixture.large.reset()
                try await fixture.large.script([.busy(retryAfter: 30)], default: .answer(Self.answer))
                for number in 0..<2 {
                    let busy = try await Self.ask(
                        fixture, "How is the Lagrangian defined, busy \(number)?", extra: #""async": false"#)
                    #expect(busy.json?["fallback_reason"] as? String == "backend_busy", "\(busy.text)")
                    #expect(busy.json?["model_used"] as? String == "fake-local")
                }
                // Called once: the second query did not try it within its Retry-After.
                #expect(try await fixture.large.received().count == 1)
            }
        }

        @Test(
            "a key revoked after its query was submitted: the job that runs afterwards stores the 401 the synchronous call would get"
        )
        func revokedBeforeRunning() async throws {
            try await Self.with { fixture in
                // One worker: the first job holds it for eight seconds, long enough to revoke the key
                // and for the node to learn of it before the second job starts.
                try await fixture.large.script(
                    [.answer(Self.answer, delay: .seconds(8))], default: .answer(Self.answer))
                let reader = try await fixture.cluster.createKey(token: fixture.admin)
                #expect(try await fixture.cluster.waitForAllNodes(reader.text, status: 200) != nil)
                let first = try await Self.ask(
                    fixture, "How is the Lagrangian defined, first?", extra: #""async": true"#)
                #expect(first.status == 202, "\(first.text)")
                // The first job is running (the provider has its call) before the second is submitted.
                let running = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                    try await fixture.large.received().count == 1
                }
                #expect(running != nil)
                let second = try await Self.ask(
                    fixture, "How is the Lagrangian defined, second?", extra: #""async": true"#)
                #expect(second.status == 202, "\(second.text)")
                try await fixture.cluster.revokeKey(fixture.key.id, token: fixture.admin)
                #expect(try await fixture.cluster.waitForAllNodes(fixture.key.text, status: 401) != nil)
                #expect(try await fixture.large.received().count == 1, "the second job started before the revocation")

                // The first was running with a valid key: answered. The second was not run.
                let answered = try await Self.result(fixture, first, bearer: reader.text)
                #expect(answered.status == 200 && answered.json?["model_used"] as? String == "fake-large")
                let refused = try await Self.result(fixture, second, bearer: reader.text)
                #expect(refused.status == 401, "\(refused.text)")
                #expect(refused.json?["type"] as? String == Problem.typeBase + "invalid-api-key")
                #expect(refused.headers["content-type"] == "application/problem+json")
                #expect(try await fixture.large.received().count == 1)
            }
        }
    }
}
