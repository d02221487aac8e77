import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PostgresNIO
import Shared
import TestSupport
import Testing

@testable import ControlPlane

/// Isolation tried from outside, over HTTP, as a tenant admin who knows another tenant's ids
/// would: every admin route that takes an id (taken from docs/openapi.yaml, so a new route is
/// covered or this fails) answers tenant A 404 for tenant B's resource, or 403 where only
/// operators may go, and B's resource is unchanged afterwards.
@Suite("isolation over HTTP: another tenant's ids, operator-only routes")
struct HTTPIsolationTests {
    typealias API = AdminAPITests

    /// Every path with an id in the contract, with its methods.
    static func routesWithIDs() throws -> [(method: String, path: String)] {
        let text = try String(
            contentsOf: TestEnvironment.repositoryRoot.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        var routes: [(String, String)] = []
        var path: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
            } else if line.hasPrefix("  "), !line.hasPrefix("   ") {
                path = nil
            } else if let current = path, current.contains("{"),
                let method = ["get", "post", "put", "patch", "delete"].first(where: { line == "    \($0):" })
            {
                routes.append((method.uppercased(), current))
            }
        }
        return routes
    }

    @Test(
        "tenant A gets 404 for each of tenant B's ids on every admin route, 403 on operator routes; B's data is unchanged"
    )
    func otherTenantsIDs() async throws {
        try await API.withAPI { fixture in
            let client = fixture.client
            try await fixture.db.withOperator(UUID(), logger: API.logger) { connection in
                try await connection.query("UPDATE tenants SET tier_id = 'enterprise'", logger: API.logger)
            }
            let alpha = try await API.signIn(client, "admin@alpha.example")
            let beta = try await API.signIn(client, "admin@beta.example")

            // Tenant B's resources: a key, an admin (the viewer), a canon version.
            let betaKey = try await ConfigDistributionTests.createKey(client, token: beta)
            let betaAdmins = try API.json(try await API.send(client, .get, "/admin/v1/admins", token: beta))
            let betaViewer = try #require(
                (betaAdmins["items"] as? [[String: Any]])?.first { $0["role"] as? String == "viewer" }?["id"] as? String
            )
            let upload = try await CanonAPITests.upload(
                client, "/admin/v1/canon", token: beta, type: "application/json",
                body:
                    #"[{"id": "b.one", "kind": "definition", "title": "B", "body": "Beta's own.", "status": "Proven"}]"#
            )
            #expect(upload.status == .accepted)
            let betaVersion = try #require(try API.json(upload)["id"] as? String)
            _ = try await CanonAPITests.built(client, "/admin/v1/canon", token: beta, id: betaVersion)

            // An audit export of B's.
            let export = try await API.send(
                client, .post, "/admin/v1/audit/exports", token: beta,
                json: #"{"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}"#)
            #expect(export.status == .accepted)
            let betaExport = try #require(try API.json(export)["id"] as? String)

            func snapshot() async throws -> [String] {
                try await [
                    "/admin/v1/keys/\(betaKey.id)", "/admin/v1/admins", "/admin/v1/canon/versions/\(betaVersion)",
                ].asyncMap { String(buffer: try await API.send(client, .get, $0, token: beta).body) }
            }
            let before = try await snapshot()

            // Which of B's ids each route takes, and what A must get.
            let tenantRoutes: [String: String] = [
                "/admin/v1/keys/{id}": betaKey.id, "/admin/v1/keys/{id}/rotate": betaKey.id,
                "/admin/v1/admins/{id}": betaViewer,
                "/admin/v1/canon/versions/{id}": betaVersion, "/admin/v1/canon/versions/{id}/diff": betaVersion,
                "/admin/v1/canon/versions/{id}/publish": betaVersion,
                "/admin/v1/audit/exports/{id}": betaExport, "/admin/v1/audit/exports/{id}/files/{name}": betaExport,
            ]
            let operatorRoutes: [String: String] = [
                "/admin/v1/tenants/{id}": fixture.tenantB.uuidString,
                "/admin/v1/tenants/{id}/quota-policy": fixture.tenantB.uuidString,
                "/admin/v1/tenants/{id}/admins": fixture.tenantB.uuidString,
                "/admin/v1/tenants/{id}/audit/events": fixture.tenantB.uuidString,
                "/admin/v1/tenants/{id}/usage/rebuild": fixture.tenantB.uuidString,
                "/admin/v1/base-canon/versions/{id}": betaVersion,
                "/admin/v1/base-canon/versions/{id}/diff": betaVersion,
                "/admin/v1/base-canon/versions/{id}/publish": betaVersion,
                "/admin/v1/nodes/credentials/{id}": betaVersion,
                "/admin/v1/models/{id}": betaVersion,
                "/admin/v1/billing/periods/{period}/close": "2026-01",
            ]
            // Routes whose path names no tenant's thing (a billing period is everyone's month):
            // A gets only its own tenant's view of it, here that the period has no lines yet.
            let sharedRoutes: [String: (id: String, status: HTTPResponse.Status)] = [
                "/admin/v1/billing/periods/{period}/lines": ("2026-01", .conflict)
            ]
            let bodies: [String: String] = [
                "PATCH /admin/v1/admins/{id}": #"{"status": "disabled"}"#,
                "POST /admin/v1/keys/{id}/rotate": #"{"grace_seconds": 0}"#,
                "PATCH /admin/v1/tenants/{id}": #"{"status": "suspended"}"#,
                "PUT /admin/v1/tenants/{id}/quota-policy": #"{"queries_per_hour": 1}"#,
                "POST /admin/v1/tenants/{id}/usage/rebuild":
                    #"{"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}"#,
                "PUT /admin/v1/models/{id}":
                    #"{"name": "m", "model_class": "local", "base_url": "http://127.0.0.1:1/v1"}"#,
                "POST /admin/v1/tenants/{id}/admins":
                    #"{"email": "x@y.example", "password": "long enough passphrase 42", "role": "admin"}"#,
            ]
            var covered = 0
            for (method, template) in try Self.routesWithIDs() where template.hasPrefix("/admin/") {
                let expected: HTTPResponse.Status
                let id: String
                if let tenantID = tenantRoutes[template] {
                    (expected, id) = (.notFound, tenantID)
                } else if let operatorID = operatorRoutes[template] {
                    (expected, id) = (.forbidden, operatorID)
                } else if let shared = sharedRoutes[template] {
                    (expected, id) = (shared.status, shared.id)
                } else {
                    Issue.record("\(method) \(template) takes an id but this suite does not try it")
                    continue
                }
                let uri = template.replacingOccurrences(of: "{id}", with: id)
                    .replacingOccurrences(of: "{period}", with: id).replacingOccurrences(
                        of: "{name}", with: "events.csv")
                let response = try await API.send(
                    client, HTTPRequest.Method(method)!, uri, token: alpha, json: bodies["\(method) \(template)"])
                #expect(
                    response.status == expected, "\(method) \(uri): \(response.status) \(String(buffer: response.body))"
                )
                #expect(response.headers[.contentType] == "application/problem+json")
                #expect(!String(buffer: response.body).contains("beta"), "\(method) \(uri) names the other tenant")
                covered += 1
            }
            // keys/{id}, admins/{id} and tenants/{id} each take two methods, models/{id} three.
            #expect(covered == tenantRoutes.count + operatorRoutes.count + sharedRoutes.count + 5)
            #expect(try await snapshot() == before)
        }
    }
}

extension Array {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
