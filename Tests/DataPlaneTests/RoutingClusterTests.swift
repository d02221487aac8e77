import Foundation
import Shared
import TestSupport
import Testing

/// Route and infer end to end: a control plane and a node as processes, the demo canon, and two
/// scripted providers on loopback registered in the model catalog as the local and the cloud class.
extension ProcessClusters {
    @Suite("routing end to end: the catalog, the classes, the fallback chain and checked citations", .serialized)
    struct RoutingClusterTests {
        typealias Query = QueryClusterTests

        struct Fixture {
            let cluster: Cluster
            let ops: String
            let local: FakeModelProvider
            let cloud: FakeModelProvider
            let enterpriseKey: String
            let freeKey: String
        }

        static let question = "How is the Lagrangian defined?"

        static func with(_ body: @Sendable (Fixture) async throws -> Void) async throws {
            let local = try FakeModelProvider()
            let cloud = try FakeModelProvider()
            try await local.start()
            try await cloud.start()
            defer {
                local.stop()
                cloud.stop()
            }
            let secrets = FileManager.default.temporaryDirectory.appendingPathComponent("zaas-secrets-\(UUID())").path
            try FileManager.default.createDirectory(atPath: secrets, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: secrets) }
            try "sk-cloud-secret\n".write(toFile: secrets + "/ZAAS_MODEL_CLOUD", atomically: true, encoding: .utf8)

            // The semantic cache is off: each test asks variants of one question, which it would serve.
            let settings = ["models.credentials_dir": secrets, "cache.semantic_threshold": "off"]
            try await Cluster.with(nodeCount: 1, nodeSettings: settings) { cluster in
                let control = cluster.control.baseURL
                let ops = try await Query.publishDemoCanon(cluster)
                for (name, modelClass, provider, credential) in [
                    ("fake-local", "local", local, "null"), ("fake-cloud", "cloud", cloud, #""ZAAS_MODEL_CLOUD""#),
                ] {
                    let added = try await TestHTTP.send(
                        "POST", control + "/admin/v1/models", bearer: ops,
                        json: #"""
                            {"name": "\#(name)", "model_class": "\#(modelClass)", "base_url": "\#(provider.baseURL)",
                             "credential_name": \#(credential), "timeout_ms": 2000, "max_concurrency": 2,
                             "input_usd_per_1k_tokens": \#(modelClass == "cloud" ? "0.001" : "0")}
                            """#)
                    #expect(added.status == 201, "\(added.text)")
                }
                let (_, enterpriseAdmin) = try await cluster.makeTenant(slug: "ent", tier: "enterprise")
                let (_, freeAdmin) = try await cluster.makeTenant(slug: "free", tier: "free")
                let enterpriseKey = try await cluster.createKey(token: enterpriseAdmin)
                let freeKey = try await cluster.createKey(token: freeAdmin)
                // The node has the canon once the extractive answerer cites from it (the providers'
                // default answer cites nothing, so until the catalog arrives, or after, the
                // extractive answer is what comes back).
                #expect(
                    try await Query.waitForCitation(
                        cluster, key: enterpriseKey.text, "What is a Lagrangian?", id: "def.lagrangian", present: true))
                try await local.reset()
                try await cloud.reset()
                try await body(
                    Fixture(
                        cluster: cluster, ops: ops, local: local, cloud: cloud, enterpriseKey: enterpriseKey.text,
                        freeKey: freeKey.text))
            }
        }

        /// A query that misses every cache (each test asks its own variant of the question).
        static func ask(_ fixture: Fixture, key: String? = nil, _ question: String, preference: String? = nil)
            async throws -> [String: Any]
        {
            let extra = preference.map { #""model_preference": "\#($0)""# } ?? ""
            let reply = try await Query.query(
                fixture.cluster.nodes[0], key: key ?? fixture.enterpriseKey, question, extra: extra)
            #expect(reply.status == 200, "\(reply.text)")
            return reply.json ?? [:]
        }

        @Test("each class answers through its backend with checked citations; auto takes the cheaper class")
        func classes() async throws {
            try await Self.with { fixture in
                try await fixture.local.script([
                    .answer("The Lagrangian is kinetic minus potential energy [1]. It is used everywhere [7].")
                ])
                let local = try await Self.ask(fixture, "How is the Lagrangian defined, locally?", preference: "local")
                #expect(local["model_used"] as? String == "fake-local", "\(local)")
                #expect((local["route"] as? [String: Any])?["class"] as? String == "local")
                #expect(local["fallback_reason"] == nil)
                // [7] named no passage it was given: removed, and the confidence is lowered.
                #expect(
                    local["answer"] as? String
                        == "The Lagrangian is kinetic minus potential energy [1]. It is used everywhere.")
                let citations = try #require(local["citations"] as? [[String: Any]])
                #expect(citations.count == 1)
                let sent = try #require(try await fixture.local.received().first)
                #expect(sent.authorization == nil)
                let user = sent.messages.last?.content ?? ""
                #expect(
                    user.contains("<passages>") && user.contains("[1] ")
                        && user.contains("Question: How is the Lagrangian defined, locally?"))
                #expect(sent.messages.first?.role == "system")

                try await fixture.cloud.script([.answer("L = T − V, the kinetic minus the potential energy [1].")])
                let cloud = try await Self.ask(
                    fixture, "How is the Lagrangian defined, in the cloud?", preference: "cloud")
                #expect(cloud["model_used"] as? String == "fake-cloud", "\(cloud)")
                #expect(try await fixture.cloud.received().first?.authorization == "Bearer sk-cloud-secret")

                // auto: the local class is cheaper.
                try await fixture.local.script([.answer("Kinetic minus potential energy [1].")])
                let auto = try await Self.ask(fixture, "How is the Lagrangian defined, automatically?")
                #expect(auto["model_used"] as? String == "fake-local", "\(auto)")
                #expect((auto["route"] as? [String: Any])?["reason"] as? String == "auto: the cheaper allowed class")

                // A Free key may not ask for the cloud class; auto never sends it there.
                let refused = try await Query.query(
                    fixture.cluster.nodes[0], key: fixture.freeKey, "Cloud please?",
                    extra: #""model_preference": "cloud""#)
                #expect(refused.status == 403)
                #expect(refused.json?["type"] as? String == "https://zaas.dev/problems/model-class-not-allowed")
            }
        }

        @Test(
            "a failing backend falls back to the other allowed class, then to the extractive answerer; the reason is given"
        )
        func fallbacks() async throws {
            try await Self.with { fixture in
                // Local 500s: the cloud answers.
                try await fixture.local.script([.status(500)])
                try await fixture.cloud.script([.answer("Kinetic minus potential [1].")])
                let first = try await Self.ask(fixture, "Lagrangian definition one?", preference: "local")
                #expect(first["model_used"] as? String == "fake-cloud", "\(first)")
                #expect(first["fallback_reason"] as? String == "backend_error")
                #expect((first["route"] as? [String: Any])?["reason"] as? String == "fell back to cloud")

                // Both fail in their own ways: the extractive answer, with the first reason.
                for (localFailure, cloudFailure, reason) in [
                    (
                        FakeModelProvider.Behaviour.raw("{not json"), FakeModelProvider.Behaviour.status(429),
                        "malformed_response"
                    ),
                    (.drop, .hang, "connection_lost"),
                    (.answer("I will not cite anything."), .answer("Nor will I."), "unsupported_answer"),
                ] {
                    try await fixture.local.script([localFailure])
                    try await fixture.cloud.script([cloudFailure])
                    let answer = try await Self.ask(fixture, "Lagrangian definition, \(reason)?", preference: "local")
                    #expect(answer["model_used"] as? String == "zora-extractive-local", "\(reason): \(answer)")
                    #expect(answer["fallback_reason"] as? String == reason, "\(answer)")
                    #expect((answer["route"] as? [String: Any])?["class"] as? String == "extractive")
                    #expect(!(answer["citations"] as? [Any] ?? []).isEmpty)
                }

                // A question the canon does not cover never reaches a model.
                try await fixture.local.reset()
                let uncovered = try await Self.ask(fixture, "What is the best pizza topping in Naples?")
                #expect(uncovered["model_used"] as? String == "zora-extractive-local")
                #expect(uncovered["covered"] as? Bool == false)
                #expect(try await fixture.local.received().isEmpty)
            }
        }

        @Test("five failures open a backend's circuit: it is skipped at once until a probe succeeds")
        func circuit() async throws {
            try await Self.with { fixture in
                try await fixture.cloud.script([], default: .answer("From the cloud [1]."))
                try await fixture.local.script(Array(repeating: .status(503), count: 5))
                for number in 0..<5 {
                    let answer = try await Self.ask(fixture, "Lagrangian, failure \(number)?", preference: "local")
                    #expect(answer["model_used"] as? String == "fake-cloud")
                }
                #expect(try await fixture.local.received().count == 5)
                // Open: the local backend is not called at all.
                let skipped = try await Self.ask(fixture, "Lagrangian, while open?", preference: "local")
                #expect(skipped["model_used"] as? String == "fake-cloud", "\(skipped)")
                #expect(skipped["fallback_reason"] as? String == "circuit_open")
                #expect(try await fixture.local.received().count == 5)
                // After the cool-down (5 s) one probe goes through; it succeeds and closes the circuit.
                try await fixture.local.script([], default: .answer("Local again [1]."))
                let recovered = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                    let answer = try await Self.ask(fixture, "Lagrangian, probe \(UUID())?", preference: "local")
                    return answer["model_used"] as? String == "fake-local"
                }
                #expect(recovered != nil)
            }
        }
    }
}
