import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TestSupport

// Route and infer (issue 15), two parts; figures go to docs/benchmarks.md.
//
// overhead: what a node adds to a model call, with an instant backend (nginx from Debian
//   returning a fixed completion): client latency through the node less the stages it reports
//   for embedding, retrieval and the answer filter (which embeds the answer's sentences) and less
//   the median latency of the same client calling nginx directly. LiteLLM's proxy (PyPI) in front
//   of the same nginx, in the same run: its latency less the same direct median. At 1 and at 32
//   concurrent connections.
// local: routed answers through the real local model (llama-server, infra/start-llm.sh):
//   llama-server streamed directly (time to first token, generation tokens per second), then
//   through a node with `Accept: text/event-stream` (time to the first served sentence, total).
//
// BENCH_PARTS picks parts (overhead,local); BENCH_SECONDS sizes each timed run (default 10);
// ZAAS_LITELLM is LiteLLM's executable (infra/fetch-bench-tools.sh; the comparison is skipped
// without it); ZAAS_LLM_PORT is where llama-server listens (8090).

let environment = ProcessInfo.processInfo.environment
let seconds = Int(environment["BENCH_SECONDS"] ?? "10") ?? 10

@main
struct GatewayBench {
    static func main() async throws {
        let parts = Set((environment["BENCH_PARTS"] ?? "overhead,local").split(separator: ","))
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores")
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 128
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            if parts.contains("overhead") { try await overheadBenchmark(client) }
            if parts.contains("local") { try await localModelBenchmark(client) }
        } catch {
            try? await client.shutdown()
            FileHandle.standardError.write(Data("bench-gateway: \(error)\n".utf8))
            exit(1)
        }
        try await client.shutdown()
    }
}

/// One request's outcome: its latency, and the stages the node reported (`timings_ms`).
struct Sample {
    var milliseconds: Double
    var stages: [String: Double] = [:]
}

/// POST `body` to `url`; the reply's status and JSON.
func post(_ client: HTTPClient, _ url: String, body: String, bearer: String? = nil) async throws -> (
    Int, [String: Any]
) {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/json")
    if let bearer { request.headers.add(name: "Authorization", value: "Bearer \(bearer)") }
    request.body = .bytes(ByteBuffer(string: body))
    let response = try await client.execute(request, timeout: .seconds(60))
    let bytes = try await response.body.collect(upTo: 1 << 20)
    let json = (try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView))) as? [String: Any] ?? [:]
    return (Int(response.status.code), json)
}

/// `connections` workers sending requests back to back for `seconds` (after a warm-up of 50
/// requests each); `request(worker, n)` makes one and throws on a wrong answer.
func load(connections: Int, seconds: Int, _ request: @escaping @Sendable (Int, Int) async throws -> Sample)
    async throws -> [Sample]
{
    try await withThrowingTaskGroup(of: [Sample].self) { group in
        for worker in 0..<connections {
            group.addTask {
                for n in 0..<50 { _ = try await request(worker, -1 - n) }
                return []
            }
        }
        try await group.waitForAll()
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(seconds)
        for worker in 0..<connections {
            group.addTask {
                var samples: [Sample] = []
                var n = 0
                while clock.now < deadline {
                    samples.append(try await request(worker, n))
                    n += 1
                }
                return samples
            }
        }
        return try await group.reduce(into: []) { $0 += $1 }
    }
}

func describe(_ values: [Double]) -> String {
    "p50 \(format(percentile(values, 50))), p99 \(format(percentile(values, 99))) (n = \(values.count))"
}

// MARK: - The gateway's overhead

func overheadBenchmark(_ client: HTTPClient) async throws {
    print(
        "\n[overhead] an instant backend (nginx returning a fixed completion); \(seconds) s per run; one node (release)"
    )
    let directory = ConfigFixtures.temporaryDirectory()
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let (nginx, nginxPort) = try await BenchAnchors.startNginx(directory: directory)
    defer { nginx.kill() }
    let backend = "http://127.0.0.1:\(nginxPort)/v1"
    var litellm: (ChildProcess, Int)?
    if let executable = environment["ZAAS_LITELLM"] {
        litellm = try await BenchAnchors.startLiteLLM(executable, nginxPort: nginxPort, directory: directory)
    } else {
        print("  (ZAAS_LITELLM not set: LiteLLM is not measured; `make bench` sets it)")
    }
    defer { litellm?.0.kill() }

    // Every question is new (the exact cache misses); the semantic cache is off.
    try await BenchStack.with(nodeSettings: ["cache.semantic_threshold": "off"]) { stack in
        let node = stack.node
        try await stack.publishDemoCanon()
        let (_, key) = try await stack.makeTenantKey(
            slug: "bench", tier: "enterprise",
            quotaPolicy: #"{"queries_per_hour": 10000000, "tenant_queries_per_hour": 10000000}"#)
        try await stack.addModel(
            #"""
            {"name": "nginx-instant", "model_class": "local", "base_url": "\#(backend)", "credential_name": null,
             "timeout_ms": 10000, "max_concurrency": 256, "context_window": 8192}
            """#)

        /// Question `n` of `worker` in run `run`: every one is new to the caches.
        @Sendable func ask(run: Int, _ worker: Int, _ n: Int) async throws -> Sample {
            let started = ContinuousClock.now
            let (status, json) = try await post(
                client, node.baseURL + "/api/v1/query",
                body:
                    #"{"question": "How is the Lagrangian defined? (run \#(run), worker \#(worker), question \#(n))"}"#,
                bearer: key)
            let elapsed = milliseconds(ContinuousClock.now - started)
            guard status == 200, json["model_used"] as? String == "nginx-instant",
                json["cache_hit"] as? Bool == false
            else {
                throw TestEnvironment.SetupError(message: "not a routed miss: \(status) \(json)")
            }
            return Sample(milliseconds: elapsed, stages: json["timings_ms"] as? [String: Double] ?? [:])
        }
        let ready = try await TestHTTP.waitUntil(timeout: .seconds(120)) {
            (try? await ask(run: 0, 0, 0)) != nil
        }
        guard ready != nil else { throw TestEnvironment.SetupError(message: "the node never answered through nginx") }

        let direct = "http://127.0.0.1:\(nginxPort)/v1/chat/completions"
        @Sendable func call(_ url: String, bearer: String? = nil) async throws -> Sample {
            let started = ContinuousClock.now
            let (status, json) = try await post(client, url, body: BenchAnchors.chat, bearer: bearer)
            let elapsed = milliseconds(ContinuousClock.now - started)
            guard status == 200, json["choices"] != nil else {
                throw TestEnvironment.SetupError(message: "\(url): \(status) \(json)")
            }
            return Sample(milliseconds: elapsed)
        }

        for connections in [1, 32] {
            print("\n  \(connections) connection(s):")
            let baseline = try await load(connections: connections, seconds: seconds) { _, _ in try await call(direct) }
            let directMedian = percentile(baseline.map(\.milliseconds), 50)
            print("    nginx directly:      \(describe(baseline.map(\.milliseconds)))")

            let zaas = try await load(connections: connections, seconds: seconds) { worker, n in
                try await ask(run: connections, worker, n)
            }
            let overhead = zaas.map { sample in
                sample.milliseconds - ["embed", "retrieve", "filter"].reduce(0) { $0 + (sample.stages[$1] ?? 0) }
                    - directMedian
            }
            print("    ZaaS node, latency:  \(describe(zaas.map(\.milliseconds)))")
            for stage in ["limit", "cache", "embed", "retrieve", "model", "filter", "store", "total"] {
                let values = zaas.compactMap { $0.stages[stage] }
                if !values.isEmpty {
                    print("      stage \(stage.padding(toLength: 9, withPad: " ", startingAt: 0)) \(describe(values))")
                }
            }
            print("    ZaaS overhead (latency − embed − retrieve − filter − nginx median): \(describe(overhead))")
            print(
                "    ZaaS overhead, the node's own view (total − embed − retrieve − filter − model): \(describe(zaas.map { s in (s.stages["total"] ?? 0) - ["embed", "retrieve", "filter", "model"].reduce(0) { $0 + (s.stages[$1] ?? 0) } }))"
            )

            if let (_, port) = litellm {
                let proxied = try await load(connections: connections, seconds: seconds) { _, _ in
                    try await call("http://127.0.0.1:\(port)/v1/chat/completions", bearer: BenchAnchors.litellmKey)
                }
                print("    LiteLLM, latency:    \(describe(proxied.map(\.milliseconds)))")
                print(
                    "    LiteLLM overhead (latency − nginx median): \(describe(proxied.map { $0.milliseconds - directMedian }))"
                )
            }
        }
    }
}

// MARK: - The local model

func localModelBenchmark(_ client: HTTPClient) async throws {
    let port = environment["ZAAS_LLM_PORT"] ?? "8090"
    let server = "http://127.0.0.1:\(port)"
    guard (try? await TestHTTP.send("GET", server + "/health"))?.status == 200 else {
        print("\n[local] no llama-server on \(server) (make bench starts it; ZAAS_LLM=off skips it): not measured")
        return
    }
    let questions = [
        "What does Noether's theorem say?", "What is a Lagrangian?", "What is the principle of stationary action?",
        "What is a cyclic coordinate?", "What is the Hamiltonian?", "What is phase space?",
        "What is the canonical momentum?", "What is the action?", "What is a Poisson bracket?",
        "What is a Lagrangian density?",
    ]
    print(
        "\n[local] smollm2-135m-instruct on llama-server (\(server)), greedy, \(questions.count) questions, one at a time"
    )

    // Directly: the same prompt a node would send is not needed for speed; the question alone.
    var firstTokens: [Double] = []
    var rates: [Double] = []
    for question in questions {
        var request = HTTPClientRequest(url: server + "/v1/chat/completions")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        // llama-server closes a connection after a streamed answer (while saying keep-alive).
        request.headers.add(name: "Connection", value: "close")
        let body: [String: Any] = [
            "model": "smollm2-135m-instruct", "stream": true, "temperature": 0, "max_tokens": 200,
            "messages": [["role": "user", "content": question]],
        ]
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        let started = ContinuousClock.now
        let response = try await client.execute(request, timeout: .seconds(120))
        var first: ContinuousClock.Instant?
        var buffer = ""
        var tokens = 0
        var reported: Int?
        for try await chunk in response.body {
            buffer += String(buffer: chunk)
            while let end = buffer.range(of: "\n\n") {
                let event = buffer[..<end.lowerBound]
                buffer = String(buffer[end.upperBound...])
                guard event.hasPrefix("data: "),
                    let json = try? JSONSerialization.jsonObject(with: Data(event.dropFirst(6).utf8)) as? [String: Any]
                else { continue }
                let delta = ((json["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["content"]
                if let piece = delta as? String, !piece.isEmpty {
                    if first == nil { first = ContinuousClock.now }
                    tokens += 1
                }
                if let usage = json["usage"] as? [String: Any], let completion = usage["completion_tokens"] as? Int {
                    reported = completion
                }
            }
        }
        let end = ContinuousClock.now
        guard let first, tokens > 1 else { throw TestEnvironment.SetupError(message: "no tokens from llama-server") }
        firstTokens.append(milliseconds(first - started))
        // Tokens after the first, over the time after it (llama-server's count when it reports one).
        rates.append(Double((reported ?? tokens) - 1) / (milliseconds(end - first) / 1000))
    }
    print(
        "  llama-server directly: time to first token \(describe(firstTokens)); tokens/s p50 \(String(format: "%.1f", percentile(rates, 50))), p1 \(String(format: "%.1f", percentile(rates, 1)))"
    )

    // Through a node: the demo canon, the model registered as the local class, streamed answers.
    try await BenchStack.with(nodeSettings: ["cache.semantic_threshold": "off"]) { stack in
        let node = stack.node
        try await stack.publishDemoCanon()
        let (_, key) = try await stack.makeTenantKey(slug: "bench", tier: "enterprise")
        try await stack.addModel(
            #"""
            {"name": "smollm2-135m-instruct", "model_class": "local", "base_url": "\#(server)/v1",
             "credential_name": null, "timeout_ms": 60000, "max_concurrency": 2, "context_window": 2048}
            """#)
        // Ready once the model was called: it answered, or the filter kept nothing of its answer.
        var attempt = 0
        let ready = try await TestHTTP.waitUntil(timeout: .seconds(120)) {
            attempt += 1
            let (status, json) = try await post(
                client, node.baseURL + "/api/v1/query",
                body: #"{"question": "What is the Lagrangian? (warm-up \#(attempt))", "model_preference": "local"}"#,
                bearer: key)
            return status == 200 && json["canon_version"] as? String == "base-v1"
                && ((json["route"] as? [String: Any])?["class"] as? String == "local"
                    || json["fallback_reason"] as? String == "unsupported_answer")
        }
        guard ready != nil else { throw TestEnvironment.SetupError(message: "the node never routed to the model") }

        var firstSentences: [Double] = []
        var totals: [Double] = []
        var modelStages: [Double] = []
        var served = 0
        for question in questions {
            var request = HTTPClientRequest(url: node.baseURL + "/api/v1/query")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "Accept", value: "text/event-stream")
            request.headers.add(name: "Authorization", value: "Bearer \(key)")
            request.body = .bytes(ByteBuffer(string: #"{"question": "\#(question)", "model_preference": "local"}"#))
            let started = ContinuousClock.now
            let response = try await client.execute(request, timeout: .seconds(120))
            var first: ContinuousClock.Instant?
            var bytes: [UInt8] = []
            for try await chunk in response.body {
                bytes += chunk.readableBytesView
                if first == nil, String(decoding: bytes, as: UTF8.self).contains("event: delta") {
                    first = ContinuousClock.now
                }
            }
            totals.append(milliseconds(ContinuousClock.now - started))
            let events = TestHTTP.events(bytes)
            guard let answer = events.last, answer.name == "answer", let json = answer.json else {
                throw TestEnvironment.SetupError(message: "no answer event: \(String(decoding: bytes, as: UTF8.self))")
            }
            if let first {
                firstSentences.append(milliseconds(first - started))
                served += 1
            }
            if let model = (json["timings_ms"] as? [String: Double])?["model"] { modelStages.append(model) }
        }
        print(
            "  through a node, streamed: \(served) of \(questions.count) answered by the model (the rest: the filter kept nothing, extractive)"
        )
        print("    time to the first served sentence: \(describe(firstSentences))")
        print("    whole answer: \(describe(totals)); of which the model stage: \(describe(modelStages))")
    }
}
