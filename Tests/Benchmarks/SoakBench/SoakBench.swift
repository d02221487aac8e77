import Canon
import Foundation
import TestSupport

// Soak (issue 14): a mixed workload against two nodes for BENCH_SOAK_SECONDS (600 by default):
// repeated questions (cache hits), new questions (misses that grow the caches), a Free key past
// its limit (429s) and key checks, spread over both nodes by BENCH_SOAK_CLIENTS clients (8).
// Each node's resident memory is sampled every 10 s; the figure is its growth from the end of
// warm-up (the first fifth) to the end. Passes when both nodes grow less than 10 % and every
// answer was a 200 or a 429. Method and figures: docs/benchmarks.md.

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
        let end = start + .seconds(seconds)
        let tally = Tally()
        let sampler = Task {
            var samples: [(Double, [Int])] = []
            while clock.now < end {
                let elapsed = Double((clock.now - start).components.seconds)
                samples.append((elapsed, stack.nodes.map { $0.memory?.residentKiB ?? 0 }))
                // What the bounded caches hold at the same moment (every 60 s), to tell filling from leaking.
                if Int(elapsed) % 60 < 10 {
                    for node in stack.nodes {
                        print("    \(Int(elapsed))s \(node.name): \(await cacheGauges(node))")
                    }
                }
                try? await Task.sleep(for: .seconds(10))
            }
            samples.append((Double(seconds), stack.nodes.map { $0.memory?.residentKiB ?? 0 }))
            return samples
        }
        await withTaskGroup(of: Void.self) { group in
            for client in 0..<clients {
                group.addTask {
                    var generator = SystemRandomNumberGenerator()
                    var count = 0
                    while clock.now < end {
                        count += 1
                        let node = stack.nodes[(client + count) % stack.nodes.count]
                        let roll = Int.random(in: 0..<100, using: &generator)
                        let status: Int?
                        if roll < 60 {
                            status = try? await query(node, key: key, repeated.randomElement(using: &generator)!).status
                        } else if roll < 90 {
                            let question =
                                "What links "
                                + (0..<4).map { _ in words.randomElement(using: &generator)! }.joined(
                                    separator: " and ")
                                + " \(client)-\(count)?"
                            status = try? await query(node, key: key, question).status
                        } else if roll < 95 {
                            status = try? await query(node, key: freeKey, repeated[0]).status
                        } else {
                            status = try? await TestHTTP.send("GET", node.baseURL + "/api/v1/key", bearer: key).status
                        }
                        await tally.record(status ?? 0)
                    }
                }
            }
        }
        let samples = await sampler.value
        let counts = await tally.counts
        let total = counts.values.reduce(0, +)
        print("  requests: \(total) (\(total / max(seconds, 1))/s); by status: \(counts.sorted { $0.key < $1.key })")
        let warmedUp = samples.first { $0.0 >= Double(seconds) / 5 } ?? samples[0]
        let last = samples[samples.count - 1]
        var passed = counts.keys.allSatisfy { [200, 429].contains($0) }
        for (index, node) in stack.nodes.enumerated() {
            let growth = Double(last.1[index] - warmedUp.1[index]) / Double(max(warmedUp.1[index], 1)) * 100
            let series = samples.map { "\(Int($0.0))s:\($0.1[index] / 1024)" }.joined(separator: " ")
            print(
                "  \(node.name): resident \(warmedUp.1[index] / 1024) MiB after warm-up (\(Int(warmedUp.0)) s), "
                    + "\(last.1[index] / 1024) MiB at the end: \(String(format: "%+.1f", growth)) %")
            print("    samples (MiB): \(series)")
            if growth >= 10 { passed = false }
        }
        print("  \(passed ? "PASS" : "FAIL"): memory growth under 10 % on both nodes, only 200 and 429 answers")
        return passed
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
