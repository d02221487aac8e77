import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import Shared
import TestSupport
import Testing

@testable import ControlPlane

@Suite("model catalog: operators manage backends; nodes receive the catalog in every config document")
struct ModelCatalogTests {
    typealias API = AdminAPITests
    typealias Distribution = ConfigDistributionTests

    static let local = #"""
        {"name": "smollm2-135m", "model_class": "local", "base_url": "http://127.0.0.1:8090/v1",
         "timeout_ms": 20000, "max_concurrency": 2, "context_window": 2048}
        """#
    static let cloud = #"""
        {"name": "gpt-oss-120b", "model_class": "cloud", "base_url": "https://api.example.com/v1",
         "upstream_model": "openai/gpt-oss-120b", "credential_name": "ZAAS_MODEL_EXAMPLE",
         "input_usd_per_1k_tokens": 0.00015, "output_usd_per_1k_tokens": 0.0006, "context_window": 131072}
        """#

    @Test("operators add, list, replace and remove backends; each field is checked; others may not")
    func crud() async throws {
        try await API.withAPI { fixture in
            let client = fixture.client
            let ops = try await API.signIn(client, "ops@zaas.example")
            let admin = try await API.signIn(client, "admin@alpha.example")
            #expect(
                try await API.send(client, .post, "/admin/v1/models", token: admin, json: Self.local).status
                    == .forbidden)
            #expect(try await API.send(client, .get, "/admin/v1/models", token: admin).status == .forbidden)
            #expect(try await API.send(client, .get, "/admin/v1/models").status == .unauthorized)

            let created = try await API.send(client, .post, "/admin/v1/models", token: ops, json: Self.cloud)
            #expect(created.status == .created, "\(String(buffer: created.body))")
            let body = try API.json(created)
            let id = try #require(body["id"] as? String)
            #expect(body["name"] as? String == "gpt-oss-120b" && body["model_class"] as? String == "cloud")
            #expect(body["protocol"] as? String == "openai-chat" && body["enabled"] as? Bool == true)
            #expect(body["upstream_model"] as? String == "openai/gpt-oss-120b")
            #expect(body["credential_name"] as? String == "ZAAS_MODEL_EXAMPLE")
            #expect(body["input_usd_per_1k_tokens"] as? Double == 0.00015)
            #expect(body["output_usd_per_1k_tokens"] as? Double == 0.0006)
            #expect(String(buffer: created.body).contains(#""input_usd_per_1k_tokens":0.00015"#))
            #expect(body["timeout_ms"] as? Int == 30000 && body["max_concurrency"] as? Int == 4)

            let local = try await API.send(client, .post, "/admin/v1/models", token: ops, json: Self.local)
            #expect(local.status == .created)
            let taken = try await API.send(client, .post, "/admin/v1/models", token: ops, json: Self.local)
            #expect(taken.status == .conflict)
            #expect(try API.problemType(taken) == API.type("model-name-taken"))

            let listed = try API.json(try await API.send(client, .get, "/admin/v1/models", token: ops))
            let names = (listed["items"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
            #expect(names == ["gpt-oss-120b", "smollm2-135m"])

            // Replaced whole: omitted fields take their defaults.
            let replaced = try await API.send(
                client, .put, "/admin/v1/models/\(id)", token: ops,
                json:
                    #"{"name": "gpt-oss-120b", "model_class": "cloud", "base_url": "https://other.example.com/v1", "enabled": false}"#
            )
            #expect(replaced.status == .ok, "\(String(buffer: replaced.body))")
            let after = try API.json(replaced)
            #expect(
                after["base_url"] as? String == "https://other.example.com/v1" && after["enabled"] as? Bool == false)
            #expect(after["credential_name"] is NSNull && after["upstream_model"] as? String == "gpt-oss-120b")
            let renamedOnto = try await API.send(
                client, .put, "/admin/v1/models/\(id)", token: ops,
                json: #"{"name": "smollm2-135m", "model_class": "local", "base_url": "http://127.0.0.1:1/v1"}"#)
            #expect(renamedOnto.status == .conflict)

            #expect(try await API.send(client, .get, "/admin/v1/models/\(UUID())", token: ops).status == .notFound)
            #expect(try await API.send(client, .get, "/admin/v1/models/nope", token: ops).status == .notFound)
            #expect(
                try await API.send(client, .put, "/admin/v1/models/\(UUID())", token: ops, json: Self.local).status
                    == .notFound)
            #expect(try await API.send(client, .delete, "/admin/v1/models/\(id)", token: ops).status == .noContent)
            #expect(try await API.send(client, .delete, "/admin/v1/models/\(id)", token: ops).status == .notFound)
            #expect(try await API.send(client, .get, "/admin/v1/models/\(id)", token: ops).status == .notFound)

            // Every change is in the operator audit.
            let operations = try await fixture.db.withOperator(UUID(), logger: API.logger) { connection in
                let audited = try await connection.query(
                    "SELECT operation FROM operator_audit WHERE table_name = 'model_backends' AND row_id = \(id) ORDER BY id",
                    logger: API.logger)
                var operations: [String] = []
                for try await operation in audited.decode(String.self) { operations.append(operation) }
                return operations
            }
            #expect(operations == ["insert", "update", "delete"])
        }
    }

    @Test(
        "bad catalog entries get 422 naming the field, never a 500",
        arguments: [
            (#"{"name": "", "model_class": "local", "base_url": "http://127.0.0.1:1/v1"}"#, "name"),
            (#"{"name": "a b", "model_class": "local", "base_url": "http://127.0.0.1:1/v1"}"#, "name"),
            (#"{"name": "x\u0000", "model_class": "local", "base_url": "http://127.0.0.1:1/v1"}"#, "name"),
            (#"{"name": "x", "model_class": "airllm", "base_url": "http://127.0.0.1:1/v1"}"#, "model_class"),
            (#"{"name": "x", "model_class": "local", "base_url": "ftp://host/v1"}"#, "base_url"),
            (#"{"name": "x", "model_class": "local", "base_url": "/v1"}"#, "base_url"),
            (#"{"name": "x", "model_class": "local", "base_url": "http://user:pw@host/v1"}"#, "base_url"),
            (#"{"name": "x", "model_class": "local", "base_url": "http://host/v1?key=1"}"#, "base_url"),
            (#"{"name": "x", "model_class": "local", "base_url": "http://h/v1", "protocol": "grpc"}"#, "protocol"),
            (
                #"{"name": "x", "model_class": "local", "base_url": "http://h/v1", "credential_name": "sk-123"}"#,
                "credential_name"
            ),
            (
                #"{"name": "x", "model_class": "local", "base_url": "http://h/v1", "upstream_model": "a\u0007"}"#,
                "upstream_model"
            ),
            (#"{"name": "x", "model_class": "local", "base_url": "http://h/v1", "timeout_ms": 5}"#, "timeout_ms"),
            (
                #"{"name": "x", "model_class": "local", "base_url": "http://h/v1", "max_concurrency": 0}"#,
                "max_concurrency"
            ),
            (
                #"{"name": "x", "model_class": "local", "base_url": "http://h/v1", "context_window": 99999999999}"#,
                "context_window"
            ),
            (
                #"{"name": "x", "model_class": "local", "base_url": "http://h/v1", "input_usd_per_1k_tokens": -1}"#,
                "input_usd_per_1k_tokens"
            ),
            (
                #"{"name": "x", "model_class": "local", "base_url": "http://h/v1", "output_usd_per_1k_tokens": 0.0000000001}"#,
                "output_usd_per_1k_tokens"
            ),
            (#"{"name": "x", "model_class": "local", "base_url": "http://h/v1", "api_key": "sk-1"}"#, "api_key"),
            (#"{"model_class": "local", "base_url": "http://h/v1"}"#, "name"),
        ])
    func validation(body: String, field: String) async throws {
        try await API.withAPI { fixture in
            let ops = try await API.signIn(fixture.client, "ops@zaas.example")
            let refused = try await API.send(fixture.client, .post, "/admin/v1/models", token: ops, json: body)
            #expect(refused.status == .unprocessableContent, "\(body): \(String(buffer: refused.body))")
            let errors = try API.json(refused)["errors"] as? [[String: Any]]
            #expect(
                errors?.contains { $0["field"] as? String == field } == true, "\(body): \(String(describing: errors))")
        }
    }

    @Test("the catalog reaches nodes in full snapshots and in every delta, and a catalog change is a change")
    func distribution() async throws {
        try await API.withAPI { fixture in
            let client = fixture.client
            let ops = try await API.signIn(client, "ops@zaas.example")
            let before = try Distribution.update(try await Distribution.watch(client)).version
            let created = try await API.send(client, .post, "/admin/v1/models", token: ops, json: Self.cloud)
            let id = try #require(try API.json(created)["id"] as? String)

            guard case .delta(let delta) = try Distribution.update(try await Distribution.watch(client, since: before))
            else {
                Issue.record("expected a delta")
                return
            }
            let sent = try #require(delta.settings.models.first)
            #expect(delta.settings.models.count == 1)
            #expect(sent.id.uuidString.lowercased() == id, "\(sent) \(id)")
            #expect(sent.name == "gpt-oss-120b" && sent.modelClass == .cloud)
            #expect(sent.baseURL == "https://api.example.com/v1" && sent.upstreamModel == "openai/gpt-oss-120b")
            #expect(sent.credentialName == "ZAAS_MODEL_EXAMPLE" && sent.contextWindow == 131_072)
            #expect(sent.inputNanoDollarsPer1K == 150_000 && sent.outputNanoDollarsPer1K == 600_000)
            #expect(sent.costNanoDollars(inputTokens: 2000, outputTokens: 500) == 600_000)

            guard case .full(let snapshot) = try Distribution.update(try await Distribution.watch(client)) else {
                Issue.record("expected a full snapshot")
                return
            }
            #expect(snapshot.settings.models == delta.settings.models)

            // Removing it is a change too; the next delta carries the empty catalog.
            #expect(try await API.send(client, .delete, "/admin/v1/models/\(id)", token: ops).status == .noContent)
            guard
                case .delta(let removed) = try Distribution.update(
                    try await Distribution.watch(client, since: delta.toVersion))
            else {
                Issue.record("expected a delta")
                return
            }
            #expect(removed.settings.models.isEmpty && removed.toVersion > delta.toVersion)
        }
    }

    @Test("a document whose catalog breaks the rules is refused by the reader")
    func readerChecks() throws {
        let key = ConfigSigningKey()
        let good = ModelBackend(id: UUID(), name: "m", modelClass: .local, baseURL: "http://127.0.0.1:1/v1")
        func changed(_ change: (inout ModelBackend) -> Void) -> ModelBackend {
            var model = good
            change(&model)
            return model
        }
        let bads: [ModelBackend] = [
            changed { $0.baseURL = "file:///etc/passwd" }, changed { $0.credentialName = "lower" },
            changed { $0.timeoutMilliseconds = 1 }, changed { $0.name = "white space" },
        ]
        for bad in bads {
            let snapshot = NodeConfigSnapshot(
                version: 1, createdAt: Date(timeIntervalSince1970: 1_800_000_000),
                settings: DataPlaneSettings(usageReportIntervalMilliseconds: 1000, models: [bad]), tenants: [], keys: []
            )
            let bytes = SignedConfigDocument.encode(.full(snapshot), signedWith: key)
            #expect(throws: ConfigDocumentError.self) {
                try SignedConfigDocument.decode(bytes, verifyingWith: key.verificationKey)
            }
        }
        let snapshot = NodeConfigSnapshot(
            version: 1, createdAt: Date(timeIntervalSince1970: 1_800_000_000),
            settings: DataPlaneSettings(usageReportIntervalMilliseconds: 1000, models: [good]), tenants: [], keys: [])
        let bytes = SignedConfigDocument.encode(.full(snapshot), signedWith: key)
        #expect(try SignedConfigDocument.decode(bytes, verifyingWith: key.verificationKey) == .full(snapshot))
    }

    @Test("prices convert exactly between dollars and nano-dollars")
    func prices() {
        #expect(Price.nanoDollars(Decimal(string: "0.00015")!) == 150_000)
        #expect(Price.nanoDollars(Decimal(string: "1000")!) == ModelCatalogRules.maximumNanoDollarsPer1K)
        #expect(Price.nanoDollars(Decimal(string: "1000.000000001")!) == nil)
        #expect(Price.nanoDollars(Decimal(string: "0.0000000005")!) == nil)
        #expect(Price.nanoDollars(Decimal(-1)) == nil)
        #expect(Price.dollars(150_000) == Decimal(string: "0.00015"))
    }
}
