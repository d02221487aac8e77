import Canon
import Foundation
import Shared
import TestSupport
import Testing

/// The query path end to end: the demo canon uploaded through the admin API and built by the
/// control plane, fetched by two nodes, queried through the public API.
extension ProcessClusters {
    @Suite("query and canon updates end to end: control plane and two nodes as processes", .serialized)
    struct QueryClusterTests {
        static func demoCanonJSON() throws -> String {
            let folder = TestEnvironment.repositoryRoot.appendingPathComponent("infra/demo-canon").path
            let (entries, problems) = CanonArchive().parse(folder: folder)
            guard problems.isEmpty else { throw TestEnvironment.SetupError(message: "demo canon: \(problems)") }
            return String(decoding: try JSONEncoder().encode(entries.map(\.entry)), as: UTF8.self)
        }

        /// Signs the operator in and publishes the demo canon as the base canon; the operator's token.
        static func publishDemoCanon(_ cluster: Cluster) async throws -> String {
            let control = cluster.control.baseURL
            let signIn = try await TestHTTP.send(
                "POST", control + "/admin/v1/sessions",
                json: #"{"email": "ops@zaas.example", "password": "\#(Cluster.password)"}"#)
            let ops = try #require(signIn.json?["token"] as? String)
            let upload = try await TestHTTP.send(
                "POST", control + "/admin/v1/base-canon/versions?publish=true", bearer: ops,
                json: try Self.demoCanonJSON(), timeout: .seconds(60))
            #expect(upload.status == 202, "\(upload.text)")
            return ops
        }

        static func query(
            _ node: ServerProcess, key: String, _ question: String, extra: String = ""
        ) async throws -> TestHTTP.Reply {
            let body = try JSONSerialization.data(withJSONObject: ["question": question])
            var json = String(decoding: body, as: UTF8.self)
            if !extra.isEmpty { json = String(json.dropLast()) + ", " + extra + "}" }
            return try await TestHTTP.send(
                "POST", node.baseURL + "/api/v1/query", bearer: key, json: json, timeout: .seconds(60))
        }

        static func citedIDs(_ reply: TestHTTP.Reply) -> [String] {
            ((reply.json?["citations"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String }
        }

        /// Waits until `question` cites (or stops citing) `id` on every node.
        static func waitForCitation(
            _ cluster: Cluster, key: String, _ question: String, id: String, present: Bool
        ) async throws -> Bool {
            for node in cluster.nodes {
                let seen = try await TestHTTP.waitUntil(timeout: .seconds(60)) {
                    let reply = try await Self.query(node, key: key, question)
                    return reply.status == 200 && Self.citedIDs(reply).contains(id) == present
                }
                if seen == nil { return false }
            }
            return true
        }

        @Test(
            "answers with citations from the base canon on every node; an Enterprise overlay reaches only its tenant; rollback reaches the nodes"
        )
        func endToEnd() async throws {
            try await Cluster.with { cluster in
                let control = cluster.control.baseURL
                let ops = try await Self.publishDemoCanon(cluster)

                let (_, enterpriseAdmin) = try await cluster.makeTenant(slug: "ent", tier: "enterprise")
                let (_, freeAdmin) = try await cluster.makeTenant(slug: "free", tier: "free")
                let enterpriseKey = try await cluster.createKey(
                    token: enterpriseAdmin, scopes: #"["query", "canon:write"]"#)
                let freeKey = try await cluster.createKey(token: freeAdmin, scopes: #"["query", "canon:write"]"#)
                let queryOnly = try await cluster.createKey(token: enterpriseAdmin, scopes: #"["query"]"#)
                #expect(try await cluster.waitForAllNodes(freeKey.text, status: 200, timeout: .seconds(20)) != nil)

                // Every node answers from the base canon once it has loaded it. (Polled with the
                // Enterprise key: the Free key's 10 queries an hour are kept for the checks below.)
                let question = "How is the Lagrangian defined?"
                #expect(
                    try await Self.waitForCitation(
                        cluster, key: enterpriseKey.text, question, id: "def.lagrangian", present: true))
                for node in cluster.nodes {
                    let reply = try await Self.query(node, key: enterpriseKey.text, question)
                    #expect(reply.status == 200, "\(reply.text)")
                    let json = try #require(reply.json)
                    #expect(json["model_used"] as? String == "zora-extractive-local")
                    // The polls above asked the same question with the same key: cached.
                    #expect(json["cache_hit"] as? Bool == true)
                    #expect(UUID(uuidString: json["query_id"] as? String ?? "") != nil)
                    let confidence = try #require(json["confidence"] as? Double)
                    #expect(confidence > 0.3 && confidence <= 1)
                    let citations = try #require(json["citations"] as? [[String: Any]])
                    #expect(citations.first?["id"] as? String == "def.lagrangian")
                    #expect(citations.allSatisfy { $0["canon_version"] as? String == "base-v1" })
                    #expect(citations.allSatisfy { ($0["snippet"] as? String)?.isEmpty == false })
                    #expect((json["answer"] as? String)?.contains("[1]") == true)
                }

                // A question the canon does not cover.
                let uncovered = try await Self.query(
                    cluster.nodes[0], key: freeKey.text, "What is the best recipe for sourdough bread?")
                #expect(uncovered.status == 200)
                #expect(Self.citedIDs(uncovered).isEmpty)
                #expect((uncovered.json?["confidence"] as? Double ?? 1) <= 0.1)

                // Validation: one problem per field, problem+json, 400.
                for (extra, field) in [
                    (#""max_citations": 21"#, "max_citations"), (#""max_citations": true"#, "max_citations"),
                    (#""model_preference": "gpu""#, "model_preference"), (#""temperature": 1"#, "temperature"),
                    (#""context": \#(String(repeating: "x", count: 16001).debugDescription)"#, "context"),
                ] {
                    let reply = try await Self.query(cluster.nodes[0], key: freeKey.text, "Hello?", extra: extra)
                    #expect(reply.status == 400, "\(extra): \(reply.text)")
                    #expect(reply.json?["type"] as? String == "https://zaas.dev/problems/invalid-query")
                    let fields = ((reply.json?["errors"] as? [[String: Any]]) ?? []).compactMap {
                        $0["field"] as? String
                    }
                    #expect(fields == [field], "\(extra)")
                }
                // Control characters, and a question of one grapheme but 4001 code points (the
                // unit the limit counts): refused, never answered or cached.
                let combining = #"{"question": "e\#(String(repeating: "\\u0301", count: 4000))"}"#
                for body in [
                    #"{"question": "   "}"#, #"{"question": 42}"#, "[]", "not json", "{}", #"{"question": "a\u0000b"}"#,
                    #"{"question": "bell\u0007"}"#, #"{"question": "ok", "context": "c1 \u0085"}"#, combining,
                ] {
                    let reply = try await TestHTTP.send(
                        "POST", cluster.nodes[1].baseURL + "/api/v1/query", bearer: freeKey.text, json: body)
                    #expect(reply.status == 400, "\(body): \(reply.text)")
                }
                // The Free tier has local models only: cloud is refused before it costs a query.
                let cloud = try await Self.query(
                    cluster.nodes[0], key: freeKey.text, "Hello?", extra: #""model_preference": "cloud""#)
                #expect(cloud.status == 403, "\(cloud.text)")
                #expect(cloud.json?["type"] as? String == "https://zaas.dev/problems/model-class-not-allowed")
                #expect(cloud.headers["ratelimit-remaining"] != nil)
                let enterpriseCloud = try await Self.query(
                    cluster.nodes[0], key: enterpriseKey.text, question, extra: #""model_preference": "cloud""#)
                #expect(enterpriseCloud.status == 200, "\(enterpriseCloud.text)")
                let tooLong = try await Self.query(
                    cluster.nodes[0], key: freeKey.text, String(repeating: "why ", count: 1001))
                #expect(tooLong.status == 400)
                let capped = try await Self.query(
                    cluster.nodes[0], key: freeKey.text, question, extra: #""max_citations": 1"#)
                #expect(Self.citedIDs(capped).count == 1)

                // Canon updates: Enterprise only, with canon:write.
                let entry = """
                    {"upsert": [{"id": "lab.cryostat", "kind": "experiment", "title": "Cryostat calibration run",
                      "body": "The cryostat calibration run measured a helium boil-off rate of 1.2 litres per day at 4 kelvin.",
                      "status": "Narrative", "links": ["def.lagrangian"]}]}
                    """
                let free = try await TestHTTP.send(
                    "POST", cluster.nodes[0].baseURL + "/api/v1/canon/update", bearer: freeKey.text, json: entry)
                #expect(free.status == 403)
                #expect(free.json?["type"] as? String == "https://zaas.dev/problems/canon-updates-not-allowed")
                let noScope = try await TestHTTP.send(
                    "POST", cluster.nodes[0].baseURL + "/api/v1/canon/update", bearer: queryOnly.text, json: entry)
                #expect(noScope.status == 403)
                let invalid = try await TestHTTP.send(
                    "POST", cluster.nodes[0].baseURL + "/api/v1/canon/update", bearer: enterpriseKey.text,
                    json: #"{"upsert": [{"id": "x", "kind": "claim", "title": "X", "body": "x", "status": "Perhaps"}]}"#
                )
                #expect(invalid.status == 422)
                #expect(invalid.json?["type"] as? String == "https://zaas.dev/problems/canon-invalid")

                let accepted = try await TestHTTP.send(
                    "POST", cluster.nodes[0].baseURL + "/api/v1/canon/update", bearer: enterpriseKey.text, json: entry)
                #expect(accepted.status == 202, "\(accepted.text)")
                #expect(accepted.json?["created_by"] as? String == "key:" + enterpriseKey.id)
                let location = try #require(accepted.headers["location"])
                let published = try await TestHTTP.waitUntil(timeout: .seconds(60)) {
                    let poll = try await TestHTTP.send(
                        "GET", cluster.nodes[1].baseURL + location, bearer: enterpriseKey.text)
                    return poll.json?["published"] as? Bool == true
                }
                #expect(published != nil)

                let cryostat = "What helium boil-off rate did the cryostat calibration run measure?"
                #expect(
                    try await Self.waitForCitation(
                        cluster, key: enterpriseKey.text, cryostat, id: "lab.cryostat", present: true))
                let overlayReply = try await Self.query(cluster.nodes[1], key: enterpriseKey.text, cryostat)
                let first = try #require((overlayReply.json?["citations"] as? [[String: Any]])?.first)
                #expect(first["id"] as? String == "lab.cryostat" && first["canon_version"] as? String == "ent-v1")
                #expect(overlayReply.json?["canon_version"] as? String == "ent-v1+base-v1")
                #expect((overlayReply.json?["answer"] as? String)?.hasPrefix("Narrative account:") == true)
                // Tenant isolation: the free tenant never sees the Enterprise overlay.
                for node in cluster.nodes {
                    let reply = try await Self.query(node, key: freeKey.text, cryostat)
                    #expect(!Self.citedIDs(reply).contains("lab.cryostat"))
                    #expect(!(reply.text.contains("boil-off rate of 1.2")))
                }

                // Rollback through the admin API: the tenant has no earlier overlay, so it is refused;
                // a second update and a rollback return to the first.
                let second = try await TestHTTP.send(
                    "POST", cluster.nodes[1].baseURL + "/api/v1/canon/update", bearer: enterpriseKey.text,
                    json:
                        #"{"delete": ["lab.cryostat"], "upsert": [{"id": "lab.magnet", "kind": "experiment", "title": "Magnet", "body": "A 9 tesla magnet.", "status": "Narrative"}]}"#
                )
                #expect(second.status == 202, "\(second.text)")
                #expect(
                    try await Self.waitForCitation(
                        cluster, key: enterpriseKey.text, cryostat, id: "lab.cryostat", present: false))
                let rollback = try await TestHTTP.send(
                    "POST", control + "/admin/v1/canon/rollback", bearer: enterpriseAdmin)
                #expect(rollback.status == 200, "\(rollback.text)")
                #expect(rollback.json?["label"] as? String == "ent-v1")
                #expect(
                    try await Self.waitForCitation(
                        cluster, key: enterpriseKey.text, cryostat, id: "lab.cryostat", present: true))
            }
        }
    }
}
