import CBLAS
import Foundation
import Synchronization

/// Sentence embeddings, as the rest of the system uses them (retrieval, the semantic cache).
public protocol Embedder: Sendable {
    /// Length of every vector.
    var dimension: Int { get }
    /// One L2-normalised vector per text, in order.
    func embed(_ texts: [String]) async throws -> [[Float]]
}

/// A sentence-transformers model folder: `config.json`, `vocab.txt`, `tokenizer_config.json`,
/// `1_Pooling/config.json` and `model.safetensors`, checked against each other when loaded.
public struct SentenceModel: Sendable {
    public let directory: String
    public let configuration: BertConfiguration
    public let tokenizer: WordPieceTokenizer
    public let encoder: BertEncoder
    /// sentence-transformers' `max_seq_length` for this model.
    public static let maximumSequenceLength = 256

    public init(directory: String) throws(ModelLoadError) {
        self.directory = directory
        func read(_ name: String) throws(ModelLoadError) -> Data {
            guard let data = FileManager.default.contents(atPath: directory + "/" + name) else {
                throw .missingFile(directory + "/" + name)
            }
            return data
        }
        do {
            self.configuration = try JSONDecoder().decode(BertConfiguration.self, from: try read("config.json"))
        } catch let error as ModelLoadError {
            throw error
        } catch {
            throw .invalid("config.json is not a BERT configuration: \(error)")
        }
        guard self.configuration.hiddenAct == "gelu",
            self.configuration.hiddenSize % self.configuration.numAttentionHeads == 0
        else { throw .invalid("config.json: only BERT with exact GELU and whole attention heads is supported") }
        let tokenizerSettings =
            (try? JSONSerialization.jsonObject(with: try read("tokenizer_config.json"))) as? [String: Any] ?? [:]
        guard tokenizerSettings["do_lower_case"] as? Bool == true else {
            throw .invalid("tokenizer_config.json: an uncased (do_lower_case) tokenizer is required")
        }
        let pooling = (try? JSONSerialization.jsonObject(with: try read("1_Pooling/config.json"))) as? [String: Any]
        guard pooling?["pooling_mode_mean_tokens"] as? Bool == true else {
            throw .invalid("1_Pooling/config.json: mean pooling is required")
        }
        do {
            self.tokenizer = try WordPieceTokenizer(
                vocabularyFile: directory + "/vocab.txt", maximumLength: Self.maximumSequenceLength)
        } catch {
            throw .invalid("\(error)")
        }
        guard self.tokenizer.tokens.count == self.configuration.vocabSize else {
            throw .invalid(
                "vocab.txt has \(self.tokenizer.tokens.count) tokens, config.json says \(self.configuration.vocabSize)")
        }
        do {
            let weights = try SafeTensors(path: directory + "/model.safetensors")
            self.encoder = try BertEncoder(weights: weights, configuration: self.configuration)
        } catch {
            throw .invalid("\(error)")
        }
    }

    /// Embeds in the calling thread.
    public func embedNow(_ texts: [String]) -> [[Float]] {
        self.encoder.embed(texts.map(self.tokenizer.encode))
    }
}

public enum ModelLoadError: Error, Equatable, CustomStringConvertible {
    case missingFile(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .missingFile(let path): "model file \(path) is missing"
        case .invalid(let why): "model is invalid: \(why)"
        }
    }
}

/// The in-process embedder: its own worker threads (never a NIO event loop or the cooperative
/// pool), and concurrent callers batched — requests that arrive within `batchWindow` of each
/// other run as one forward pass of up to `maximumBatch` sentences.
public final class BatchingEmbedder: Embedder, @unchecked Sendable {
    struct Job {
        let sequences: [[Int32]]
        let continuation: CheckedContinuation<[[Float]], any Error>
        let queuedAt: ContinuousClock.Instant
    }

    public let model: SentenceModel
    public var dimension: Int { self.model.encoder.dimension }
    let batchWindow: Duration
    let maximumBatch: Int
    /// At most this many sentences wait; past it a caller is refused at once (`overloaded`).
    let maximumQueued: Int
    /// A job that waited longer than this is refused (`timedOut`) rather than run late.
    let maximumWait: Duration
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var queuedSequences = 0
    private var stopped = false
    private var threads: [Thread] = []

    /// - Parameters:
    ///   - threads: worker threads, each running whole batches (BLAS itself single-threaded).
    public init(
        model: SentenceModel, threads: Int = 1, batchWindow: Duration = .microseconds(500), maximumBatch: Int = 32,
        maximumQueued: Int = 1024, maximumWait: Duration = .seconds(5)
    ) {
        self.model = model
        self.batchWindow = batchWindow
        self.maximumBatch = maximumBatch
        self.maximumQueued = maximumQueued
        self.maximumWait = maximumWait
        openblas_set_num_threads(1)
        for index in 0..<max(1, threads) {
            // The workers hold the embedder until `shutdown()` ends them.
            let thread = Thread { self.work() }
            thread.name = "zaas-embed-\(index)"
            thread.stackSize = 8 << 20
            self.threads.append(thread)
            thread.start()
        }
    }

    /// Stops the workers (call it when done: they keep the embedder alive until then); callers
    /// waiting get `EmbedderError.shutDown`.
    public func shutdown() {
        self.condition.lock()
        self.stopped = true
        let pending = self.queue
        self.queue.removeAll()
        self.queuedSequences = 0
        self.condition.broadcast()
        self.condition.unlock()
        for job in pending { job.continuation.resume(throwing: EmbedderError.shutDown) }
    }

    public func embed(_ texts: [String]) async throws -> [[Float]] {
        guard !texts.isEmpty else { return [] }
        let sequences = texts.map(self.model.tokenizer.encode)
        return try await withCheckedThrowingContinuation { continuation in
            self.condition.lock()
            if self.stopped {
                self.condition.unlock()
                continuation.resume(throwing: EmbedderError.shutDown)
                return
            }
            guard self.queuedSequences + sequences.count <= max(self.maximumQueued, sequences.count) else {
                self.condition.unlock()
                continuation.resume(throwing: EmbedderError.overloaded)
                return
            }
            self.queue.append(Job(sequences: sequences, continuation: continuation, queuedAt: .now))
            self.queuedSequences += sequences.count
            self.condition.signal()
            self.condition.unlock()
        }
    }

    private func work() {
        while true {
            self.condition.lock()
            while self.queue.isEmpty && !self.stopped { self.condition.wait() }
            if self.stopped {
                self.condition.unlock()
                return
            }
            // Collect for a short window, or until a batch is full.
            let deadline = Date().addingTimeInterval(
                Double(self.batchWindow.components.attoseconds) / 1e18
                    + Double(self.batchWindow.components.seconds))
            while self.queue.reduce(0, { $0 + $1.sequences.count }) < self.maximumBatch && !self.stopped {
                if !self.condition.wait(until: deadline) { break }
            }
            var jobs: [Job] = []
            var expired: [Job] = []
            var count = 0
            let now = ContinuousClock.now
            while let job = self.queue.first, jobs.isEmpty || count + job.sequences.count <= self.maximumBatch {
                self.queue.removeFirst()
                self.queuedSequences -= job.sequences.count
                if job.queuedAt.duration(to: now) > self.maximumWait {
                    expired.append(job)
                } else {
                    jobs.append(job)
                    count += job.sequences.count
                }
            }
            self.condition.unlock()
            for job in expired { job.continuation.resume(throwing: EmbedderError.timedOut) }
            if !jobs.isEmpty { self.run(jobs) }
        }
    }

    private func run(_ jobs: [Job]) {
        // Forward passes of up to `maximumBatch` sentences in arrival order: a pass lays its
        // sentences' tokens one after another without padding, so grouping by length gains nothing.
        let sequences = jobs.flatMap(\.sequences)
        var vectors: [[Float]] = []
        vectors.reserveCapacity(sequences.count)
        for start in stride(from: 0, to: sequences.count, by: self.maximumBatch) {
            vectors += self.model.encoder.embed(
                Array(sequences[start..<min(start + self.maximumBatch, sequences.count)]))
        }
        var next = 0
        for job in jobs {
            job.continuation.resume(returning: Array(vectors[next..<next + job.sequences.count]))
            next += job.sequences.count
        }
    }
}

public enum EmbedderError: Error, Equatable {
    case shutDown
    /// The queue is full: the node is past what it can embed in time.
    case overloaded
    /// The job waited longer than the embedder's `maximumWait`.
    case timedOut
}
