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

/// A BERT encoder with mean pooling and L2 normalisation (sentence-transformers' recipe), in
/// float32, with the matrix products in OpenBLAS. Not thread-safe by itself: one call at a time
/// per instance's caller thread; the weights are immutable and shared.
public final class BertEncoder: @unchecked Sendable {
    struct Layer {
        /// Query, key and value projections side by side, stored [in, out]: hidden × (3·hidden).
        /// Every Linear weight below is stored [in, out] (PyTorch's transposed).
        var qkvWeight: [Float]
        var qkvBias: [Float]
        var attentionOutputWeight: [Float]
        var attentionOutputBias: [Float]
        var attentionNormWeight: [Float]
        var attentionNormBias: [Float]
        var intermediateWeight: [Float]
        var intermediateBias: [Float]
        var outputWeight: [Float]
        var outputBias: [Float]
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
                    qkvWeight: Self.transpose(
                        try load(attention + "self.query.weight", [hidden, hidden])
                            + load(attention + "self.key.weight", [hidden, hidden])
                            + load(attention + "self.value.weight", [hidden, hidden]),
                        rows: 3 * hidden, columns: hidden),
                    qkvBias: try load(attention + "self.query.bias", [hidden])
                        + load(attention + "self.key.bias", [hidden])
                        + load(attention + "self.value.bias", [hidden]),
                    attentionOutputWeight: try loadTransposed(attention + "output.dense.weight", [hidden, hidden]),
                    attentionOutputBias: try load(attention + "output.dense.bias", [hidden]),
                    attentionNormWeight: try load(attention + "output.LayerNorm.weight", [hidden]),
                    attentionNormBias: try load(attention + "output.LayerNorm.bias", [hidden]),
                    intermediateWeight: try loadTransposed(base + "intermediate.dense.weight", [intermediate, hidden]),
                    intermediateBias: try load(base + "intermediate.dense.bias", [intermediate]),
                    outputWeight: try loadTransposed(base + "output.dense.weight", [hidden, intermediate]),
                    outputBias: try load(base + "output.dense.bias", [hidden]),
                    outputNormWeight: try load(base + "output.LayerNorm.weight", [hidden]),
                    outputNormBias: try load(base + "output.LayerNorm.bias", [hidden])
                ))
        }
        self.layers = layers
    }

    /// Where a forward pass spends its time (for benchmarks): the BLAS matrix products, and all.
    public final class Profile: @unchecked Sendable {
        public var matrixProducts: Duration = .zero
        public var total: Duration = .zero
        public init() {}
    }

    /// Sentence embeddings of token-id sequences (each with `[CLS]`…`[SEP]`), padded to the
    /// longest in the batch and masked. Each result is L2-normalised.
    public func embed(_ sequences: [[Int32]], profile: Profile? = nil) -> [[Float]] {
        guard !sequences.isEmpty else { return [] }
        let clock = ContinuousClock()
        let started = clock.now
        defer { profile?.total += clock.now - started }
        /// Runs a BLAS call, adding its time to the profile when there is one.
        func gemm(_ body: () -> Void) {
            guard let profile else { return body() }
            let start = clock.now
            body()
            profile.matrixProducts += clock.now - start
        }
        let hidden = self.configuration.hiddenSize
        let heads = self.configuration.numAttentionHeads
        let headSize = hidden / heads
        let intermediate = self.configuration.intermediateSize
        let batch = sequences.count
        let length = sequences.map(\.count).max()!
        let rows = batch * length
        let epsilon = Float(self.configuration.layerNormEps)

        var states = [Float](repeating: 0, count: rows * hidden)
        // Embeddings: word + position + token type 0, then LayerNorm.
        states.withUnsafeMutableBufferPointer { out in
            self.wordEmbeddings.withUnsafeBufferPointer { words in
                self.positionEmbeddings.withUnsafeBufferPointer { positions in
                    self.tokenTypeEmbeddings.withUnsafeBufferPointer { types in
                        for (b, sequence) in sequences.enumerated() {
                            for t in 0..<length {
                                let token = t < sequence.count ? Int(sequence[t]) : 0
                                let row = out.baseAddress! + (b * length + t) * hidden
                                let word = words.baseAddress! + token * hidden
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
        var projected = [Float](repeating: 0, count: rows * hidden)
        var scores = [Float](repeating: 0, count: length * length)
        var expanded = [Float](repeating: 0, count: rows * intermediate)
        let scale = 1 / Float(headSize).squareRoot()

        for layer in self.layers {
            gemm {
                Self.linear(
                    states, rows: rows, inputs: hidden, weight: layer.qkvWeight, bias: layer.qkvBias,
                    outputs: 3 * hidden, into: &qkv)
            }
            for (b, sequence) in sequences.enumerated() {
                let valid = sequence.count
                for h in 0..<heads {
                    let base = b * length * 3 * hidden
                    gemm {
                        qkv.withUnsafeBufferPointer { qkvBuffer in
                            scores.withUnsafeMutableBufferPointer { scoreBuffer in
                                let q = qkvBuffer.baseAddress! + base + h * headSize
                                let k = q + hidden
                                // scores = Q·Kᵀ / √d
                                cblas_sgemm(
                                    CblasRowMajor, CblasNoTrans, CblasTrans, Int32(length), Int32(length),
                                    Int32(headSize), scale, q, Int32(3 * hidden), k, Int32(3 * hidden), 0,
                                    scoreBuffer.baseAddress!, Int32(length))
                            }
                        }
                    }
                    Self.maskedSoftmax(&scores, rows: length, valid: valid)
                    gemm {
                        qkv.withUnsafeBufferPointer { qkvBuffer in
                            scores.withUnsafeBufferPointer { scoreBuffer in
                                context.withUnsafeMutableBufferPointer { contextBuffer in
                                    let v = qkvBuffer.baseAddress! + base + 2 * hidden + h * headSize
                                    // context = P·V, written into this head's columns.
                                    cblas_sgemm(
                                        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(length), Int32(headSize),
                                        Int32(length), 1, scoreBuffer.baseAddress!, Int32(length), v,
                                        Int32(3 * hidden), 0,
                                        contextBuffer.baseAddress! + b * length * hidden + h * headSize, Int32(hidden))
                                }
                            }
                        }
                    }
                }
            }
            gemm {
                Self.linear(
                    context, rows: rows, inputs: hidden, weight: layer.attentionOutputWeight,
                    bias: layer.attentionOutputBias, outputs: hidden, into: &projected)
            }
            Self.add(projected, into: &states)
            Self.layerNorm(
                &states, rows: rows, width: hidden, weight: layer.attentionNormWeight,
                bias: layer.attentionNormBias, epsilon: epsilon)

            gemm {
                Self.linear(
                    states, rows: rows, inputs: hidden, weight: layer.intermediateWeight,
                    bias: layer.intermediateBias, outputs: intermediate, into: &expanded)
            }
            Self.gelu(&expanded)
            gemm {
                Self.linear(
                    expanded, rows: rows, inputs: intermediate, weight: layer.outputWeight,
                    bias: layer.outputBias, outputs: hidden, into: &projected)
            }
            Self.add(projected, into: &states)
            Self.layerNorm(
                &states, rows: rows, width: hidden, weight: layer.outputNormWeight,
                bias: layer.outputNormBias, epsilon: epsilon)
        }

        // Mean over the real tokens, then L2 normalisation.
        return sequences.enumerated().map { b, sequence in
            var pooled = [Float](repeating: 0, count: hidden)
            for t in 0..<sequence.count {
                let row = (b * length + t) * hidden
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

    /// output[rows × outputs] = input[rows × inputs] · weight + bias, with `weight` stored
    /// [inputs, outputs] (PyTorch's Linear, transposed once at load).
    static func linear(
        _ input: [Float], rows: Int, inputs: Int, weight: [Float], bias: [Float], outputs: Int,
        into output: inout [Float]
    ) {
        output.withUnsafeMutableBufferPointer { out in
            for row in 0..<rows {
                (out.baseAddress! + row * outputs).update(from: bias, count: outputs)
            }
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(outputs), Int32(inputs), 1, input,
                Int32(inputs), weight, Int32(outputs), 1, out.baseAddress!, Int32(outputs))
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

    static func add(_ values: [Float], into target: inout [Float]) {
        values.withUnsafeBufferPointer { source in
            target.withUnsafeMutableBufferPointer { destination in
                for i in 0..<destination.count { destination[i] += source[i] }
            }
        }
    }

    /// Softmax of each row over its first `valid` columns (the real tokens); the rest become 0.
    /// Runs in C (`zaas_masked_softmax`), where the exponential vectorises.
    static func maskedSoftmax(_ scores: inout [Float], rows: Int, valid: Int) {
        let width = scores.count / rows
        scores.withUnsafeMutableBufferPointer { buffer in
            zaas_masked_softmax(buffer.baseAddress, rows, width, valid)
        }
    }

    /// GELU with erf: x·Φ(x) = ½x(1 + erf(x/√2)) (BERT's exact form, not the tanh approximation).
    static func gelu(_ values: inout [Float]) {
        values.withUnsafeMutableBufferPointer { buffer in
            for i in 0..<buffer.count {
                let x = buffer[i]
                buffer[i] = 0.5 * x * (1 + erf32(x * 0.707_106_77))
            }
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
