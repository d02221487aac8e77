import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TestSupport
import Testing

@testable import ControlPlane

@Suite("admin API: tenants, quota policies and admins")
struct TenantAPITests {
    typealias API = AdminAPITests

    @Test("operators create, list, page, read and change tenants; bad input changes nothing")
    func operatorManagesTenants() async throws {
        try await API.withAPI { fixture in
            let ops = try await API.signIn(fixture.client, "ops@zaas.example")
            let created = try await API.send(
                fixture.client, .post, "/admin/v1/tenants", token: ops,
                json: #"{"name": "Gamma Lab", "slug": "gamma", "tier": "free"}"#
            )
            #expect(created.status == .created)
            let gamma = try API.json(created)
            let id = try #require(gamma["id"] as? String)
            #expect((gamma["limits"] as? [String: Any])?["queries_per_hour"] as? Int == 10)

            let duplicate = try await API.send(
                fixture.client, .post, "/admin/v1/tenants", token: ops,
                json: #"{"name": "Again", "slug": "gamma", "tier": "pro"}"#
            )
            #expect(duplicate.status == .conflict)
            let invalid = try await API.send(
                fixture.client, .post, "/admin/v1/tenants", token: ops,
                json: #"{"name": "", "slug": "-Bad-", "tier": "platinum"}"#
            )
            #expect(invalid.status == .unprocessableContent)
            let fields = try #require(try API.json(invalid)["errors"] as? [[String: String]]).compactMap { $0["field"] }
            #expect(Set(fields) == ["name", "slug"])
            let badTier = try await API.send(
                fixture.client, .post, "/admin/v1/tenants", token: ops,
                json: #"{"name": "Delta", "slug": "delta", "tier": "platinum"}"#
            )
            #expect(badTier.status == .unprocessableContent)
            for name in [#"NUL\u0000Lab"#, #"Bell\u0007"#, "e" + String(repeating: #"\u0301"#, count: 200)] {
                let refused = try await API.send(
                    fixture.client, .post, "/admin/v1/tenants", token: ops,
                    json: #"{"name": "\#(name)", "slug": "epsilon", "tier": "free"}"#)
                #expect(refused.status == .unprocessableContent, "\(name): \(String(buffer: refused.body))")
            }

            // Paging: three tenants, one per page, each exactly once.
            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try API.json(
                    try await API.send(
                        fixture.client, .get, "/admin/v1/tenants?limit=1" + (cursor.map { "&cursor=\($0)" } ?? ""),
                        token: ops
                    )
                )
                seen += (page["items"] as? [[String: Any]] ?? []).compactMap { $0["slug"] as? String }
                cursor = page["next_cursor"] as? String
            } while cursor != nil
            #expect(seen.sorted() == ["alpha", "beta", "gamma"])

            let single = try await API.send(fixture.client, .get, "/admin/v1/tenants/\(id)", token: ops)
            let etag = try #require(single.headers[.eTag])
            let stale = try await API.send(
                fixture.client, .patch, "/admin/v1/tenants/\(id)", token: ops, json: #"{"tier": "team"}"#,
                headers: [.ifMatch: "\"r99\""]
            )
            #expect(stale.status == .preconditionFailed)
            let upgraded = try await API.send(
                fixture.client, .patch, "/admin/v1/tenants/\(id)", token: ops, json: #"{"tier": "team"}"#,
                headers: [.ifMatch: etag]
            )
            #expect(upgraded.status == .ok)
            #expect((try API.json(upgraded)["limits"] as? [String: Any])?["queries_per_hour"] as? Int == 1000)
            #expect(upgraded.headers[.eTag] != etag)

            let suspended = try API.json(
                try await API.send(fixture.client, .get, "/admin/v1/tenants?status=suspended", token: ops)
            )
            #expect((suspended["items"] as? [Any])?.isEmpty == true)
            #expect(
                try await API.send(fixture.client, .get, "/admin/v1/tenants/\(UUID().uuidString)", token: ops).status
                    == .notFound
            )
        }
    }

    @Test("quota policies override the tier field by field, with every bad value reported")
    func quotaPolicies() async throws {
        try await API.withAPI { fixture in
            let ops = try await API.signIn(fixture.client, "ops@zaas.example")
            let id = fixture.tenantA.uuidString.lowercased()
            let set = try await API.send(
                fixture.client, .put, "/admin/v1/tenants/\(id)/quota-policy", token: ops,
                json: #"{"queries_per_hour": 250, "model_classes": ["local"], "canon_updates_allowed": true}"#
            )
            #expect(set.status == .ok)
            let limits = try #require(try API.json(set)["limits"] as? [String: Any])
            #expect(limits["queries_per_hour"] as? Int == 250)
            #expect(limits["model_classes"] as? [String] == ["local"])
            #expect(limits["canon_updates_allowed"] as? Bool == true)
            #expect(limits["max_citations"] as? Int == 5)  // Pro's, not overridden

            let bad = try await API.send(
                fixture.client, .put, "/admin/v1/tenants/\(id)/quota-policy", token: ops,
                json: #"{"queries_per_hour": -1, "max_citations": 1000, "model_classes": [], "cache_ttl_seconds": -5}"#
            )
            #expect(bad.status == .unprocessableContent)
            let fields = try #require(try API.json(bad)["errors"] as? [[String: String]]).compactMap { $0["field"] }
            #expect(Set(fields) == ["queries_per_hour", "max_citations", "model_classes", "cache_ttl_seconds"])
            let unknown = try await API.send(
                fixture.client, .put, "/admin/v1/tenants/\(id)/quota-policy", token: ops, json: #"{"gpus": 4}"#
            )
            #expect(unknown.status == .unprocessableContent)
            // Unchanged by the refused requests.
            let admin = try await API.signIn(fixture.client, "admin@alpha.example")
            let own = try API.json(try await API.send(fixture.client, .get, "/admin/v1/tenant", token: admin))
            #expect((own["limits"] as? [String: Any])?["queries_per_hour"] as? Int == 250)
        }
    }

    @Test("the first admin: created by an operator, signs in; weak passwords, bad emails and duplicates are refused")
    func firstAdmin() async throws {
        try await API.withAPI { fixture in
            let ops = try await API.signIn(fixture.client, "ops@zaas.example")
            let created = try API.json(
                try await API.send(
                    fixture.client, .post, "/admin/v1/tenants", token: ops,
                    json: #"{"name": "Gamma", "slug": "gamma", "tier": "enterprise"}"#
                )
            )
            let id = try #require(created["id"] as? String)
            let admin = try await API.send(
                fixture.client, .post, "/admin/v1/tenants/\(id)/admins", token: ops,
                json: #"{"email": "Lead@Gamma.example", "password": "\#(API.password)", "role": "admin"}"#
            )
            #expect(admin.status == .created)
            #expect(try API.json(admin)["email"] as? String == "lead@gamma.example")
            _ = try await API.signIn(fixture.client, "lead@gamma.example")

            for (body, field) in [
                (#"{"email": "x@gamma.example", "password": "short", "role": "admin"}"#, "password"),
                (#"{"email": "x@gamma.example", "password": "password1234", "role": "admin"}"#, "password"),
                (#"{"email": "not-an-email", "password": "\#(API.password)", "role": "admin"}"#, "email"),
                (#"{"email": "x@gamma.example", "password": "\#(API.password)", "role": "root"}"#, "role"),
            ] {
                let response = try await API.send(
                    fixture.client, .post, "/admin/v1/tenants/\(id)/admins", token: ops, json: body)
                #expect(response.status == .unprocessableContent, "\(body)")
                let fields = try #require(try API.json(response)["errors"] as? [[String: String]]).compactMap {
                    $0["field"]
                }
                #expect(fields.contains(field), "\(body)")
            }
            let duplicate = try await API.send(
                fixture.client, .post, "/admin/v1/tenants/\(id)/admins", token: ops,
                json: #"{"email": "admin@alpha.example", "password": "\#(API.password)", "role": "admin"}"#
            )
            #expect(duplicate.status == .conflict)
        }
    }

    @Test("tenant admins see their own tenant and admins only, and manage admins; viewers and operators cannot")
    func tenantAdmins() async throws {
        try await API.withAPI { fixture in
            let admin = try await API.signIn(fixture.client, "admin@alpha.example")
            let viewer = try await API.signIn(fixture.client, "viewer@alpha.example")
            let own = try API.json(try await API.send(fixture.client, .get, "/admin/v1/tenant", token: viewer))
            #expect(own["slug"] as? String == "alpha")
            let admins = try API.json(try await API.send(fixture.client, .get, "/admin/v1/admins", token: viewer))
            let emails = (admins["items"] as? [[String: Any]] ?? []).compactMap { $0["email"] as? String }
            #expect(emails == ["admin@alpha.example", "viewer@alpha.example"])

            #expect(try await API.send(fixture.client, .get, "/admin/v1/tenants", token: admin).status == .forbidden)
            let byViewer = try await API.send(
                fixture.client, .post, "/admin/v1/admins", token: viewer,
                json: #"{"email": "new@alpha.example", "password": "\#(API.password)", "role": "viewer"}"#
            )
            #expect(byViewer.status == .forbidden)
            let added = try await API.send(
                fixture.client, .post, "/admin/v1/admins", token: admin,
                json: #"{"email": "new@alpha.example", "password": "\#(API.password)", "role": "viewer"}"#
            )
            #expect(added.status == .created)
            let newID = try #require(try API.json(added)["id"] as? String)

            // B's admins are invisible and untouchable from A.
            let adminB = try await API.signIn(fixture.client, "admin@beta.example")
            let bAdmins = try API.json(try await API.send(fixture.client, .get, "/admin/v1/admins", token: adminB))
            let bIDs = (bAdmins["items"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(bIDs.count == 2)
            for id in bIDs {
                #expect(
                    try await API.send(fixture.client, .delete, "/admin/v1/admins/\(id)", token: admin).status
                        == .notFound)
            }
            #expect(
                try await API.send(fixture.client, .delete, "/admin/v1/admins/\(newID)", token: admin).status
                    == .noContent)
            let me = try API.json(try await API.send(fixture.client, .get, "/admin/v1/me", token: admin))
            let myID = try #require(me["id"] as? String)
            #expect(
                try await API.send(fixture.client, .delete, "/admin/v1/admins/\(myID)", token: admin).status
                    == .conflict)
        }
    }

    @Test("suspending a tenant ends its admins' sessions; a deleted tenant stays deleted; bad updates are refused")
    func tenantLifecycle() async throws {
        try await API.withAPI { fixture in
            let ops = try await API.signIn(fixture.client, "ops@zaas.example")
            let admin = try await API.signIn(fixture.client, "admin@alpha.example")
            let id = fixture.tenantA.uuidString.lowercased()
            let bad = try await API.send(
                fixture.client, .patch, "/admin/v1/tenants/\(id)", token: ops,
                json: #"{"name": "", "status": "paused"}"#
            )
            #expect(bad.status == .unprocessableContent)
            let fields = try #require(try API.json(bad)["errors"] as? [[String: String]]).compactMap { $0["field"] }
            #expect(Set(fields) == ["name", "status"])

            let suspend = try await API.send(
                fixture.client, .patch, "/admin/v1/tenants/\(id)", token: ops, json: #"{"status": "suspended"}"#
            )
            #expect(suspend.status == .ok)
            #expect(try await API.send(fixture.client, .get, "/admin/v1/me", token: admin).status != .ok)
            let reactivate = try await API.send(
                fixture.client, .patch, "/admin/v1/tenants/\(id)", token: ops, json: #"{"status": "active"}"#
            )
            #expect(reactivate.status == .ok)
            // The old session stays revoked; signing in again works.
            #expect(try await API.send(fixture.client, .get, "/admin/v1/me", token: admin).status == .unauthorized)
            _ = try await API.signIn(fixture.client, "admin@alpha.example")

            #expect(
                try await API.send(
                    fixture.client, .patch, "/admin/v1/tenants/\(id)", token: ops, json: #"{"status": "deleted"}"#
                ).status == .ok
            )
            let undelete = try await API.send(
                fixture.client, .patch, "/admin/v1/tenants/\(id)", token: ops, json: #"{"status": "active"}"#
            )
            #expect(undelete.status == .conflict)
            let adminForDeleted = try await API.send(
                fixture.client, .post, "/admin/v1/tenants/\(id)/admins", token: ops,
                json: #"{"email": "late@alpha.example", "password": "\#(API.password)", "role": "admin"}"#
            )
            #expect(adminForDeleted.status == .conflict)
            #expect(
                try await API.send(fixture.client, .delete, "/admin/v1/sessions/current").status == .unauthorized
            )
        }
    }

    @Test("admins change roles and status with If-Match; the last active admin stays; disabling ends sessions")
    func adminUpdates() async throws {
        try await API.withAPI { fixture in
            let admin = try await API.signIn(fixture.client, "admin@alpha.example")
            let viewerToken = try await API.signIn(fixture.client, "viewer@alpha.example")
            let list = try API.json(try await API.send(fixture.client, .get, "/admin/v1/admins", token: admin))
            let entries = list["items"] as? [[String: Any]] ?? []
            let adminID = try #require(entries.first { $0["role"] as? String == "admin" }?["id"] as? String)
            let viewerID = try #require(entries.first { $0["role"] as? String == "viewer" }?["id"] as? String)

            let lastAdmin = try await API.send(
                fixture.client, .patch, "/admin/v1/admins/\(adminID)", token: admin, json: #"{"role": "viewer"}"#
            )
            #expect(lastAdmin.status == .conflict)
            let stale = try await API.send(
                fixture.client, .patch, "/admin/v1/admins/\(viewerID)", token: admin, json: #"{"role": "admin"}"#,
                headers: [.ifMatch: "\"r9\""]
            )
            #expect(stale.status == .preconditionFailed)
            let bad = try await API.send(
                fixture.client, .patch, "/admin/v1/admins/\(viewerID)", token: admin,
                json: #"{"role": "owner", "status": "gone"}"#
            )
            #expect(bad.status == .unprocessableContent)
            let promoted = try await API.send(
                fixture.client, .patch, "/admin/v1/admins/\(viewerID)", token: admin, json: #"{"role": "admin"}"#,
                headers: [.ifMatch: "\"r1\""]
            )
            #expect(promoted.status == .ok)
            #expect(try API.json(promoted)["role"] as? String == "admin")
            #expect(promoted.headers[.eTag] == "\"r2\"")

            let disabled = try await API.send(
                fixture.client, .patch, "/admin/v1/admins/\(viewerID)", token: admin, json: #"{"status": "disabled"}"#
            )
            #expect(disabled.status == .ok)
            #expect(
                try await API.send(fixture.client, .get, "/admin/v1/me", token: viewerToken).status == .unauthorized)
            let signIn = try await API.send(
                fixture.client, .post, "/admin/v1/sessions",
                json: #"{"email": "viewer@alpha.example", "password": "\#(API.password)"}"#
            )
            #expect(signIn.status == .unauthorized)

            let adminB = try await API.signIn(fixture.client, "admin@beta.example")
            let crossTenant = try await API.send(
                fixture.client, .patch, "/admin/v1/admins/\(viewerID)", token: adminB, json: #"{"role": "viewer"}"#
            )
            #expect(crossTenant.status == .notFound)
        }
    }
}
