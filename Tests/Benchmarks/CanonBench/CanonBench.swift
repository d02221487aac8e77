import Canon
import ControlPlane
import Embeddings
import Foundation
import Logging
import PostgresNIO
import Retrieval
import Shared
import TestSupport

// Canon, retrieval and the query API (issue 6): recall@5 on the evaluation file; building a
// 10k-entry canon; retrieval alone over 100k chunks with memory; POST /api/v1/query end to end
// against one node, in rounds alternating with LiteLLM's proxy passing calls through to an instant
// backend (ZAAS_LITELLM; issue 20). Figures go to docs/benchmarks.md. BENCH_PARTS picks parts
// (recall,build,retrieval,query); BENCH_BUILD_ENTRIES, BENCH_RETRIEVAL_CHUNKS, BENCH_QUERY_SECONDS,
// BENCH_QUERY_ROUNDS, BENCH_QUERY_CLIENTS and BENCH_EMBED_THREADS size them.

@main
struct CanonBench {
    static func main() async throws {
        let parts = Set((environment["BENCH_PARTS"] ?? "recall,build,retrieval,query").split(separator: ","))
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores")
        if parts.contains("recall") { try await recallBenchmark() }
        if parts.contains("build") { try await buildBenchmark() }
        if parts.contains("retrieval") { try retrievalBenchmark() }
        // A connection per client (the shared client would open 8 and queue the rest).
        if parts.contains("query") {
            try await TestHTTP.$client.withValue(TestHTTP.benchmarkClient) { try await queryBenchmark() }
        }
    }
}

let environment = ProcessInfo.processInfo.environment
let buildEntries = Int(environment["BENCH_BUILD_ENTRIES"] ?? "10000") ?? 10_000
let buildBatch = Int(environment["BENCH_BUILD_BATCH"] ?? "32") ?? 32
let retrievalChunks = Int(environment["BENCH_RETRIEVAL_CHUNKS"] ?? "100000") ?? 100_000
let querySeconds = Int(environment["BENCH_QUERY_SECONDS"] ?? "20") ?? 20
let queryClients = Int(environment["BENCH_QUERY_CLIENTS"] ?? "16") ?? 16
let infra = TestEnvironment.repositoryRoot.appendingPathComponent("infra")

/// This process's resident and peak resident memory, in MiB.
func memory() -> (resident: Double, peak: Double) {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    func value(_ key: String) -> Double {
        let line = status.split(separator: "\n").first { $0.hasPrefix(key + ":") } ?? ""
        return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
    }
    return (value("VmRSS"), value("VmHWM"))
}

struct Question: Decodable {
    let question: String
    let expected: [String]
}

func evaluationQuestions() throws -> [Question] {
    try JSONDecoder().decode(
        [Question].self, from: Data(contentsOf: infra.appendingPathComponent("demo-canon-eval.json")))
}

func demoEntries() -> [CanonEntry] {
    CanonArchive().parse(folder: infra.appendingPathComponent("demo-canon").path).entries.map(\.entry)
}

// MARK: - 1. Recall@5

func recallBenchmark() async throws {
    print("\n[recall] demo canon, \(try evaluationQuestions().count) evaluation questions")
    let model = try SentenceModel(directory: TestEnvironment.modelDirectory)
    let embedder = BatchingEmbedder(model: model, threads: 2)
    defer { embedder.shutdown() }
    let entries = demoEntries()
    let index = try CanonIndex(
        bytes: ArtifactBytes(
            copying: try await CanonIndexer().artifact(label: "base-v1", entries: entries, embedder: embedder)))
    let layers = [CanonLayer(index: index)]
    let retriever = HybridRetriever()
    var found = 0
    var expected = 0
    var foundAt1 = 0
    var lexicalOnly = 0
    var vectorOnly = 0
    for question in try evaluationQuestions() {
        let vector = model.embedNow([question.question])[0]
        let result = retriever.retrieve(layers: layers, question: question.question, vector: vector, limit: 5)
        let ids = result.entries.map(\.entry.id)
        for id in question.expected {
            expected += 1
            if ids.contains(id) { found += 1 }
            if ids.first == id { foundAt1 += 1 }
            if result.lexicalOrder.prefix(5).contains(id) { lexicalOnly += 1 }
            if result.vectorOrder.prefix(5).contains(id) { vectorOnly += 1 }
        }
    }
    print("  entries \(entries.count), chunks \(index.chunkCount)")
    print(
        String(
            format: "  recall@5 hybrid %.3f  (BM25 alone %.3f, vector alone %.3f); expected entry first: %.3f",
            Double(found) / Double(expected), Double(lexicalOnly) / Double(expected),
            Double(vectorOnly) / Double(expected), Double(foundAt1) / Double(expected)))
}

// MARK: - Generated canon text

/// Deterministic text of realistic length (SplitMix64).
struct TextGenerator {
    var random: SplitMix

    init(state: UInt64) { self.random = SplitMix(seed: state) }

    mutating func next() -> UInt64 { self.random.next() }

    mutating func pick<T>(_ items: [T]) -> T { items[Int(self.next() % UInt64(items.count))] }

    static let words = """
        action lagrangian hamiltonian field symmetry energy momentum conserved charge gauge invariant
        potential kinetic coordinate generalized velocity trajectory variation stationary principle
        equation motion solution boundary condition tensor metric spacetime curvature scalar vector spinor
        quantum classical relativistic density current flux wave oscillator frequency amplitude phase
        mass particle interaction coupling constant parameter model prediction measurement experiment
        observation detector accelerator collision scattering cross section decay rate lifetime spectrum
        temperature entropy pressure volume thermodynamic statistical ensemble partition probability
        the a of and in to is that for with as by on which this from an are be it under at its we when
        system transformation translation rotation boost operator commutator bracket poisson canonical
        phase space manifold configuration constraint holonomic multiplier integral derivative partial
        total time dependence explicit implicit theorem noether identity result proof derivation
        approximation perturbation expansion series order leading correction loop renormalization cutoff
        effective theory vacuum expectation value breaking spontaneous goldstone higgs mechanism photon
        electron proton neutron quark gluon boson fermion lepton hadron nucleus atom molecule crystal
        lattice band gap conductor superconductor magnet magnetic electric charge dipole moment radiation
        """.split(whereSeparator: \.isWhitespace).map(String.init)

    /// Half the words from the common list above, half from a long tail of 20 000 rarer terms
    /// drawn log-uniformly by rank (Zipf's law with exponent 1), as in real text.
    mutating func word() -> String {
        if self.next() % 2 == 0 { return self.pick(Self.words) }
        let unit = Double(self.next() % 1_000_000) / 1_000_000
        return "term\(Int(exp(unit * log(20_000.0))))"
    }

    mutating func sentence(words range: ClosedRange<Int> = 12...21) -> String {
        let length = range.lowerBound + Int(self.next() % UInt64(range.count))
        var words = (0..<length).map { _ in self.word() }
        words[0] = words[0].prefix(1).uppercased() + words[0].dropFirst()
        if self.next() % 4 == 0 {
            words.insert(
                "$\(self.pick(["L", "H", "S", "p", "q"])) = \(self.pick(["T - V", "p\\dot q - L", "\\int L\\,dt", "\\partial L/\\partial \\dot q"]))$",
                at: length / 2)
        }
        return words.joined(separator: " ") + "."
    }

    mutating func body(sentences: ClosedRange<Int>) -> String {
        let count = sentences.lowerBound + Int(self.next() % UInt64(sentences.count))
        return (0..<count).map { _ in self.sentence() }.joined(separator: " ")
    }

    mutating func entries(_ count: Int) -> [CanonEntry] {
        (0..<count).map { index in
            CanonEntry(
                id: "gen.\(index)", kind: self.pick(CanonEntry.Kind.allCases),
                title: (0..<3).map { _ in self.pick(Self.words) }.joined(separator: " ").capitalized,
                body: self.body(sentences: 3...7), status: self.pick(CanonEntry.Status.allCases))
        }
    }
}

// MARK: - 2. Building a 10k-entry canon

/// Entries like the demo canon's: each body as long as a randomly chosen demo entry's, its words
/// drawn from the demo canon's running text (so word frequencies, LaTeX and tokenisation are
/// those of real canon text).
func realisticEntries(_ count: Int, generator: inout TextGenerator) -> [CanonEntry] {
    let demo = demoEntries()
    let lengths = demo.map { $0.body.split(whereSeparator: \.isWhitespace).count }
    let words = demo.flatMap { $0.body.split(whereSeparator: \.isWhitespace).map(String.init) }
    let titles = demo.flatMap { $0.title.split(separator: " ").map(String.init) }
    return (0..<count).map { index in
        let length = generator.pick(lengths)
        return CanonEntry(
            id: "gen.\(index)", kind: generator.pick(CanonEntry.Kind.allCases),
            title: (0..<3).map { _ in generator.pick(titles) }.joined(separator: " "),
            body: (0..<length).map { _ in generator.pick(words) }.joined(separator: " "),
            status: generator.pick(CanonEntry.Status.allCases))
    }
}

func buildBenchmark() async throws {
    var generator = TextGenerator(state: 42)
    let entries = realisticEntries(buildEntries, generator: &generator)
    let words = entries.reduce(0) { $0 + $1.body.split(separator: " ").count }
    print("\n[build] \(entries.count) generated entries, \(words / entries.count) words each on average")
    let model = try SentenceModel(directory: TestEnvironment.modelDirectory)
    let embedder = BatchingEmbedder(model: model, threads: 2)
    defer { embedder.shutdown() }
    let before = memory()
    let indexer = CanonIndexer(batchSize: buildBatch, concurrency: 2)
    let start = ContinuousClock.now
    let artifact = try await indexer.artifact(
        label: "bench-v1", entries: entries, embedder: embedder)
    let took = ContinuousClock.now - start
    let index = try CanonIndex(bytes: ArtifactBytes(copying: artifact))
    let after = memory()
    print("  build (chunk, embed with 2 threads, index, serialise): \(format(milliseconds(took) / 1000, "s"))")
    print(
        String(
            format: "  chunks %d (%.0f chunks/s), artifact %.1f MiB", index.chunkCount,
            Double(index.chunkCount) / (milliseconds(took) / 1000), Double(artifact.count) / 1_048_576))
    print(
        String(
            format: "  memory: resident %.0f MiB before, peak %.0f MiB (model and embedder included)",
            before.resident, after.peak))
    // What the model read: the tokens of every chunk's embedded text (`encode` stops at the model's
    // sequence length), so the build's rate compares with the embeddings benchmark's tokens per second.
    let tokens = indexer.chunker.chunks(of: entries).reduce(0) { sum, chunk in
        sum
            + model.tokenizer.encode(
                CanonIndexer.embeddingText(title: entries[chunk.entryIndex].title, chunk: chunk.text)
            ).count
    }
    print(
        String(
            format: "  tokens %d (%.0f per chunk), %.0f tokens/s", tokens, Double(tokens) / Double(index.chunkCount),
            Double(tokens) / (milliseconds(took) / 1000)))
    // An update of 10 entries: the rebuild reuses every unchanged chunk's embedding.
    var changed = entries
    for position in stride(from: 0, to: changed.count, by: max(1, changed.count / 10)).prefix(10) {
        changed[position].body += " Revised."
    }
    let rebuildStart = ContinuousClock.now
    _ = try await indexer.artifact(
        label: "bench-v2", entries: changed, embedder: embedder, reusing: index)
    print(
        "  rebuild after changing 10 entries (reusing the rest): "
            + format(milliseconds(ContinuousClock.now - rebuildStart) / 1000, "s"))
}

// MARK: - 3. Retrieval alone over 100k chunks

func retrievalBenchmark() throws {
    var generator = TextGenerator(state: 7)
    print("\n[retrieval] \(retrievalChunks) chunks (one per entry, generated text, clustered synthetic embeddings)")
    let entries = generator.entries(retrievalChunks)
    let chunks = entries.indices.map { CanonChunk(entryIndex: $0, text: entries[$0].body) }
    let dimensions = 384
    var embeddings = [Float](repeating: 0, count: chunks.count * dimensions)
    func unitVector() -> [Float] {
        var vector = (0..<dimensions).map { _ in Float(Int(generator.next() % 20001) - 10000) / 10000 }
        let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
        for index in vector.indices { vector[index] /= norm }
        return vector
    }
    // Embeddings cluster by topic: 2000 topic directions, each chunk near one of them.
    let topics = (0..<2000).map { _ in unitVector() }
    func near(_ topic: [Float]) -> [Float] {
        let noise = unitVector()
        var vector = zip(topic, noise).map { $0 + 0.9 * $1 }
        let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
        for index in vector.indices { vector[index] /= norm }
        return vector
    }
    for chunk in chunks.indices {
        embeddings.replaceSubrange(
            (chunk * dimensions)..<((chunk + 1) * dimensions), with: near(topics[chunk % topics.count]))
    }
    let artifact = CanonIndexWriter.artifact(
        label: "bench", entries: entries, chunks: chunks, embeddings: embeddings, dimensions: dimensions)
    embeddings = []
    let path = NSTemporaryDirectory() + "/bench-\(UUID().uuidString).zcan"
    try Data(artifact).write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let sha = artifact.withUnsafeBytes { CanonIndex.sha256($0) }
    let before = memory().resident
    let loadStart = ContinuousClock.now
    let index = try CanonIndex(contentsOf: path, sha256: sha)
    let loadTime = milliseconds(ContinuousClock.now - loadStart)
    let after = memory().resident
    print(
        String(
            format: "  artifact %.1f MiB; load (map, verify SHA-256, read dictionary) %.0f ms; resident +%.0f MiB",
            Double(artifact.count) / 1_048_576, loadTime, after - before))

    let layers = [CanonLayer(index: index)]
    let retriever = HybridRetriever()
    var lexicalTimes: [Double] = []
    var postings = 0
    var vectorTimes: [Double] = []
    var totalTimes: [Double] = []
    // Questions of 5 to 14 words (the evaluation file: 7 on average, at most 12).
    let questions = (0..<300).map { _ in generator.sentence(words: 5...14) }
    let vectors = questions.map { _ in near(topics[Int(generator.next() % UInt64(topics.count))]) }
    for (question, vector) in zip(questions, vectors) {
        let terms = TextAnalyzer.terms(question)
        for term in Set(terms) { postings += layers[0].index.documentFrequency(of: term) }
        let start = ContinuousClock.now
        _ = retriever.lexical(layers: layers, terms: terms)
        let middle = ContinuousClock.now
        _ = vector.withUnsafeBufferPointer { retriever.semantic(layers: layers, query: $0) }
        let end = ContinuousClock.now
        _ = retriever.retrieve(layers: layers, question: question, vector: vector, limit: 5)
        let whole = ContinuousClock.now
        lexicalTimes.append(milliseconds(middle - start))
        vectorTimes.append(milliseconds(end - middle))
        totalTimes.append(milliseconds(whole - end))
    }
    // What the sign-bit pass loses: its top 40 against an exhaustive 8-bit scan's.
    var agreement = 0.0
    for vector in vectors.prefix(100) {
        vector.withUnsafeBufferPointer { query in
            let fast = Set(index.nearest(query, limit: 40).map(\.chunk))
            let exact = Set(index.nearest(query, limit: 40, exhaustive: true).map(\.chunk))
            agreement += Double(fast.intersection(exact).count) / 40
        }
    }
    print(String(format: "  vector top 40 with the sign-bit pass vs exhaustive: %.1f%% the same", agreement))
    print(
        "  BM25 alone: p50 \(format(percentile(lexicalTimes, 50)))  p99 \(format(percentile(lexicalTimes, 99)))"
            + String(format: "  (%.0f postings a question on average)", Double(postings) / Double(questions.count))
    )
    print("  vector alone: p50 \(format(percentile(vectorTimes, 50)))  p99 \(format(percentile(vectorTimes, 99)))")
    print(
        "  hybrid (both + fusion): p50 \(format(percentile(totalTimes, 50)))  p99 \(format(percentile(totalTimes, 99)))"
    )
}

// MARK: - 4. POST /api/v1/query against one node, and its anchor

/// The node's `timings_ms` of every answer, by stage, collected from concurrent clients.
final class StageSamples: @unchecked Sendable {
    private let lock = NSLock()
    private var samples: [String: [Double]] = [:]
    private var order: [String] = []

    func add(_ timings: [String: Double]) {
        self.lock.withLock {
            for (stage, milliseconds) in timings {
                if self.samples[stage] == nil { self.order.append(stage) }
                self.samples[stage, default: []].append(milliseconds)
            }
        }
    }

    /// `embed 12.1 ms, …`, stages in the order first seen, `total` last.
    func summary() -> String {
        self.lock.withLock {
            let stages = self.order.filter { $0 != "total" } + (self.samples["total"] == nil ? [] : ["total"])
            return stages.map { "\($0) \(format(percentile(self.samples[$0]!, 50)))" }.joined(separator: ", ")
        }
    }
}

/// Uncached queries through one node, in rounds alternating with the issue's anchor: LiteLLM's
/// proxy passing the same number of callers' chat completions through to an instant backend
/// (nginx), when `ZAAS_LITELLM` names it (`make bench` does).
func queryBenchmark() async throws {
    let rounds = Int(environment["BENCH_QUERY_ROUNDS"] ?? "3") ?? 3
    print(
        "\n[query] one node (release, \(environment["BENCH_EMBED_THREADS"] ?? "one per core (the default)") embedding thread(s)),"
            + " demo canon as base, \(queryClients) concurrent clients, \(rounds) rounds of \(querySeconds) s")
    let directory = ConfigFixtures.temporaryDirectory()
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var anchor: (nginx: ChildProcess, litellm: ChildProcess, port: Int)?
    if let executable = environment["ZAAS_LITELLM"] {
        let (nginx, nginxPort) = try await BenchAnchors.startNginx(directory: directory)
        do {
            let (litellm, port) = try await BenchAnchors.startLiteLLM(
                executable, nginxPort: nginxPort, directory: directory)
            anchor = (nginx, litellm, port)
        } catch {
            nginx.kill()
            throw error
        }
    } else {
        print("  (ZAAS_LITELLM not set: the LiteLLM anchor is not measured; `make bench` sets it)")
    }
    defer {
        anchor?.litellm.kill()
        anchor?.nginx.kill()
    }
    var nodeSettings: [String: String] = [:]
    if let threads = environment["BENCH_EMBED_THREADS"] { nodeSettings["embeddings.threads"] = threads }
    let anchorPort = anchor?.port
    try await BenchStack.with(controlSettings: ["canon.build_threads": "2"], nodeSettings: nodeSettings) { stack in
        let node = stack.node
        try await stack.publishBaseCanon(String(decoding: try JSONEncoder().encode(demoEntries()), as: UTF8.self))
        let (_, key) = try await stack.makeTenantKey(
            slug: "bench", tier: "enterprise",
            quotaPolicy: #"{"queries_per_hour": 10000000, "tenant_queries_per_hour": 10000000}"#)
        let questions = try evaluationQuestions().map(\.question)
        // A context of its own on every request: the answer cache (exact and semantic) never
        // answers, so this measures embedding, retrieval and the answerer (the extractive answerer
        // ignores the context). The cache is measured by bench-cache.
        @Sendable func ask(_ question: String) async throws -> TestHTTP.Reply {
            let body = String(
                decoding: try JSONSerialization.data(withJSONObject: [
                    "question": question, "context": "bench request \(UUID().uuidString)",
                ]),
                as: UTF8.self)
            return try await TestHTTP.send(
                "POST", node.baseURL + "/api/v1/query", bearer: key, json: body, timeout: .seconds(30))
        }
        let ready = try await TestHTTP.waitUntil(timeout: .seconds(120)) {
            let reply = try await ask(questions[0])
            return reply.status == 200 && !((reply.json?["citations"] as? [Any]) ?? []).isEmpty
        }
        guard ready != nil else { throw TestEnvironment.SetupError(message: "node never answered with citations") }
        for question in questions { _ = try await ask(question) }  // warm

        let stages = StageSamples()
        @Sendable func zaas(_ n: Int) async throws -> Bool {
            let reply = try await ask(questions[n % questions.count])
            if let timings = reply.json?["timings_ms"] as? [String: Double] { stages.add(timings) }
            return reply.status == 200 && reply.json?["cache_hit"] as? Bool == false
        }
        @Sendable func litellm(_ n: Int) async throws -> Bool {
            guard let port = anchorPort else { return false }
            let reply = try await TestHTTP.send(
                "POST", "http://127.0.0.1:\(port)/v1/chat/completions", bearer: BenchAnchors.litellmKey,
                json: BenchAnchors.chat, timeout: .seconds(30))
            return reply.status == 200 && reply.json?["choices"] != nil
        }
        if anchorPort != nil { _ = try await closedLoop(clients: queryClients, seconds: 2, litellm) }  // warm
        var zaasRates: [Double] = []
        var anchorRates: [Double] = []
        var zaasTimes: [Double] = []
        // Processor time per request of the server process alone (the node; LiteLLM's proxy),
        // from /proc: what a request costs the server, apart from the other processes sharing
        // the cores here (the client, the control plane, PostgreSQL, Redis, nginx).
        var zaasCPU: [Double] = []
        var anchorCPU: [Double] = []
        struct Side {
            let name: String
            let isZaaS: Bool
            let request: @Sendable (Int) async throws -> Bool
            let processorSeconds: () -> Double?
        }
        for round in 1...rounds {
            // The order alternates, so neither side always runs on a machine the other just warmed.
            var sides = [
                Side(
                    name: "ZaaS uncached query", isZaaS: true, request: zaas,
                    processorSeconds: { node.processorSeconds })
            ]
            if let anchor {
                sides.append(
                    Side(
                        name: "LiteLLM pass-through", isZaaS: false, request: litellm,
                        processorSeconds: { anchor.litellm.processorSeconds }))
            }
            if round % 2 == 0 { sides.reverse() }
            for side in sides {
                let before = side.processorSeconds()
                let result = try await closedLoop(clients: queryClients, seconds: querySeconds, side.request)
                let rate = Double(result.times.count) / result.elapsed
                var cpu = ""
                if let before, let after = side.processorSeconds(), !result.times.isEmpty {
                    let perRequest = (after - before) * 1000 / Double(result.times.count)
                    cpu = String(format: ", server processor time %.2f ms a request", perRequest)
                    if side.isZaaS { zaasCPU.append(perRequest) } else { anchorCPU.append(perRequest) }
                }
                print(
                    "  round \(round), \(side.name): \(String(format: "%.1f", rate)) requests/s, p50 "
                        + "\(format(percentile(result.times, 50))), p99 \(format(percentile(result.times, 99))), "
                        + "\(result.failures) failed\(cpu)")
                if side.isZaaS {
                    zaasRates.append(rate)
                    zaasTimes += result.times
                } else {
                    anchorRates.append(rate)
                }
            }
        }
        print(
            "  ZaaS uncached queries, median of rounds: \(String(format: "%.1f", percentile(zaasRates, 50))) requests/s"
                + " (target ≥ 250); latency p50 \(format(percentile(zaasTimes, 50))), p99 \(format(percentile(zaasTimes, 99)))"
        )
        print("  the node's own timings_ms, median per stage over the ZaaS rounds: " + stages.summary())
        if !zaasCPU.isEmpty {
            let cores = ProcessInfo.processInfo.activeProcessorCount
            let perQuery = percentile(zaasCPU, 50)
            print(
                String(
                    format: "  node processor time a query, median of rounds: %.2f ms; the rate %d cores of its own"
                        + " would allow: %.0f queries/s", perQuery, cores, Double(cores) * 1000 / perQuery))
        }
        if !anchorCPU.isEmpty {
            print(
                String(
                    format: "  LiteLLM processor time a call, median of rounds: %.2f ms", percentile(anchorCPU, 50)))
        }
        if !anchorRates.isEmpty {
            let ratios = zip(zaasRates, anchorRates).map { $0 / $1 }
            print(
                "  LiteLLM pass-through, median of rounds: \(String(format: "%.1f", percentile(anchorRates, 50)))"
                    + " requests/s; ZaaS / LiteLLM per round: "
                    + ratios.map { String(format: "%.2f", $0) }.joined(separator: ", "))
        }
        if let memory = node.memory {
            print(
                String(
                    format: "  node memory: resident %.0f MiB, peak %.0f MiB",
                    Double(memory.residentKiB) / 1024, Double(memory.peakKiB) / 1024))
        }
    }
}
