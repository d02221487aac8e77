import CBLAS
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
        /// Query, key and value projections stacked: (3·hidden) × hidden, PyTorch's [out, in].
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
                    qkvWeight: try load(attention + "self.query.weight", [hidden, hidden])
                        + load(attention + "self.key.weight", [hidden, hidden])
                        + load(attention + "self.value.weight", [hidden, hidden]),
                    qkvBias: try load(attention + "self.query.bias", [hidden])
                        + load(attention + "self.key.bias", [hidden])
                        + load(attention + "self.value.bias", [hidden]),
                    attentionOutputWeight: try load(attention + "output.dense.weight", [hidden, hidden]),
                    attentionOutputBias: try load(attention + "output.dense.bias", [hidden]),
                    attentionNormWeight: try load(attention + "output.LayerNorm.weight", [hidden]),
                    attentionNormBias: try load(attention + "output.LayerNorm.bias", [hidden]),
                    intermediateWeight: try load(base + "intermediate.dense.weight", [intermediate, hidden]),
                    intermediateBias: try load(base + "intermediate.dense.bias", [intermediate]),
                    outputWeight: try load(base + "output.dense.weight", [hidden, intermediate]),
                    outputBias: try load(base + "output.dense.bias", [hidden]),
                    outputNormWeight: try load(base + "output.LayerNorm.weight", [hidden]),
                    outputNormBias: try load(base + "output.LayerNorm.bias", [hidden])
                ))
        }
        self.layers = layers
    }

    /// Sentence embeddings of token-id sequences (each with `[CLS]`…`[SEP]`), padded to the
    /// longest in the batch and masked. Each result is L2-normalised.
    public func embed(_ sequences: [[Int32]]) -> [[Float]] {
        guard !sequences.isEmpty else { return [] }
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
        for (b, sequence) in sequences.enumerated() {
            for t in 0..<length {
                let token = t < sequence.count ? Int(sequence[t]) : 0
                let row = (b * length + t) * hidden
                for i in 0..<hidden {
                    states[row + i] =
                        self.wordEmbeddings[token * hidden + i] + self.positionEmbeddings[t * hidden + i]
                        + self.tokenTypeEmbeddings[i]
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
            Self.linear(
                states, rows: rows, inputs: hidden, weight: layer.qkvWeight, bias: layer.qkvBias,
                outputs: 3 * hidden, into: &qkv)
            for (b, sequence) in sequences.enumerated() {
                let valid = sequence.count
                for h in 0..<heads {
                    let base = b * length * 3 * hidden
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
                    // Masked softmax over the keys that are real tokens.
                    for i in 0..<length {
                        let row = i * length
                        var maximum = -Float.infinity
                        for j in 0..<valid { maximum = max(maximum, scores[row + j]) }
                        var sum: Float = 0
                        for j in 0..<valid {
                            let value = expf(scores[row + j] - maximum)
                            scores[row + j] = value
                            sum += value
                        }
                        let inverse = 1 / sum
                        for j in 0..<valid { scores[row + j] *= inverse }
                        for j in valid..<length { scores[row + j] = 0 }
                    }
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
            Self.linear(
                context, rows: rows, inputs: hidden, weight: layer.attentionOutputWeight,
                bias: layer.attentionOutputBias, outputs: hidden, into: &projected)
            for i in 0..<(rows * hidden) { states[i] += projected[i] }
            Self.layerNorm(
                &states, rows: rows, width: hidden, weight: layer.attentionNormWeight,
                bias: layer.attentionNormBias, epsilon: epsilon)

            Self.linear(
                states, rows: rows, inputs: hidden, weight: layer.intermediateWeight,
                bias: layer.intermediateBias, outputs: intermediate, into: &expanded)
            // Exact GELU: x·Φ(x) = ½x(1 + erf(x/√2)).
            let inverseRoot2: Float = 0.707_106_77
            for i in 0..<expanded.count {
                let x = expanded[i]
                expanded[i] = 0.5 * x * (1 + erff(x * inverseRoot2))
            }
            Self.linear(
                expanded, rows: rows, inputs: intermediate, weight: layer.outputWeight,
                bias: layer.outputBias, outputs: hidden, into: &projected)
            for i in 0..<(rows * hidden) { states[i] += projected[i] }
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

    /// output[rows × outputs] = input[rows × inputs] · weightᵀ + bias (PyTorch's Linear).
    static func linear(
        _ input: [Float], rows: Int, inputs: Int, weight: [Float], bias: [Float], outputs: Int,
        into output: inout [Float]
    ) {
        output.withUnsafeMutableBufferPointer { out in
            for row in 0..<rows {
                (out.baseAddress! + row * outputs).update(from: bias, count: outputs)
            }
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(outputs), Int32(inputs), 1, input,
                Int32(inputs), weight, Int32(inputs), 1, out.baseAddress!, Int32(outputs))
        }
    }

    static func layerNorm(
        _ values: inout [Float], rows: Int, width: Int, weight: [Float], bias: [Float], epsilon: Float
    ) {
        values.withUnsafeMutableBufferPointer { buffer in
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
