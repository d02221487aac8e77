import CBLAS
import CKernels
import Embeddings
import Foundation
import TestSupport

// all-MiniLM-L6-v2 in process (issue 5): latency of one question, throughput of batches on one
// and two threads, the batching embedder under concurrent callers, where the time goes, and
// peak memory. Figures go to docs/benchmarks.md.

@main
struct EmbeddingsBench {
    static func main() async throws {
        try await runBenchmark()
    }
}

func peakMemoryMiB() -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
    return (Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0) / 1024
}

let questions = [
    "How does the scalar coherence field couple to gravity in the unified model?",
    "Which experiments would falsify the predicted dark matter interaction cross section?",
    "What is the role of the Lagrangian density in deriving the field equations here?",
    "Is the claimed vacuum energy suppression proven, derived, modeled or conjectural?",
]
let passage = String(
    repeating: "The Lagrangian density encodes the dynamics of every field in the theory, and its variation "
        + "yields the equations of motion; boundary terms vanish for fields that decay at infinity. ", count: 6)

func runBenchmark() async throws {
    let clock = ContinuousClock()
    let loadStart = clock.now
    let model = try SentenceModel(directory: TestEnvironment.modelDirectory)
    print(
        "model load: \(String(format: "%.0f", milliseconds(clock.now - loadStart))) ms, peak RSS \(peakMemoryMiB()) MiB"
    )
    openblas_set_num_threads(1)
    let questionTokens = questions.map { model.tokenizer.encode($0).count }
    let passageTokens = model.tokenizer.encode(passage).count
    print("question tokens: \(questionTokens), passage tokens: \(passageTokens)")

    // 1. Latency of one question, one thread.
    let sequence = model.tokenizer.encode(questions[0])
    for _ in 0..<30 { _ = model.encoder.embed([sequence]) }
    var latencies: [Double] = []
    var tokenizeTimes: [Double] = []
    let profile = BertEncoder.Profile()
    for index in 0..<500 {
        let tokenizeStart = clock.now
        let ids = model.tokenizer.encode(questions[index % questions.count])
        tokenizeTimes.append(milliseconds(clock.now - tokenizeStart))
        let start = clock.now
        _ = model.encoder.embed([ids], profile: profile)
        latencies.append(milliseconds(clock.now - start))
    }
    print(
        "one question (\(sequence.count) tokens), one thread: p50 \(String(format: "%.2f", percentile(latencies, 50))) ms"
            + "  p99 \(String(format: "%.2f", percentile(latencies, 99))) ms;"
            + " tokenizing p50 \(String(format: "%.3f", percentile(tokenizeTimes, 50))) ms")
    print(
        "  of the forward pass: Linear products \(String(format: "%.0f", 100 * milliseconds(profile.matrixProducts) / milliseconds(profile.total)))%,"
            + " attention \(String(format: "%.0f", 100 * milliseconds(profile.attention) / milliseconds(profile.total)))%,"
            + " the rest (embedding lookup, layer norms, pooling) \(String(format: "%.0f", 100 * (1 - milliseconds(profile.matrixProducts + profile.attention) / milliseconds(profile.total))))%"
    )

    // 1b. The packed kernels against OpenBLAS, alternating rounds in this run: a second copy of the
    // model loaded without packing multiplies in OpenBLAS (the path before issue 20).
    if model.encoder.usesPackedKernels {
        let kernel = zaas_gemm_isa()
        _ = zaas_gemm_set_isa(Int32(ZAAS_GEMM_GENERIC))
        let unpacked = try SentenceModel(directory: TestEnvironment.modelDirectory)
        _ = zaas_gemm_set_isa(kernel)
        var packedTimes: [Double] = []
        var blasTimes: [Double] = []
        let ids = questions.map(model.tokenizer.encode)
        for round in 0..<20 {
            for (encoder, index) in [(model.encoder, 0), (unpacked.encoder, 1)] {
                for repetition in 0..<25 {
                    let start = clock.now
                    _ = encoder.embed([ids[(round + repetition) % ids.count]])
                    (index == 0 ? { packedTimes.append($0) } : { blasTimes.append($0) })(
                        milliseconds(clock.now - start))
                }
            }
        }
        let (packed, blas) = (percentile(packedTimes, 50), percentile(blasTimes, 50))
        print(
            "one question, one thread, alternating rounds: packed kernels p50 \(String(format: "%.2f", packed)) ms,"
                + " OpenBLAS p50 \(String(format: "%.2f", blas)) ms (\(String(format: "%.2f", blas / packed))×)")
    }

    // 1c. One question on both cores (each Linear product split by columns), alternating with one.
    do {
        var oneThread: [Double] = []
        var twoThreads: [Double] = []
        let ids = questions.map(model.tokenizer.encode)
        for round in 0..<20 {
            for split in [false, true] {
                for repetition in 0..<25 {
                    let start = clock.now
                    _ = model.encoder.embed([ids[(round + repetition) % ids.count]], split: split)
                    let took = milliseconds(clock.now - start)
                    if split { twoThreads.append(took) } else { oneThread.append(took) }
                }
            }
        }
        print(
            "one question, alternating rounds: one thread p50 \(String(format: "%.2f", percentile(oneThread, 50))) ms,"
                + " both cores p50 \(String(format: "%.2f", percentile(twoThreads, 50))) ms")
    }

    // 2. Throughput at batch 32, one and two threads (each thread runs whole batches).
    func throughput(_ texts: [String], threads: Int, batches: Int) -> (perSecond: Double, gemmShare: Double) {
        let sequences = texts.map(model.tokenizer.encode)
        _ = model.encoder.embed(sequences)
        let profiles = (0..<threads).map { _ in BertEncoder.Profile() }
        let start = clock.now
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for _ in 0..<batches { _ = model.encoder.embed(sequences, profile: profiles[thread]) }
        }
        let seconds = milliseconds(clock.now - start) / 1000
        let gemm = profiles.map { milliseconds($0.matrixProducts) }.reduce(0, +)
        let total = profiles.map { milliseconds($0.total) }.reduce(0, +)
        return (Double(texts.count * batches * threads) / seconds, gemm / total)
    }
    let questionBatch = (0..<32).map { questions[$0 % questions.count] }
    let passageBatch = [String](repeating: passage, count: 32)
    for threads in [1, 2] {
        let q = throughput(questionBatch, threads: threads, batches: 20)
        let p = throughput(passageBatch, threads: threads, batches: 3)
        print(
            "batch 32, \(threads) thread(s): questions \(String(format: "%.0f", q.perSecond))/s"
                + " (matrix products \(String(format: "%.0f", q.gemmShare * 100))%),"
                + " passages \(String(format: "%.1f", p.perSecond))/s (matrix products \(String(format: "%.0f", p.gemmShare * 100))%)"
        )
    }

    // 3. The batching embedder: 64 concurrent callers, one question each, against one at a time.
    for threads in [1, 2] {
        let embedder = BatchingEmbedder(model: model, threads: threads)
        let requests = 2048
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<64 {
                group.addTask {
                    for request in stride(from: index, to: requests, by: 64) {
                        _ = try await embedder.embed([questions[request % questions.count]])
                    }
                }
            }
            try await group.waitForAll()
        }
        let concurrent = Double(requests) / (milliseconds(clock.now - start) / 1000)
        let sequentialStart = clock.now
        for request in 0..<256 { _ = try await embedder.embed([questions[request % questions.count]]) }
        let sequential = 256 / (milliseconds(clock.now - sequentialStart) / 1000)
        embedder.shutdown()
        print(
            "batching embedder, \(threads) worker thread(s): 64 concurrent callers \(String(format: "%.0f", concurrent)) questions/s;"
                + " one caller at a time \(String(format: "%.0f", sequential))/s")
    }
    print("peak RSS: \(peakMemoryMiB()) MiB")
}
