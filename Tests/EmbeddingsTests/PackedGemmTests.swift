import CKernels
import Embeddings
import Foundation
import TestSupport
import Testing

/// The packed matrix-product kernels (Common/CKernels/gemm.c) against a float64 reference, on
/// every instruction set this processor has, and the embeddings they give against the fixtures.
@Suite("packed matrix products: every kernel against a float64 reference, and the fixtures through each", .serialized)
struct PackedGemmTests {
    /// The kernels this processor can run, generic first.
    static var kernels: [Int32] {
        defer { _ = zaas_gemm_set_isa(-1) }
        return [ZAAS_GEMM_GENERIC, ZAAS_GEMM_AVX2].map { Int32($0) }.filter {
            zaas_gemm_set_isa($0) == 1
        }
    }

    /// Runs `body` with `isa` chosen for this thread only: tests running meanwhile on other threads
    /// keep the process's kernel (a shared choice once changed the router's fitted weights in the
    /// last digits when `RouterTests` embedded its questions at the same moment).
    static func withKernel<Result>(_ isa: Int32, _ body: () throws -> Result) rethrows -> Result {
        #expect(zaas_gemm_set_isa(isa) == 1)
        defer { _ = zaas_gemm_set_isa(-1) }
        return try body()
    }

    @Test(
        "a kernel chosen on one thread is not the kernel of another",
        .enabled(if: PackedGemmTests.kernels.count > 1, "this processor runs one kernel only"))
    func choicePerThread() async {
        let processKernel = zaas_gemm_isa()
        let other = processKernel == Int32(ZAAS_GEMM_GENERIC) ? Int32(ZAAS_GEMM_AVX2) : Int32(ZAAS_GEMM_GENERIC)
        await onOwnThread {
            Self.withKernel(other) {
                #expect(zaas_gemm_isa() == other)
                // A new thread of its own (not a queue's, which may run a block on this thread).
                final class Seen: @unchecked Sendable { var kernel: Int32 = -2 }
                let seen = Seen()
                let done = DispatchSemaphore(value: 0)
                Thread {
                    seen.kernel = zaas_gemm_isa()
                    done.signal()
                }.start()
                done.wait()
                #expect(seen.kernel == processKernel)
            }
            #expect(zaas_gemm_isa() == processKernel)
        }
    }

    func unit(_ random: inout SplitMix) -> Double { Double(random.next() >> 11) / Double(1 << 53) }

    static func gelu(_ x: Double) -> Double { 0.5 * x * (1 + erf(x / 2.0.squareRoot())) }

    @Test("every shape and epilogue, whole and in column ranges, within float32 rounding of float64")
    func products() async {
        await onOwnThread {
            var random = SplitMix(seed: 20)
            let kernels = Self.kernels
            #expect(kernels.contains(Int32(ZAAS_GEMM_GENERIC)), "\(kernels)")
            for (m, k, n) in [
                (1, 7, 16), (5, 384, 48), (12, 33, 32), (13, 384, 1152), (19, 1536, 384), (25, 64, 80),
                // More rows than the AVX2 path takes at a time (42 at k = 1536): 42, 42, 42, 42, 32.
                (200, 1536, 48),
            ] {
                let a = (0..<m * k).map { _ in Float(unit(&random) * 2 - 1) }
                let w = (0..<k * n).map { _ in Float(unit(&random) * 2 - 1) }
                let bias = (0..<n).map { _ in Float(unit(&random) * 2 - 1) }
                let start = (0..<m * n).map { _ in Float(unit(&random) * 2 - 1) }
                var product = [Double](repeating: 0, count: m * n)
                for r in 0..<m {
                    for c in 0..<n {
                        var sum = Double(bias[c])
                        for j in 0..<k { sum += Double(a[r * k + j]) * Double(w[j * n + c]) }
                        product[r * n + c] = sum
                    }
                }
                guard let packed = zaas_packed_new(w, k, n) else {
                    Issue.record("no packed copy for \(k)×\(n)")
                    continue
                }
                defer { zaas_packed_free(packed) }
                let tolerance = 2e-6 * Double(k).squareRoot() * 4
                for isa in kernels {
                    for epilogue in [ZAAS_EPILOGUE_STORE, ZAAS_EPILOGUE_GELU, ZAAS_EPILOGUE_ACCUMULATE].map({
                        Int32($0)
                    }) {
                        // Whole, and in two column ranges as two threads would split it.
                        let split = n / 32 * 16
                        for ranges in [[(0, n)], [(0, split), (split, n)]] {
                            var out = start
                            Self.withKernel(isa) {
                                for (begin, end) in ranges {
                                    zaas_sgemm_packed(a, k, m, k, packed, n, bias, &out, n, epilogue, begin, end)
                                }
                            }
                            let expected = product.enumerated().map { index, value in
                                switch Int(epilogue) {
                                case Int(ZAAS_EPILOGUE_GELU): Self.gelu(value)
                                case Int(ZAAS_EPILOGUE_ACCUMULATE): value + Double(start[index])
                                default: value
                                }
                            }
                            let worst = zip(out, expected).map { abs(Double($0) - $1) }.max() ?? .infinity
                            #expect(
                                worst <= tolerance, "isa \(isa), \(m)×\(k)×\(n), epilogue \(epilogue): off by \(worst)")
                        }
                    }
                }
            }
            // Widths the kernels cannot take are refused, so the encoder multiplies them with OpenBLAS.
            #expect(zaas_packed_new([Float](repeating: 1, count: 8 * 20), 8, 20) == nil)
        }
    }

    @Test(
        "the fixtures' embeddings through each kernel, alone, split over two threads and batched: cosine ≥ 0.9999, no component off by more than 1e-4"
    )
    func fixturesThroughEachKernel() async {
        await onOwnThread {
            // Loaded under the best kernel, so its weights are packed; each kernel then reads them.
            #expect(sharedModel.encoder.usesPackedKernels)
            for isa in Self.kernels {
                Self.withKernel(isa) {
                    for item in Reference.shared.items {
                        let ids = sharedModel.tokenizer.encode(item.text)
                        // One thread, and each product split over two.
                        for split in [false, true] {
                            let vector = sharedModel.encoder.embed([ids], split: split)[0]
                            let context = "isa \(isa), split \(split): \(item.text.prefix(40))"
                            #expect(cosine(vector, item.embedding) >= 0.9999, "\(context)")
                            #expect(maximumDifference(vector, item.embedding) <= 1e-4, "\(context)")
                        }
                    }
                    // A padded batch (attention masks the padding) gives what single sentences give. Not
                    // the 256-token text: padding every sentence to it would keep a core busy for
                    // seconds in plain C and starve the tests that time Redis round trips.
                    let short = Reference.shared.items.filter { $0.tokens.count <= 64 }
                    #expect(short.count >= 10)
                    let batched = sharedModel.embedNow(short.map(\.text))
                    for (item, vector) in zip(short, batched) {
                        #expect(maximumDifference(vector, item.embedding) <= 1e-4, "isa \(isa), batched")
                    }
                }
            }
        }
    }
}
