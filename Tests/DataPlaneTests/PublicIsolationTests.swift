import Foundation
import TestSupport
import Testing

extension ProcessClusters {
    /// The public API's isolation tried against running processes, as a tenant holding keys
    /// would: each route refuses a key without its scope (403), an `X-Tenant-ID` of another tenant
    /// (403), and another tenant's canon version (404).
    @Suite("isolation over HTTP: public routes, scopes and X-Tenant-ID against a running node", .serialized)
    struct PublicIsolationTests {
        @Test(
            "keys lacking each scope get 403 on every public route that needs it; another tenant's header 403; its version 404"
        )
        func publicRoutes() async throws {
            try await Cluster.with(nodeCount: 1) { cluster in
                let node = cluster.nodes[0].baseURL
                let (alpha, alphaAdmin) = try await cluster.makeTenant(slug: "alpha", tier: "enterprise")
                let (beta, betaAdmin) = try await cluster.makeTenant(slug: "beta", tier: "enterprise")
                let queryOnly = try await cluster.createKey(token: alphaAdmin, scopes: #"["query"]"#)
                let writeOnly = try await cluster.createKey(token: alphaAdmin, scopes: #"["canon:write"]"#)
                let statsOnly = try await cluster.createKey(token: alphaAdmin, scopes: #"["stats:read"]"#)
                let betaWriter = try await cluster.createKey(token: betaAdmin, scopes: #"["query", "canon:write"]"#)
                #expect(try await cluster.waitForAllNodes(betaWriter.text, status: 200) != nil)

                // Beta's own version, made through the public API.
                let update =
                    #"{"upsert": [{"id": "b.one", "kind": "definition", "title": "B", "body": "Beta's.", "status": "Proven"}]}"#
                let made = try await TestHTTP.send(
                    "POST", node + "/api/v1/canon/update", bearer: betaWriter.text, json: update)
                #expect(made.status == 202, "\(made.text)")
                let betaVersion = try #require(made.json?["id"] as? String)

                let question = #"{"question": "What is the action?"}"#
                // (method, path, body, the scope it needs)
                let routes: [(String, String, String?, String)] = [
                    ("POST", "/api/v1/query", question, "query"),
                    ("POST", "/api/v1/canon/update", update, "canon:write"),
                    ("GET", "/api/v1/canon/versions/\(betaVersion)", nil, "canon:write"),
                ]
                let keys = [("query", queryOnly.text), ("canon:write", writeOnly.text), ("stats:read", statsOnly.text)]
                for (method, path, body, scope) in routes {
                    for (held, key) in keys where held != scope {
                        let reply = try await TestHTTP.send(method, node + path, bearer: key, json: body)
                        #expect(reply.status == 403, "\(method) \(path) with a \(held) key: \(reply.status)")
                        #expect(reply.json?["type"] as? String == "https://zaas.dev/problems/forbidden")
                    }
                }
                // Another tenant named in X-Tenant-ID: 403 whatever the key may do.
                for (method, path, body, scope) in routes + [("GET", "/api/v1/key", nil, "query")] {
                    let key = keys.first { $0.0 == scope }!.1
                    let reply = try await TestHTTP.send(
                        method, node + path, bearer: key, json: body, headers: ["X-Tenant-ID": beta.uuidString])
                    #expect(reply.status == 403, "\(method) \(path) naming another tenant: \(reply.status)")
                }
                // The right scope, but another tenant's version: 404, the same as one that does not exist.
                let foreign = try await TestHTTP.send(
                    "GET", node + "/api/v1/canon/versions/\(betaVersion)", bearer: writeOnly.text)
                let missing = try await TestHTTP.send(
                    "GET", node + "/api/v1/canon/versions/\(UUID())", bearer: writeOnly.text)
                #expect(foreign.status == 404 && missing.status == 404)
                #expect(foreign.json?["type"] as? String == missing.json?["type"] as? String)
                #expect(!foreign.text.contains("b.one") && !foreign.text.contains("beta"))
                // Its own tenant in the header is fine.
                let own = try await TestHTTP.send(
                    "GET", node + "/api/v1/key", bearer: queryOnly.text, headers: ["X-Tenant-ID": alpha.uuidString])
                #expect(own.status == 200)
            }
        }
    }
}
