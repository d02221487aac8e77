import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization

/// The answer cache's second tier: answers kept in PostgreSQL through the control plane, so a
/// Redis restart or eviction does not lose them.
///
/// Writes never touch the request path: answers queue in memory (deduplicated by key, at most
/// `maximumPending`; beyond that new ones are dropped and counted) and go to the control plane in
/// batches every `interval`; a failed batch stays queued for the next round. Reads happen on a
/// Redis miss, bounded by the control-plane timeout, and are skipped while the control plane is
/// known to be unreachable.
final class PersistentAnswerCache: Service, Sendable {
    struct Entry: Sendable {
        let key: QueryCacheKey
        let answer: StoredAnswer
        /// The question's embedding, for the semantic cache; nil for queries with context.
        let embedding: [Float]?
        let ttlSeconds: UInt32
    }

    static let maximumPending = 10_000
    static let batchSize = 200

    private let control: ControlPlaneClient
    /// How often queued answers go out.
    private let interval: Duration
    private let isReachable: @Sendable () -> Bool
    private let logger: Logger
    private let pending = Mutex<[String: Entry]>([:])
    private let stored = Counter(label: "zaas_persistent_cache_writes_total", dimensions: [("outcome", "stored")])
    private let dropped = Counter(label: "zaas_persistent_cache_writes_total", dimensions: [("outcome", "dropped")])
    private let failed = Counter(label: "zaas_persistent_cache_writes_total", dimensions: [("outcome", "failed")])
    private let lookupErrors = Counter(label: "zaas_persistent_cache_lookup_errors_total")

    init(
        control: ControlPlaneClient, interval: Duration = .milliseconds(250),
        isReachable: @escaping @Sendable () -> Bool, logger: Logger
    ) {
        self.control = control
        self.interval = interval
        self.isReachable = isReachable
        self.logger = logger
    }

    var pendingCount: Int { self.pending.withLock { $0.count } }

    func enqueue(_ entry: Entry) {
        let accepted = self.pending.withLock { pending in
            guard pending.count < Self.maximumPending || pending[entry.key.digest] != nil else { return false }
            pending[entry.key.digest] = entry
            return true
        }
        if !accepted { self.dropped.increment() }
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var pause = self.interval
            while !Task.isCancelled {
                try await Task.sleep(for: pause)
                // After a failure, wait longer (doubling, up to 10 s) before the next try.
                pause = await self.flush() ? self.interval : min(pause * 2, .seconds(10))
            }
        }
        // What was answered since the last batch goes out before the node stops.
        await self.flush()
    }

    /// Sends everything queued, in batches; a failed batch goes back in the queue. False when
    /// a batch failed.
    @discardableResult
    func flush() async -> Bool {
        while true {
            let batch = self.pending.withLock { pending -> [Entry] in
                let taken = Array(pending.values.prefix(Self.batchSize))
                for entry in taken { pending.removeValue(forKey: entry.key.digest) }
                return taken
            }
            guard !batch.isEmpty else { return true }
            do {
                try await self.send(batch)
                self.stored.increment(by: batch.count)
            } catch {
                self.failed.increment(by: batch.count)
                self.logger.warning(
                    "cannot store answers in the persistent cache; keeping them for the next round",
                    metadata: ["error": "\(error)", "answers": "\(batch.count)"])
                self.pending.withLock { pending in
                    for entry in batch where pending[entry.key.digest] == nil && pending.count < Self.maximumPending {
                        pending[entry.key.digest] = entry
                    }
                }
                return false
            }
        }
    }

    private func send(_ batch: [Entry]) async throws {
        let records = batch.map { entry in
            AnswerCacheRecord(
                tenantId: entry.key.tenant, digest: entry.key.digest, scope: entry.key.scope,
                question: entry.key.question, embedding: entry.embedding.map(Self.encode),
                answer: String(decoding: entry.answer.json, as: UTF8.self), ttlSeconds: Int(entry.ttlSeconds))
        }
        try await self.control.store(records)
    }

    /// An unexpired answer and the seconds it has left; nil on a miss or any failure.
    func lookup(_ key: QueryCacheKey) async -> (StoredAnswer, ttlSeconds: UInt32)? {
        guard self.isReachable() else { return nil }
        do {
            guard let body = try await self.control.cachedAnswer(tenant: key.tenant, digest: key.digest) else {
                return nil
            }
            struct Found: Decodable {
                let ttlSeconds: UInt32
                let answer: CachedAnswer
                enum CodingKeys: String, CodingKey {
                    case answer
                    case ttlSeconds = "ttl_seconds"
                }
            }
            let found = try StoredAnswer.decoder.decode(Found.self, from: Data(body.readableBytesView))
            return (try StoredAnswer(found.answer), found.ttlSeconds)
        } catch {
            self.lookupErrors.increment()
            self.logger.debug("persistent cache lookup failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Little-endian float32, base64.
    static func encode(_ vector: [Float]) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(vector.count * 4)
        for value in vector { withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        return Data(bytes).base64EncodedString()
    }
}
