import Canon
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Shared
import TestSupport
import Testing

@testable import ControlPlane

/// The canon admin API on real PostgreSQL, with the real builder and model.
@Suite("canon versions: upload, build, publish, rollback, diff, overlays")
struct CanonAPITests {
    typealias API = AdminAPITests

    static let baseMarkdown = """
        ---
        kind: definition
        status: Proven
        ---
        # Lagrangian {#def.lagrangian}
        The function $L = T - V$, kinetic minus potential energy.

        # Action {#def.action}
        The integral of the Lagrangian over time, $S = \\int L\\,dt$.

        # Pendulum {#def.pendulum}
        A mass on a rigid rod swinging under gravity.
        """

    static func upload(
        _ client: any TestClientProtocol, _ path: String, token: String, type: String, body: String,
        query: String = ""
    ) async throws -> TestResponse {
        try await client.execute(
            uri: path + "/versions" + query, method: .post,
            headers: [.authorization: "Bearer \(token)", .contentType: type], body: ByteBuffer(string: body))
    }

    /// Polls a version until its build ends.
    static func built(_ client: any TestClientProtocol, _ path: String, token: String, id: String) async throws
        -> [String: Any]
    {
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            let body = try API.json(try await API.send(client, .get, "\(path)/versions/\(id)", token: token))
            if let state = body["state"] as? String, state == "ready" || state == "failed" { return body }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("version \(id) did not finish building")
        return [:]
    }

    static func snapshot(_ client: any TestClientProtocol) async throws -> NodeConfigSnapshot {
        guard
            case .full(let snapshot) = try ConfigDistributionTests.update(
                try await ConfigDistributionTests.watch(client))
        else { throw CancellationError() }
        return snapshot
    }

    @Test("the whole life of a canon: refused upload, base and overlay built, published, diffed, rolled back, fetched")
    func lifecycle() async throws {
        try await API.withAPI { fixture in
            let client = fixture.client
            let ops = try await API.signIn(client, "ops@zaas.example")
            let admin = try await API.signIn(client, "admin@alpha.example")
            let viewer = try await API.signIn(client, "viewer@alpha.example")
            let betaAdmin = try await API.signIn(client, "admin@beta.example")

            // Pro does not include canon updates.
            let refused = try await Self.upload(
                client, "/admin/v1/canon", token: admin, type: "text/markdown", body: Self.baseMarkdown)
            #expect(refused.status == .forbidden)
            #expect(try API.problemType(refused) == API.type("canon-updates-not-allowed"))
            #expect(
                try await API.send(
                    client, .put, "/admin/v1/tenants/\(fixture.tenantA)/quota-policy", token: ops,
                    json: #"{"canon_updates_allowed": true}"#
                ).status == .ok)

            // Every problem listed with file and line; nothing stored.
            let invalid = try await Self.upload(
                client, "/admin/v1/canon", token: admin, type: "application/json",
                body: """
                    [
                      {"id": "a.one", "kind": "claim", "title": "One", "body": "x", "status": "Maybe"},
                      {"id": "a.one", "kind": "claim", "title": "Again", "body": "x", "status": "Proven"},
                      {"id": "a.two", "kind": "claim", "title": "Two", "body": "x", "status": "Proven", "links": ["nowhere"]}
                    ]
                    """, query: "?filename=mine.json")
            #expect(invalid.status == .unprocessableContent)
            #expect(try API.problemType(invalid) == API.type("canon-invalid"))
            let problems = try #require(try API.json(invalid)["problems"] as? [[String: Any]])
            // The entry with the bad status is not read further, so its id does not count as a duplicate.
            #expect(problems.count == 2, "\(problems)")
            #expect(problems.allSatisfy { $0["file"] as? String == "mine.json" && $0["line"] is Int })
            #expect(Set(problems.compactMap { $0["line"] as? Int }) == [2, 4])
            let none = try API.json(try await API.send(client, .get, "/admin/v1/canon/versions", token: admin))
            #expect((none["items"] as? [Any])?.isEmpty == true)
            let wrongType = try await Self.upload(
                client, "/admin/v1/canon", token: admin, type: "text/plain", body: "hello")
            #expect(wrongType.status == .unsupportedMediaType)

            // Viewers read only; tenant admins cannot touch the base canon; operators can.
            #expect(
                try await Self.upload(client, "/admin/v1/canon", token: viewer, type: "text/markdown", body: "# A\nb")
                    .status == .forbidden)
            #expect(
                try await Self.upload(
                    client, "/admin/v1/base-canon", token: admin, type: "text/markdown", body: "# A\nb"
                )
                .status == .forbidden)
            let baseUpload = try await Self.upload(
                client, "/admin/v1/base-canon", token: ops, type: "text/markdown", body: Self.baseMarkdown,
                query: "?publish=true")
            #expect(baseUpload.status == .accepted, "\(String(buffer: baseUpload.body))")
            let baseID = try #require(try API.json(baseUpload)["id"] as? String)
            let base = try await Self.built(client, "/admin/v1/base-canon", token: ops, id: baseID)
            #expect(base["state"] as? String == "ready", "\(base)")
            #expect(base["label"] as? String == "base-v1")
            #expect(base["published"] as? Bool == true)
            #expect((base["progress"] as? [String: Int])?["done"] == (base["progress"] as? [String: Int])?["total"])

            // An overlay replacing one base entry and adding one that links to the base canon.
            let overlayV1 = """
                {"id": "def.lagrangian", "kind": "definition", "title": "Lagrangian (our notes)", "body": "We write L = T - V with units of joules.", "status": "Proven"}
                {"id": "lab.cryostat", "kind": "experiment", "title": "Cryostat run", "body": "Helium boil-off at 4 K.", "status": "Narrative", "links": ["def.action"]}
                """
            let v1Upload = try await Self.upload(
                client, "/admin/v1/canon", token: admin, type: "application/x-ndjson", body: overlayV1)
            #expect(v1Upload.status == .accepted, "\(String(buffer: v1Upload.body))")
            let v1ID = try #require(try API.json(v1Upload)["id"] as? String)
            let v1 = try await Self.built(client, "/admin/v1/canon", token: admin, id: v1ID)
            #expect(v1["state"] as? String == "ready" && v1["published"] as? Bool == false)
            #expect(v1["label"] as? String == "alpha-v1" && v1["entry_count"] as? Int == 2)
            var snapshot = try await Self.snapshot(client)
            #expect(snapshot.settings.baseCanon?.label == "base-v1")
            #expect(snapshot.tenants.first { $0.id == fixture.tenantA }?.canon == nil)

            let published = try await API.send(
                client, .post, "/admin/v1/canon/versions/\(v1ID)/publish", token: admin)
            #expect(published.status == .ok)
            snapshot = try await Self.snapshot(client)
            let reference = try #require(snapshot.tenants.first { $0.id == fixture.tenantA }?.canon)
            #expect(reference.label == "alpha-v1" && reference.sha256 == v1["artifact_sha256"] as? String)
            #expect(snapshot.tenants.first { $0.id == fixture.tenantB }?.canon == nil)

            // The artifact, by hash, for nodes only; its bytes hash to its name and hold the overlay.
            let artifact = try await client.execute(
                uri: "/internal/v1/canon/artifacts/\(reference.sha256)", method: .get,
                headers: [.authorization: "Bearer \(ConfigDistributionTests.nodeToken)"])
            #expect(artifact.status == .ok)
            let bytes = Array(artifact.body.readableBytesView)
            #expect(Hex.encode(Array(SHA256.hash(data: bytes))) == reference.sha256)
            #expect(UInt64(bytes.count) == reference.byteCount)
            let index = try CanonIndex(bytes: ArtifactBytes(copying: bytes))
            #expect(Set(index.entries.map(\.id)) == ["def.lagrangian", "lab.cryostat"])
            #expect(
                try await API.send(client, .get, "/internal/v1/canon/artifacts/\(reference.sha256)", token: admin)
                    .status == .unauthorized)

            // Version 2, published when built; the diff; rollback to version 1.
            let v2Upload = try await Self.upload(
                client, "/admin/v1/canon", token: admin, type: "application/json",
                body: """
                    [{"id": "def.lagrangian", "kind": "definition", "title": "Lagrangian (revised)", "body": "Revised.", "status": "Proven"},
                     {"id": "lab.magnet", "kind": "experiment", "title": "Magnet", "body": "A 9 T magnet.", "status": "Narrative"}]
                    """, query: "?publish=true")
            let v2ID = try #require(try API.json(v2Upload)["id"] as? String)
            let v2 = try await Self.built(client, "/admin/v1/canon", token: admin, id: v2ID)
            #expect(v2["published"] as? Bool == true && v2["parent_id"] as? String == v1ID)
            let diff = try API.json(
                try await API.send(client, .get, "/admin/v1/canon/versions/\(v2ID)/diff", token: admin))
            #expect(diff["added"] as? [String] == ["lab.magnet"])
            #expect(diff["changed"] as? [String] == ["def.lagrangian"])
            #expect(diff["removed"] as? [String] == ["lab.cryostat"])
            #expect(
                (try await Self.snapshot(client)).tenants.first { $0.id == fixture.tenantA }?.canon?.label == "alpha-v2"
            )
            let rollback = try await API.send(client, .post, "/admin/v1/canon/rollback", token: admin)
            #expect(rollback.status == .ok)
            #expect(try API.json(rollback)["label"] as? String == "alpha-v1")
            #expect(
                (try await Self.snapshot(client)).tenants.first { $0.id == fixture.tenantA }?.canon?.label == "alpha-v1"
            )

            // Tenant B sees none of it.
            let betaList = try API.json(try await API.send(client, .get, "/admin/v1/canon/versions", token: betaAdmin))
            #expect((betaList["items"] as? [Any])?.isEmpty == true)
            #expect(
                try await API.send(client, .get, "/admin/v1/canon/versions/\(v1ID)", token: betaAdmin).status
                    == .notFound)
            #expect(
                try await API.send(client, .post, "/admin/v1/canon/versions/\(v1ID)/publish", token: betaAdmin).status
                    == .forbidden)  // Pro: no canon updates at all

            // A node's update for the tenant is re-checked against the database: the key must be
            // the tenant's, active and hold canon:write (a node is not trusted to have checked).
            let writer = try await ConfigDistributionTests.createKey(
                client, token: admin, scopes: #"["query", "canon:write"]"#)
            let reader = try await ConfigDistributionTests.createKey(client, token: admin)
            let betaKey = try await ConfigDistributionTests.createKey(client, token: betaAdmin)
            func nodeUpdate(key: String, tenant: UUID = fixture.tenantA, _ body: String) async throws -> TestResponse {
                try await client.execute(
                    uri: "/internal/v1/canon/update?tenant_id=\(tenant)&key_id=\(key)", method: .post,
                    headers: [.authorization: "Bearer \(ConfigDistributionTests.nodeToken)"],
                    body: ByteBuffer(string: body))
            }
            let pump = """
                {"upsert": [{"id": "lab.pump", "kind": "experiment", "title": "Pump", "body": "Turbo pump.", "status": "Narrative"}],
                 "delete": ["lab.cryostat"]}
                """
            #expect(try await nodeUpdate(key: UUID().uuidString, pump).status == .notFound)
            #expect(try await nodeUpdate(key: betaKey.id, pump).status == .notFound)  // another tenant's key
            #expect(try await nodeUpdate(key: betaKey.id, tenant: fixture.tenantB, pump).status == .forbidden)  // Pro
            let withoutScope = try await nodeUpdate(key: reader.id, pump)
            #expect(withoutScope.status == .forbidden)
            #expect(String(buffer: withoutScope.body).contains("canon:write"))
            #expect(
                (try API.json(try await API.send(client, .get, "/admin/v1/canon/versions", token: admin))["items"]
                    as? [Any])?.count == 2)

            // Applied to the published overlay (v1), published when built.
            let update = try await nodeUpdate(key: writer.id, pump)
            #expect(update.status == .accepted, "\(String(buffer: update.body))")
            let v3ID = try #require(try API.json(update)["id"] as? String)
            let v3 = try await Self.built(client, "/admin/v1/canon", token: admin, id: v3ID)
            #expect(v3["published"] as? Bool == true && v3["entry_count"] as? Int == 2)
            let v3Diff = try API.json(
                try await API.send(client, .get, "/admin/v1/canon/versions/\(v3ID)/diff?against=\(v1ID)", token: admin))
            #expect(v3Diff["added"] as? [String] == ["lab.pump"] && v3Diff["removed"] as? [String] == ["lab.cryostat"])
            let badDelete = try await nodeUpdate(key: writer.id, #"{"delete": ["not.there"]}"#)
            #expect(badDelete.status == .unprocessableContent)
            #expect(try API.problemType(badDelete) == API.type("canon-invalid"))

            // A revoked key acts no more, whatever a node still believes.
            #expect(
                try await API.send(client, .delete, "/admin/v1/keys/\(writer.id)", token: admin).status == .noContent)
            #expect(try await nodeUpdate(key: writer.id, pump).status == .forbidden)
            let poll = try await client.execute(
                uri: "/internal/v1/canon/versions/\(v3ID)?tenant_id=\(fixture.tenantA)&key_id=\(writer.id)",
                method: .get,
                headers: [.authorization: "Bearer \(ConfigDistributionTests.nodeToken)"])
            #expect(poll.status == .forbidden)
        }
    }
}
