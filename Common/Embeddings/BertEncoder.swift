import CBLAS
import CKernels
import Foundation

/// The shape of a BERT encoder, from the model's `config.json`.
public struct BertConfiguration: Sendable, Equatable, Decodable {
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int
    public var layerNormEps: Double
    public var hiddenAct: String

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case intermediateSize = "intermediate_size"
        case vocabSize = "vocab_size"
        case maxPositionEmbeddings = "max_position_embeddings"
        case typeVocabSize = "type_vocab_size"
        case layerNormEps = "layer_norm_eps"
        case hiddenAct = "hidden_act"
    }

    /// all-MiniLM-L6-v2.
    public static let miniLM = BertConfiguration(
        hiddenSize: 384, numHiddenLayers: 6, numAttentionHeads: 12, intermediateSize: 1536, vocabSize: 30522,
        maxPositionEmbeddings: 512, typeVocabSize: 2, layerNormEps: 1e-12, hiddenAct: "gelu")
}

/// A Linear layer's weight in the layout of the packed matrix-product kernels (`zaas_sgemm_packed`,
/// Common/CKernels/gemm.c), made once at load and freed with the encoder.
final class PackedWeight: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>

    /// nil when the kernels cannot take it (outputs not a multiple of 16) or memory is short.
    init?(_ weight: [Float], inputs: Int, outputs: Int) {
        guard let pointer = zaas_packed_new(weight, inputs, outputs) else { return nil }
        self.pointer = pointer
    }

    deinit { zaas_packed_free(self.pointer) }
}

/// A Linear layer: weight stored [in, out] (PyTorch's transposed), bias, and the weight packed for
/// the kernels when the processor has AVX2 and FMA (else OpenBLAS multiplies).
struct LinearLayer: @unchecked Sendable {
    let weight: [Float]
    let bias: [Float]
    let inputs: Int
    let outputs: Int
    let packed: PackedWeight?

    init(weight: [Float], bias: [Float], inputs: Int, outputs: Int) {
        self.weight = weight
        self.bias = bias
        self.inputs = inputs
        self.outputs = outputs
        self.packed =
            zaas_gemm_isa() == Int32(ZAAS_GEMM_GENERIC) ? nil : PackedWeight(weight, inputs: inputs, outputs: outputs)
    }
}

/// The pointers of one packed product, shared by the threads that split it (each writes its own
/// columns of `output`; the call returns only when both are done).
private struct PackedCall: @unchecked Sendable {
    let input: UnsafePointer<Float>
    let weight: UnsafeMutablePointer<Float>
    let bias: UnsafePointer<Float>
    let output: UnsafeMutablePointer<Float>
}

/// A BERT encoder with mean pooling and L2 normalisation (sentence-transformers' recipe), in
/// float32. The Linear layers' products run in the packed kernels (weights laid out once at load;
/// bias, GELU and the residual sum fused into them), attention's small products in OpenBLAS. Not
/// thread-safe by itself: one call at a time per instance's caller thread; the weights are
/// immutable and shared.
public final class BertEncoder: @unchecked Sendable {
    struct Layer {
        /// Query, key and value projections side by side: hidden × (3·hidden).
        var qkv: LinearLayer
        var attentionOutput: LinearLayer
        var attentionNormWeight: [Float]
        var attentionNormBias: [Float]
        var intermediate: LinearLayer
        var output: LinearLayer
        var outputNormWeight: [Float]
        var outputNormBias: [Float]
    }

    public let configuration: BertConfiguration
    let wordEmbeddings: [Float]
    let positionEmbeddings: [Float]
    let tokenTypeEmbeddings: [Float]
    let embeddingNormWeight: [Float]
    let embeddingNormBias: [Float]
    let layers: [Layer]

    public var dimension: Int { self.configuration.hiddenSize }

    /// Whether the Linear layers run in the packed kernels (the processor has AVX2 and FMA, and
    /// the widths suit them); otherwise OpenBLAS multiplies.
    public var usesPackedKernels: Bool {
        self.layers.allSatisfy {
            [$0.qkv, $0.attentionOutput, $0.intermediate, $0.output].allSatisfy { $0.packed != nil }
        }
    }

    public init(weights: SafeTensors, configuration: BertConfiguration) throws(SafeTensorsError) {
        let hidden = configuration.hiddenSize
        let intermediate = configuration.intermediateSize
        self.configuration = configuration
        // Hugging Face checkpoints name tensors with or without the `bert.` prefix.
        let prefix = weights.tensors["bert.embeddings.word_embeddings.weight"] != nil ? "bert." : ""
        func load(_ name: String, _ shape: [Int]) throws(SafeTensorsError) -> [Float] {
            try weights.floats(prefix + name, shape: shape)
        }
        /// A Linear layer's weight, stored transposed ([in, out]): the matrix products then read it
        /// without a transpose, which OpenBLAS runs about a quarter faster at our sizes.
        func loadTransposed(_ name: String, _ shape: [Int]) throws(SafeTensorsError) -> [Float] {
            Self.transpose(try load(name, shape), rows: shape[0], columns: shape[1])
        }
        self.wordEmbeddings = try load("embeddings.word_embeddings.weight", [configuration.vocabSize, hidden])
        self.positionEmbeddings = try load(
            "embeddings.position_embeddings.weight", [configuration.maxPositionEmbeddings, hidden])
        self.tokenTypeEmbeddings = try load(
            "embeddings.token_type_embeddings.weight", [configuration.typeVocabSize, hidden])
        self.embeddingNormWeight = try load("embeddings.LayerNorm.weight", [hidden])
        self.embeddingNormBias = try load("embeddings.LayerNorm.bias", [hidden])
        var layers: [Layer] = []
        for index in 0..<configuration.numHiddenLayers {
            let base = "encoder.layer.\(index)."
            let attention = base + "attention."
            layers.append(
                Layer(
                    qkv: LinearLayer(
                        weight: Self.transpose(
                            try load(attention + "self.query.weight", [hidden, hidden])
                                + load(attention + "self.key.weight", [hidden, hidden])
                                + load(attention + "self.value.weight", [hidden, hidden]),
                            rows: 3 * hidden, columns: hidden),
                        bias: try load(attention + "self.query.bias", [hidden])
                            + load(attention + "self.key.bias", [hidden])
                            + load(attention + "self.value.bias", [hidden]),
                        inputs: hidden, outputs: 3 * hidden),
                    attentionOutput: LinearLayer(
                        weight: try loadTransposed(attention + "output.dense.weight", [hidden, hidden]),
                        bias: try load(attention + "output.dense.bias", [hidden]), inputs: hidden, outputs: hidden),
                    attentionNormWeight: try load(attention + "output.LayerNorm.weight", [hidden]),
                    attentionNormBias: try load(attention + "output.LayerNorm.bias", [hidden]),
                    intermediate: LinearLayer(
                        weight: try loadTransposed(base + "intermediate.dense.weight", [intermediate, hidden]),
                        bias: try load(base + "intermediate.dense.bias", [intermediate]), inputs: hidden,
                        outputs: intermediate),
                    output: LinearLayer(
                        weight: try loadTransposed(base + "output.dense.weight", [hidden, intermediate]),
                        bias: try load(base + "output.dense.bias", [hidden]), inputs: intermediate, outputs: hidden),
                    outputNormWeight: try load(base + "output.LayerNorm.weight", [hidden]),
                    outputNormBias: try load(base + "output.LayerNorm.bias", [hidden])
                ))
        }
        self.layers = layers
    }

    /// Where a forward pass spends its time (for benchmarks): the Linear layers' matrix products,
    /// attention (its products and softmax), and all.
    public final class Profile: @unchecked Sendable {
        public var matrixProducts: Duration = .zero
        public var attention: Duration = .zero
        public var total: Duration = .zero
        public init() {}
    }

    /// Sentence embeddings of token-id sequences (each with `[CLS]`…`[SEP]`). The sequences'
    /// tokens are laid one after another, without padding: the Linear products treat each row
    /// alone, and attention runs per sequence over its own rows, so a short question in a batch
    /// costs only its own tokens. Each result is L2-normalised. With `split`, each Linear
    /// product is shared by two threads (halves of its columns): one question's latency on an idle
    /// machine, where a single core is bound by the memory bandwidth the weights stream at.
    public func embed(_ sequences: [[Int32]], split: Bool = false, profile: Profile? = nil) -> [[Float]] {
        guard !sequences.isEmpty else { return [] }
        let clock = ContinuousClock()
        let started = clock.now
        defer { profile?.total += clock.now - started }
        /// Runs a part, adding its time to the profile's `part` when there is a profile.
        func timed(_ part: ReferenceWritableKeyPath<Profile, Duration>, _ body: () -> Void) {
            guard let profile else { return body() }
            let start = clock.now
            body()
            profile[keyPath: part] += clock.now - start
        }
        func gemm(_ body: () -> Void) { timed(\.matrixProducts, body) }
        let hidden = self.configuration.hiddenSize
        let heads = self.configuration.numAttentionHeads
        let headSize = hidden / heads
        let intermediate = self.configuration.intermediateSize
        // Where each sequence's rows begin.
        var offsets: [Int] = []
        offsets.reserveCapacity(sequences.count)
        var rows = 0
        for sequence in sequences {
            offsets.append(rows)
            rows += sequence.count
        }
        let longest = sequences.map(\.count).max()!
        // Only empty sequences: nothing to run (each would pool to the zero vector).
        guard rows > 0 else { return sequences.map { _ in [Float](repeating: 0, count: hidden) } }
        let epsilon = Float(self.configuration.layerNormEps)

        var states = [Float](repeating: 0, count: rows * hidden)
        // Embeddings: word + position + token type 0, then LayerNorm.
        states.withUnsafeMutableBufferPointer { out in
            self.wordEmbeddings.withUnsafeBufferPointer { words in
                self.positionEmbeddings.withUnsafeBufferPointer { positions in
                    self.tokenTypeEmbeddings.withUnsafeBufferPointer { types in
                        for (b, sequence) in sequences.enumerated() {
                            for (t, token) in sequence.enumerated() {
                                let row = out.baseAddress! + (offsets[b] + t) * hidden
                                let word = words.baseAddress! + Int(token) * hidden
                                let position = positions.baseAddress! + t * hidden
                                for i in 0..<hidden { row[i] = word[i] + position[i] + types[i] }
                            }
                        }
                    }
                }
            }
        }
        Self.layerNorm(
            &states, rows: rows, width: hidden, weight: self.embeddingNormWeight,
            bias: self.embeddingNormBias, epsilon: epsilon)

        var qkv = [Float](repeating: 0, count: rows * 3 * hidden)
        var context = [Float](repeating: 0, count: rows * hidden)
        var scratch = [Float](repeating: 0, count: (headSize + 1) * ((longest + 31) / 32 * 32))
        var expanded = [Float](repeating: 0, count: rows * intermediate)
        let scale = 1 / Float(headSize).squareRoot()

        for layer in self.layers {
            gemm { Self.apply(layer.qkv, to: states, rows: rows, into: &qkv, epilogue: .store, split: split) }
            // Attention per sequence, every head in one call (zaas_attention): scores against the
            // sequence's own tokens, softmax, the weighted values into its rows of `context`.
            timed(\.attention) {
                qkv.withUnsafeBufferPointer { qkvBuffer in
                    context.withUnsafeMutableBufferPointer { contextBuffer in
                        scratch.withUnsafeMutableBufferPointer { scratchBuffer in
                            for (b, sequence) in sequences.enumerated() {
                                zaas_attention(
                                    qkvBuffer.baseAddress! + offsets[b] * 3 * hidden, sequence.count, sequence.count,
                                    hidden, heads, scale, contextBuffer.baseAddress! + offsets[b] * hidden, hidden,
                                    scratchBuffer.baseAddress!)
                            }
                        }
                    }
                }
            }
            // The residual sum is the product's epilogue: states += context · W + b.
            gemm {
                Self.apply(
                    layer.attentionOutput, to: context, rows: rows, into: &states, epilogue: .accumulate, split: split)
            }
            Self.layerNorm(
                &states, rows: rows, width: hidden, weight: layer.attentionNormWeight,
                bias: layer.attentionNormBias, epsilon: epsilon)

            gemm {
                Self.apply(layer.intermediate, to: states, rows: rows, into: &expanded, epilogue: .gelu, split: split)
            }
            gemm {
                Self.apply(layer.output, to: expanded, rows: rows, into: &states, epilogue: .accumulate, split: split)
            }
            Self.layerNorm(
                &states, rows: rows, width: hidden, weight: layer.outputNormWeight,
                bias: layer.outputNormBias, epsilon: epsilon)
        }

        // Mean over the real tokens, then L2 normalisation.
        return sequences.enumerated().map { b, sequence in
            var pooled = [Float](repeating: 0, count: hidden)
            for t in 0..<sequence.count {
                let row = (offsets[b] + t) * hidden
                for i in 0..<hidden { pooled[i] += states[row + i] }
            }
            let count = Float(max(sequence.count, 1))
            var norm: Float = 0
            for i in 0..<hidden {
                pooled[i] /= count
                norm += pooled[i] * pooled[i]
            }
            let inverse = 1 / max(norm.squareRoot(), 1e-12)
            return pooled.map { $0 * inverse }
        }
    }

    /// What a Linear layer's product does with its result.
    enum Epilogue {
        /// output = input · W + b
        case store
        /// output = GELU(input · W + b)
        case gelu
        /// output += input · W + b (the residual sum)
        case accumulate

        var kernel: Int32 {
            switch self {
            case .store: Int32(ZAAS_EPILOGUE_STORE)
            case .gelu: Int32(ZAAS_EPILOGUE_GELU)
            case .accumulate: Int32(ZAAS_EPILOGUE_ACCUMULATE)
            }
        }
    }

    /// output[rows × outputs] = epilogue(input[rows × inputs] · W + b): in the packed kernels, or
    /// in OpenBLAS (bias first, then the product added to it) where the weight is not packed.
    static func apply(
        _ layer: LinearLayer, to input: [Float], rows: Int, into output: inout [Float], epilogue: Epilogue,
        split: Bool = false
    ) {
        let (inputs, outputs) = (layer.inputs, layer.outputs)
        output.withUnsafeMutableBufferPointer { out in
            if let packed = layer.packed {
                input.withUnsafeBufferPointer { source in
                    layer.bias.withUnsafeBufferPointer { bias in
                        let call = PackedCall(
                            input: source.baseAddress!, weight: packed.pointer, bias: bias.baseAddress!,
                            output: out.baseAddress!)
                        // The caller's kernel on both threads (a test may have chosen one for its thread).
                        let isa = zaas_gemm_isa()
                        @Sendable func run(_ begin: Int, _ end: Int) {
                            zaas_sgemm_packed_isa(
                                isa, call.input, inputs, rows, inputs, call.weight, outputs, call.bias, call.output,
                                outputs, epilogue.kernel, begin, end)
                        }
                        // Halves on panel boundaries (16 columns).
                        let half = outputs / 32 * 16
                        if split, half > 0 {
                            DispatchQueue.concurrentPerform(iterations: 2) { part in
                                part == 0 ? run(0, half) : run(half, outputs)
                            }
                        } else {
                            run(0, outputs)
                        }
                    }
                }
                return
            }
            for row in 0..<rows {
                let target = out.baseAddress! + row * outputs
                if epilogue == .accumulate {
                    for column in 0..<outputs { target[column] += layer.bias[column] }
                } else {
                    target.update(from: layer.bias, count: outputs)
                }
            }
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(outputs), Int32(inputs), 1, input,
                Int32(inputs), layer.weight, Int32(outputs), 1, out.baseAddress!, Int32(outputs))
            if epilogue == .gelu { Self.gelu(out) }
        }
    }

    static func layerNorm(
        _ values: inout [Float], rows: Int, width: Int, weight: [Float], bias: [Float], epsilon: Float
    ) {
        values.withUnsafeMutableBufferPointer { buffer in
            weight.withUnsafeBufferPointer { weight in
                bias.withUnsafeBufferPointer { bias in
                    for row in 0..<rows {
                        let start = buffer.baseAddress! + row * width
                        var mean: Float = 0
                        for i in 0..<width { mean += start[i] }
                        mean /= Float(width)
                        var variance: Float = 0
                        for i in 0..<width {
                            let centred = start[i] - mean
                            variance += centred * centred
                        }
                        variance /= Float(width)
                        let inverse = 1 / (variance + epsilon).squareRoot()
                        for i in 0..<width { start[i] = (start[i] - mean) * inverse * weight[i] + bias[i] }
                    }
                }
            }
        }
    }

    static func transpose(_ matrix: [Float], rows: Int, columns: Int) -> [Float] {
        var result = [Float](repeating: 0, count: matrix.count)
        for row in 0..<rows {
            for column in 0..<columns { result[column * rows + row] = matrix[row * columns + column] }
        }
        return result
    }

    /// GELU with erf: x·Φ(x) = ½x(1 + erf(x/√2)) (BERT's exact form, not the tanh approximation).
    static func gelu(_ buffer: UnsafeMutableBufferPointer<Float>) {
        for i in 0..<buffer.count {
            let x = buffer[i]
            buffer[i] = 0.5 * x * (1 + erf32(x * 0.707_106_77))
        }
    }

    /// erf in float32 as a rational function of x (odd degree-13 over even degree-8 polynomial,
    /// clamped to ±4 where erf is ±1 in float32): within 5e-7 of the true value, float32
    /// rounding level, and branch-free so the loop above vectorises. glibc's `erff` takes ~12 ns
    /// a call here, which made GELU a third of a batch's time.
    @inline(__always)
    static func erf32(_ value: Float) -> Float {
        let x = min(max(value, -4), 4)
        let x2 = x * x
        var p: Float = -2.726_142_3e-10
        p = p * x2 + 2.770_681_4e-08
        p = p * x2 - 2.101_024_0e-06
        p = p * x2 - 5.692_506_4e-05
        p = p * x2 - 7.349_906_3e-04
        p = p * x2 - 2.954_600_0e-03
        p = p * x2 - 1.609_603_3e-02
        var q: Float = -1.456_607_2e-05
        q = q * x2 - 2.133_740_6e-04
        q = q * x2 - 1.682_827_0e-03
        q = q * x2 - 7.373_329_2e-03
        q = q * x2 - 1.426_473_9e-02
        return x * p / q
    }
}
