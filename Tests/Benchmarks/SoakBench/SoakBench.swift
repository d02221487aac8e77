import Canon
import Foundation
import TestSupport

// Soak (issue 14): a mixed workload against two nodes for BENCH_SOAK_SECONDS (600 by default):
// repeated questions (cache hits), new questions (misses that grow the caches), a Free key past
// its limit (429s) and key checks, spread over both nodes by BENCH_SOAK_CLIENTS clients (8).
// Warm-up lasts until each node's semantic index has filled to its cap (at most
// BENCH_SOAK_WARMUP_LIMIT seconds, 1200); then the mix runs BENCH_SOAK_SECONDS more. Each node's
// resident memory is sampled every 10 s; the figure is its growth over the measured part. Passes
// when both nodes grow less than 10 % and every answer was a 200 or a 429. Method and figures:
// docs/benchmarks.md.

@main
struct SoakBench {
    static func main() async throws {
        if try await !run() { exit(1) }
    }

    /// Off the main actor: the stack and its clients run on the concurrency pool.
    nonisolated static func run() async throws -> Bool {
        let environment = ProcessInfo.processInfo.environment
        let seconds = Int(environment["BENCH_SOAK_SECONDS"] ?? "600") ?? 600
        let clients = Int(environment["BENCH_SOAK_CLIENTS"] ?? "8") ?? 8
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print("\n[soak] \(seconds) s, \(clients) clients, two nodes")
        let passed = try await BenchStack.with(nodeCount: 2) { stack in
            try await stack.publishBaseCanon(try demoCanonJSON())
            let (_, key) = try await stack.makeTenantKey(
                slug: "soak", tier: "enterprise",
                quotaPolicy: #"{"queries_per_hour": 1000000, "tenant_queries_per_hour": 1000000}"#)
            let (_, freeKey) = try await stack.makeTenantKey(slug: "soak-free", tier: "free")
            for node in stack.nodes {
                let ready = try await TestHTTP.waitUntil(timeout: .seconds(120)) {
                    let reply = try? await query(node, key: key, "How is the Lagrangian defined?")
                    return reply?.status == 200 && (reply?.json?["citations"] as? [Any])?.isEmpty == false
                }
                guard ready != nil else { throw TestEnvironment.SetupError(message: "\(node.name) never answered") }
            }
            return try await soak(stack, key: key, freeKey: freeKey, seconds: seconds, clients: clients)
        }
        return passed
    }

    static let repeated = [
        "How is the Lagrangian defined?", "What does Noether's theorem say?",
        "What is the principle of stationary action?",
        "What is a conserved quantity?", "How are symmetries related to conservation laws?",
        "What is the Hamiltonian?", "What is phase space?", "What is a generalized coordinate?",
    ]
    static let words = [
        "energy", "momentum", "symmetry", "field", "action", "path", "variation", "time", "space", "charge",
        "invariance", "coordinate", "potential", "kinetic", "gauge", "rotation", "translation", "boundary",
    ]

    static func soak(_ stack: BenchStack, key: String, freeKey: String, seconds: Int, clients: Int) async throws -> Bool
    {
        let clock = ContinuousClock()
        let start = clock.now
        let tally = Tally()
        var samples: [Sample] = []
        var warmedUp: Sample?
        await withTaskGroup(of: Void.self) { group in
            for client in 0..<clients {
                group.addTask {
                    var generator = SystemRandomNumberGenerator()
                    var count = 0
                    while !Task.isCancelled {
                        count += 1
                        let status = await request(
                            stack, client: client, count: count, key: key, freeKey: freeKey, using: &generator)
                        if Task.isCancelled { break }  // a request cut short by the end of the run
                        await tally.record(status ?? 0)
                    }
                }
            }
            // Warm-up lasts until every node's semantic index holds its cap (or warmupLimit):
            // until then memory grows by design, as the bounded caches fill. Then `seconds` measured.
            var measureUntil: ContinuousClock.Instant?
            while measureUntil.map({ clock.now < $0 }) ?? true {
                let elapsed = Int((clock.now - start).components.seconds)
                var sample = Sample(elapsed: elapsed, residentKiB: stack.nodes.map { $0.memory?.residentKiB ?? 0 })
                var questions: [Int] = []
                for node in stack.nodes { questions.append(await semanticQuestions(node) ?? 0) }
                sample.questions = questions
                samples.append(sample)
                if elapsed % 60 < 10 {
                    for node in stack.nodes { print("    \(elapsed)s \(node.name): \(await cacheGauges(node))") }
                }
                if warmedUp == nil,
                    questions.allSatisfy({ $0 >= semanticCap }) || clock.now - start >= warmupLimit
                {
                    warmedUp = sample
                    measureUntil = clock.now + .seconds(seconds)
                    print("    warmed up at \(elapsed)s (semantic questions per node: \(questions))")
                }
                try? await Task.sleep(for: .seconds(10))
            }
            var last = Sample(
                elapsed: Int((clock.now - start).components.seconds),
                residentKiB: stack.nodes.map { $0.memory?.residentKiB ?? 0 })
            var questions: [Int] = []
            for node in stack.nodes { questions.append(await semanticQuestions(node) ?? 0) }
            last.questions = questions
            samples.append(last)
            group.cancelAll()
        }
        guard let warmedUp, let last = samples.last else { return false }
        let counts = await tally.counts
        let total = counts.values.reduce(0, +)
        let duration = max(last.elapsed, 1)
        print("  requests: \(total) (\(total / duration)/s); by status: \(counts.sorted { $0.key < $1.key })")
        let fixedWarmup = samples.first { $0.elapsed >= 120 } ?? samples[0]
        var passed = counts.keys.allSatisfy { [200, 429].contains($0) }
        func growth(_ index: Int, from: Sample) -> Double {
            Double(last.residentKiB[index] - from.residentKiB[index]) / Double(max(from.residentKiB[index], 1)) * 100
        }
        for (index, node) in stack.nodes.enumerated() {
            let measured = growth(index, from: warmedUp)
            let series = samples.map { "\($0.elapsed)s:\($0.residentKiB[index] / 1024)" }.joined(separator: " ")
            print(
                "  \(node.name): resident \(warmedUp.residentKiB[index] / 1024) MiB once warmed up (\(warmedUp.elapsed) s), "
                    + "\(last.residentKiB[index] / 1024) MiB at the end (\(last.elapsed) s): "
                    + "\(String(format: "%+.1f", measured)) %; from \(fixedWarmup.elapsed) s (caches still filling): "
                    + "\(String(format: "%+.1f", growth(index, from: fixedWarmup))) %")
            print("    samples (MiB): \(series)")
            if measured >= 10 { passed = false }
        }
        if warmedUp.questions.contains(where: { $0 < semanticCap }) {
            print("  the semantic index never reached its cap within the warm-up limit")
        }
        print(
            "  \(passed ? "PASS" : "FAIL"): memory growth under 10 % on both nodes once warmed up, only 200 and 429 answers"
        )
        return passed
    }

    struct Sample {
        var elapsed: Int
        var residentKiB: [Int]
        var questions: [Int] = []
    }

    /// The semantic cache's per-scope cap (SemanticAnswerCache's default): warm-up ends there.
    static let semanticCap = 20_000
    static let warmupLimit: Duration = .seconds(
        Int(ProcessInfo.processInfo.environment["BENCH_SOAK_WARMUP_LIMIT"] ?? "1200") ?? 1200)

    /// One request of the mix: 60 % repeated questions, 30 % new ones, 5 % the Free key, 5 % key checks.
    static func request(
        _ stack: BenchStack, client: Int, count: Int, key: String, freeKey: String,
        using generator: inout SystemRandomNumberGenerator
    ) async -> Int? {
        let node = stack.nodes[(client + count) % stack.nodes.count]
        let roll = Int.random(in: 0..<100, using: &generator)
        if roll < 60 {
            return try? await query(node, key: key, repeated.randomElement(using: &generator)!).status
        } else if roll < 90 {
            let question =
                "What links " + (0..<4).map { _ in words.randomElement(using: &generator)! }.joined(separator: " and ")
                + " \(client)-\(count)?"
            return try? await query(node, key: key, question).status
        } else if roll < 95 {
            return try? await query(node, key: freeKey, repeated[0]).status
        } else {
            return try? await TestHTTP.send("GET", node.baseURL + "/api/v1/key", bearer: key).status
        }
    }

    /// `zaas_semantic_cache_questions` from the node's metrics listener.
    static func semanticQuestions(_ node: ServerProcess) async -> Int? {
        guard let reply = try? await TestHTTP.send("GET", node.metricsURL) else { return nil }
        let line = reply.text.split(separator: "\n").first { $0.hasPrefix("zaas_semantic_cache_questions") }
        return line.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }.map { Int($0) }
    }

    /// The node's semantic-index and persistent-queue gauges from its metrics listener.
    static func cacheGauges(_ node: ServerProcess) async -> String {
        guard let reply = try? await TestHTTP.send("GET", node.metricsURL) else { return "metrics unavailable" }
        return reply.text.split(separator: "\n").filter {
            !$0.hasPrefix("#")
                && ($0.hasPrefix("zaas_semantic_cache_questions") || $0.hasPrefix("zaas_semantic_cache_bytes")
                    || $0.hasPrefix("zaas_persistent_cache"))
        }.joined(separator: "; ")
    }

    static func query(_ node: ServerProcess, key: String, _ question: String) async throws -> TestHTTP.Reply {
        let body = String(decoding: try JSONSerialization.data(withJSONObject: ["question": question]), as: UTF8.self)
        return try await TestHTTP.send(
            "POST", node.baseURL + "/api/v1/query", bearer: key, json: body, timeout: .seconds(30))
    }

    static func demoCanonJSON() throws -> String {
        let folder = TestEnvironment.repositoryRoot.appendingPathComponent("infra/demo-canon").path
        let (entries, problems) = CanonArchive().parse(folder: folder)
        guard problems.isEmpty else { throw TestEnvironment.SetupError(message: "demo canon: \(problems)") }
        return String(decoding: try JSONEncoder().encode(entries.map(\.entry)), as: UTF8.self)
    }
}

actor Tally {
    private(set) var counts: [Int: Int] = [:]
    func record(_ status: Int) { counts[status, default: 0] += 1 }
}
