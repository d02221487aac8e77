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
/// batches every `interval`. What the control plane cannot take for a transient reason (it or
/// PostgreSQL is down) stays queued for the next round; what it refuses for good (checked here
/// first with the same rules, `AnswerCacheRecord.problems`) is dropped and counted, so one bad
/// answer never holds up the others. Reads happen on a Redis miss, bounded by the control-plane
/// timeout, and are skipped while the control plane is known to be unreachable.
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
    /// Answers waiting to go out, by digest.
    private let pending = Mutex<[String: Entry]>([:])
    private let stored = Counter(label: "zaas_persistent_cache_writes_total", dimensions: [("outcome", "stored")])
    private let dropped = Counter(label: "zaas_persistent_cache_writes_total", dimensions: [("outcome", "dropped")])
    private let refused = Counter(label: "zaas_persistent_cache_writes_total", dimensions: [("outcome", "refused")])
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

    /// Queues an answer (on the query path: a dictionary insert, nothing more).
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

    /// Sends everything queued, in batches. Each answer is turned into its record and checked
    /// here, off the request path: what the control plane would refuse for good is dropped
    /// without asking. A batch that fails for a transient reason goes back in the queue and ends
    /// this round (false); entries the control plane refuses for good are dropped.
    @discardableResult
    func flush() async -> Bool {
        while true {
            let taken = self.pending.withLock { pending -> [Entry] in
                let taken = Array(pending.values.prefix(Self.batchSize))
                for entry in taken { pending.removeValue(forKey: entry.key.digest) }
                return taken
            }
            guard !taken.isEmpty else { return true }
            var entries: [Entry] = []
            var batch: [AnswerCacheRecord] = []
            for entry in taken {
                let record = Self.record(entry)
                let problems = record.problems()
                guard problems.isEmpty else {
                    self.refused.increment()
                    self.logger.debug(
                        "answer not kept in the persistent cache", metadata: ["problems": "\(problems.map(\.message))"])
                    continue
                }
                entries.append(entry)
                batch.append(record)
            }
            guard !batch.isEmpty else { continue }
            do {
                let reply = try await self.control.store(batch)
                self.stored.increment(by: batch.count - reply.refused.count)
                if let first = reply.refused.first {
                    self.refused.increment(by: reply.refused.count)
                    self.logger.warning(
                        "the control plane refused answers for the persistent cache; dropped",
                        metadata: ["refused": "\(reply.refused.count)", "first": "\(first.reason)"])
                }
            } catch let error as ControlPlaneError where error.isPermanent {
                self.refused.increment(by: batch.count)
                self.logger.error(
                    "the control plane refused a batch for the persistent cache; dropped",
                    metadata: ["error": "\(error)", "answers": "\(batch.count)"])
            } catch {
                self.failed.increment(by: batch.count)
                self.logger.warning(
                    "cannot store answers in the persistent cache; keeping them for the next round",
                    metadata: ["error": "\(error)", "answers": "\(batch.count)"])
                self.pending.withLock { pending in
                    for entry in entries where pending[entry.key.digest] == nil && pending.count < Self.maximumPending {
                        pending[entry.key.digest] = entry
                    }
                }
                return false
            }
        }
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

    /// The wire form of a queued answer.
    static func record(_ entry: Entry) -> AnswerCacheRecord {
        AnswerCacheRecord(
            tenantId: entry.key.tenant, digest: entry.key.digest, scope: entry.key.scope,
            question: entry.key.keptQuestion, embedding: entry.embedding.map(Self.encode),
            answer: String(decoding: entry.answer.json, as: UTF8.self), ttlSeconds: Int(entry.ttlSeconds))
    }

    /// Little-endian float32, base64.
    static func encode(_ vector: [Float]) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(vector.count * 4)
        for value in vector { withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        return Data(bytes).base64EncodedString()
    }
}
