import Foundation
import Shared
import TestSupport
import Testing

/// The large-local class end to end: a control plane and a node as processes, the demo canon, the
/// real AirLLM sidecar serving the tiny model through AirLLM's layer-by-layer inference, and a
/// scripted provider as the local class it falls back to.
extension ProcessClusters {
    @Suite("AirLLM: the large-local class through the real sidecar", .serialized)
    struct AirLLMClusterTests {
        typealias Query = QueryClusterTests

        /// The tiny model's answers (written by make_tiny_model.py beside the weights): each demo
        /// question with the first sentence of the entry that answers it, cited [1].
        static func answers() throws -> [(question: String, entry: String, answer: String)] {
            let path = TestEnvironment.repositoryRoot.appendingPathComponent(".zaas/airllm-model/answers.json")
            let items = try #require(
                try JSONSerialization.jsonObject(with: Data(contentsOf: path)) as? [[String: String]])
            return items.compactMap { item in
                guard let question = item["question"], let entry = item["entry"], let answer = item["answer"] else {
                    return nil
                }
                return (question, entry, answer)
            }
            // Short answers first: the tiny model writes seconds of tokens on a loaded machine.
            .sorted { $0.answer.count < $1.answer.count }
        }

        /// A control plane and a node with the demo canon; `sidecar` registered as the large-local
        /// class and `local` (answering whatever it is scripted to) as the local one; a Team key.
        static func with(
            _ sidecar: AirLLMSidecar, _ body: @Sendable (Cluster, String, FakeModelProvider) async throws -> Void
        ) async throws {
            let local = try FakeModelProvider()
            try await local.start()
            defer { local.stop() }
            let settings = ["cache.semantic_threshold": "off", "models.monitor_interval_ms": "200"]
            try await Cluster.with(nodeCount: 1, nodeSettings: settings) { cluster in
                let control = cluster.control.baseURL
                let ops = try await Query.publishDemoCanon(cluster)
                for (name, modelClass, url, timeout) in [
                    ("fake-local", "local", local.baseURL, 5000),
                    (AirLLMSidecar.modelName, "large-local", sidecar.baseURL, 300_000),
                ] {
                    let added = try await TestHTTP.send(
                        "POST", control + "/admin/v1/models", bearer: ops,
                        json: #"""
                            {"name": "\#(name)", "model_class": "\#(modelClass)", "base_url": "\#(url)",
                             "timeout_ms": \#(timeout), "max_concurrency": 1, "context_window": 4096}
                            """#)
                    #expect(added.status == 201, "\(added.text)")
                }
                let (_, admin) = try await cluster.makeTenant(slug: "lab", tier: "team")
                let key = try await cluster.createKey(token: admin)
                #expect(try await cluster.waitForAllNodes(key.text, status: 200) != nil)
                // The node has the canon once the Lagrangian question gets citations; the local
                // class answers it (from the passage), so the sidecar is not asked.
                let lagrangian = try #require(
                    try Self.answers().first { $0.question == "How is the Lagrangian defined?" })
                try await local.script([], default: .answer(lagrangian.answer))
                try await AuditClusterTests.waitForCanon(cluster.nodes[0], key: key.text)
                try await body(cluster, key.text, local)
            }
        }

        /// Asks for the large-local class. AirLLM on a processor streams every layer for every
        /// token: an answer takes tens of seconds, minutes on a loaded machine.
        static func ask(_ cluster: Cluster, key: String, _ question: String) async throws -> [String: Any] {
            let body = try JSONSerialization.data(withJSONObject: [
                "question": question, "model_preference": "large-local",
            ])
            let reply = try await TestHTTP.send(
                "POST", cluster.nodes[0].baseURL + "/api/v1/query", bearer: key,
                json: String(decoding: body, as: UTF8.self), timeout: .seconds(300))
            #expect(reply.status == 200, "\(reply.text)")
            return reply.json ?? [:]
        }

        static func route(_ answer: [String: Any]) -> String? {
            (answer["route"] as? [String: Any])?["class"] as? String
        }

        /// The node's gauge of the sidecar's memory of `kind`, once its monitor has read it.
        static func backendMemory(_ cluster: Cluster, kind: String) async throws -> Double? {
            var value: Double?
            _ = try await TestHTTP.waitUntil(timeout: .seconds(10)) {
                let text = try await TestHTTP.send("GET", cluster.nodes[0].metricsURL).text
                value = text.split(separator: "\n").first {
                    $0.hasPrefix("zaas_model_backend_memory_bytes{") && $0.contains(#"kind="\#(kind)""#)
                        && $0.contains(AirLLMSidecar.modelName)
                }.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } }
                return value != nil
            }
            return value
        }

        @Test(
            "the tiny model answers through AirLLM with checked citations; a busy sidecar's 429 is honoured and not held against it; killed: the local class answers, then the extractive answer"
        )
        func answersAndFallbacks() async throws {
            let answers = try Self.answers()
            try #require(answers.count >= 5)
            let sidecar = try AirLLMSidecar(maxQueue: 0)
            try await sidecar.start()
            try await Self.with(sidecar) { cluster, key, local in
                // Answered by the sidecar: the tiny model's sentence, cited and checked.
                let first = answers[0]
                let answered = try await Self.ask(cluster, key: key, first.question)
                #expect(answered["model_used"] as? String == AirLLMSidecar.modelName, "\(answered)")
                #expect(Self.route(answered) == "large-local", "\(answered)")
                #expect(answered["fallback_reason"] == nil || answered["fallback_reason"] is NSNull)
                let citations = answered["citations"] as? [[String: Any]] ?? []
                #expect(citations.first?["id"] as? String == first.entry, "\(citations)")
                let expected = first.answer.replacingOccurrences(of: " [1]", with: "")
                #expect((answered["answer"] as? String)?.contains(expected.dropLast()) == true, "\(answered)")
                let filter = answered["filter"] as? [String: Any] ?? [:]
                #expect((filter["dropped"] as? [String: Any])?.isEmpty ?? true, "\(filter)")
                // AirLLM streamed the layers: the sidecar counted its loads and its answer.
                #expect(try await sidecar.metric("airllm_requests_total", labels: #"outcome="ok""#) == 1)
                #expect((try await sidecar.metric("airllm_layer_load_seconds_count") ?? 0) > 0)
                #expect(try await sidecar.metric("airllm_model_layers") == 7)
                // The node reports the sidecar's memory, as its monitor scrapes it.
                #expect((try await Self.backendMemory(cluster, kind: "resident") ?? 0) > 0)
                #expect((try await Self.backendMemory(cluster, kind: "limit") ?? 0) > 0)

                // Busy: a long generation holds the sidecar (it queues nothing behind it), so the
                // node's call gets 429 with Retry-After: the local class answers, and the node
                // does not call the sidecar again until then.
                let occupying = Task {
                    try await TestHTTP.send(
                        "POST", sidecar.baseURL + "/chat/completions",
                        json: #"{"messages": [{"role": "user", "content": "Question: hold"}], "max_tokens": 60}"#)
                }
                defer { occupying.cancel() }
                #expect(
                    try await TestHTTP.waitUntil(timeout: .seconds(30)) {
                        try await sidecar.metric("airllm_requests_in_flight") == 1
                    } != nil)
                for item in answers[1...2] {
                    try await local.script([.answer(item.answer)])
                    let busy = try await Self.ask(cluster, key: key, item.question)
                    #expect(busy["model_used"] as? String == "fake-local", "\(busy)")
                    #expect(busy["fallback_reason"] as? String == "backend_busy", "\(busy)")
                }
                #expect(try await sidecar.metric("airllm_requests_total", labels: #"outcome="busy""#) == 1)

                // Killed: the node's monitor finds it gone and holds its circuit open; the local
                // class answers, saying why; with that failing too, the extractive answer.
                sidecar.kill()
                #expect(
                    try await TestHTTP.waitUntil(timeout: .seconds(10)) {
                        try await TestHTTP.send("GET", cluster.nodes[0].metricsURL).text.contains(
                            #"zaas_model_backend_up{model="\#(AirLLMSidecar.modelName)"} 0"#)
                    } != nil)
                try await local.script([.answer(answers[3].answer)])
                let down = try await Self.ask(cluster, key: key, answers[3].question)
                #expect(down["model_used"] as? String == "fake-local", "\(down)")
                #expect(down["fallback_reason"] as? String == "backend_unreachable", "\(down)")
                try await local.script([], default: .status(500))
                let last = try await Self.ask(cluster, key: key, answers[4].question)
                #expect(last["model_used"] as? String == "zora-extractive-local", "\(last)")
                #expect(Self.route(last) == "extractive")
            }
        }

        @Test(
            "a sidecar over the memory ceiling it reports has its circuit held open: the local class answers, saying why"
        )
        func memoryCeiling() async throws {
            let answers = try Self.answers()
            // 1 MiB: a Python process with PyTorch loaded is far above it.
            let sidecar = try AirLLMSidecar(memoryLimitMB: 1)
            try await sidecar.start()
            defer { sidecar.kill() }
            try await Self.with(sidecar) { cluster, key, local in
                let limit = try #require(try await Self.backendMemory(cluster, kind: "limit"))
                let resident = try #require(try await Self.backendMemory(cluster, kind: "resident"))
                #expect(limit == 1_048_576 && resident > limit)
                try await local.script([.answer(answers[0].answer)])
                let answer = try await Self.ask(cluster, key: key, answers[0].question)
                #expect(answer["model_used"] as? String == "fake-local", "\(answer)")
                #expect(answer["fallback_reason"] as? String == "memory_ceiling", "\(answer)")
                #expect(try await sidecar.metric("airllm_requests_total", labels: #"outcome="ok""#) == nil)
            }
        }
    }
}
