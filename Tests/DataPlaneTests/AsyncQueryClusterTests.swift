import Foundation
import Shared
import TestSupport
import Testing

/// Asynchronous queries end to end: two nodes as processes sharing Redis, the demo canon.
extension ProcessClusters {
    @Suite("asynchronous queries end to end: submit, fetch from any node, survive a node restart, tenant isolation")
    struct AsyncQueryClusterTests {
        typealias Query = QueryClusterTests

        @Test(
            "202 with a Location; the answer from the restarted node that took it, as the synchronous call gives it; another tenant's, an unknown and a malformed id are 404; a bad body is 400 at once"
        )
        func asyncQueries() async throws {
            let settings = ["jobs.lease_ms": "1500", "jobs.poll_ms": "50", "cache.semantic_threshold": "off"]
            try await Cluster.with(nodeCount: 2, nodeSettings: settings) { cluster in
                _ = try await Query.publishDemoCanon(cluster)
                let (_, admin) = try await cluster.makeTenant(slug: "lab", tier: "enterprise")
                let key = try await cluster.createKey(token: admin)
                let (_, otherAdmin) = try await cluster.makeTenant(slug: "other", tier: "enterprise")
                let other = try await cluster.createKey(token: otherAdmin)
                #expect(try await cluster.waitForAllNodes(key.text, status: 200) != nil)
                #expect(try await cluster.waitForAllNodes(other.text, status: 200) != nil)
                for node in cluster.nodes { try await AuditClusterTests.waitForCanon(node, key: key.text) }

                // Submitted to node 1, which is killed at once and started again: the job is in
                // Redis, and a node takes it (again, if node 1 had claimed it: its lease runs out).
                let question = "What is the action functional?"
                let submitted = try await Query.query(
                    cluster.nodes[0], key: key.text, question, extra: #""async": true"#)
                #expect(submitted.status == 202, "\(submitted.text)")
                let id = try #require(submitted.json?["query_id"] as? String)
                let location = "/api/v1/queries/\(id)"
                #expect(submitted.headers["location"] == location)
                #expect(submitted.json?["status"] as? String == "queued")
                cluster.nodes[0].kill()
                try await cluster.start(cluster.nodes[0])

                var fetched: TestHTTP.Reply?
                _ = try await TestHTTP.waitUntil(timeout: .seconds(60)) {
                    let reply = try await TestHTTP.send("GET", cluster.nodes[0].baseURL + location, bearer: key.text)
                    if reply.status == 202 {
                        #expect(
                            ["queued", "running"].contains(reply.json?["status"] as? String ?? ""), "\(reply.text)")
                        #expect(reply.headers["retry-after"] == "1")
                    }
                    fetched = reply
                    return reply.status != 202
                }
                let answer = try #require(fetched)
                #expect(answer.status == 200, "\(answer.text)")
                #expect(answer.json?["query_id"] as? String == id)
                #expect(Query.citedIDs(answer).first == "def.action", "\(answer.text)")

                // The same question asked synchronously: the answer the job stored in the cache.
                let sync = try await Query.query(cluster.nodes[1], key: key.text, question)
                #expect(sync.status == 200)
                #expect(sync.json?["answer"] as? String == answer.json?["answer"] as? String)
                #expect(sync.json?["cache_hit"] as? Bool == true)
                // Fetched again from the other node: the same.
                let again = try await TestHTTP.send("GET", cluster.nodes[1].baseURL + location, bearer: key.text)
                #expect(again.status == 200 && again.body == answer.body)

                // Only the tenant that asked sees it; unknown and malformed ids look the same.
                for (path, bearer) in [
                    (location, other.text), ("/api/v1/queries/\(UUID())", key.text), ("/api/v1/queries/nope", key.text),
                ] {
                    let missing = try await TestHTTP.send("GET", cluster.nodes[1].baseURL + path, bearer: bearer)
                    #expect(missing.status == 404, "\(path): \(missing.text)")
                    #expect(missing.json?["type"] as? String == Problem.typeBase + "query-not-found")
                }
                #expect(try await TestHTTP.send("GET", cluster.nodes[1].baseURL + location).status == 401)

                // A bad body is refused at once, asynchronous or not; so is a bad `async`.
                let bad = try await Query.query(cluster.nodes[1], key: key.text, "", extra: #""async": true"#)
                #expect(bad.status == 400, "\(bad.text)")
                let badFlag = try await Query.query(
                    cluster.nodes[1], key: key.text, question, extra: #""async": "yes""#)
                #expect(badFlag.status == 400 && badFlag.text.contains("async"), "\(badFlag.text)")
            }
        }
    }
}
