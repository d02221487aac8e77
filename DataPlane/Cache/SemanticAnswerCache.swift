import Canon
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Shared
import Synchronization

/// The semantic answer cache: for a query without context, the nearest cached question of the
/// same scope (tenant, canon versions, model class, max_citations), served when its cosine
/// similarity clears the threshold and `QuestionGuard` finds nothing that changes the question.
///
/// Shared by all nodes through Redis: each scope is a stream `zaas:{t:<tenant>}:sc:<canon>:<scope>` of
/// (exact digest, normalised question, 8-bit embedding). A node keeps an index per scope in
/// memory (`SemanticCacheIndex`) and, before each lookup, reads what other nodes appended since
/// its last read (one `XRANGE`, usually empty). A hit is served from the exact cache under the
/// neighbour's digest; if that answer has expired the neighbour is forgotten. Streams are
/// trimmed to the tier's TTL and expire with it. In memory, each question expires with its
/// answer's TTL, a scope holds at most `maximumPerScope` questions (the oldest go first), space of
/// removed questions is reclaimed (`compact`) every 30 s or once a quarter of a scope is dead,
/// and indexes unused for 15 minutes leave memory; `zaas_semantic_cache_bytes` and
/// `zaas_semantic_cache_questions` export the size.
final class SemanticAnswerCache: Service, Sendable {
    struct Hit: Sendable {
        let digest: String
        let question: String
        let similarity: Float
    }

    private struct Scope {
        var index: SemanticCacheIndex
        /// The last stream entry read.
        var lastID = "0-0"
        var lastUsed: ContinuousClock.Instant
    }

    static let idleScope: Duration = .seconds(15 * 60)
    static let readBatch = 5000
    /// Questions one scope keeps in memory at most.
    let maximumPerScope: Int

    let redis: RedisClient
    let threshold: Float
    private let logger: Logger
    private let scopes = Mutex<[String: Scope]>([:])
    private let clock = ContinuousClock()
    private let bytesGauge = Gauge(label: "zaas_semantic_cache_bytes")
    private let questionsGauge = Gauge(label: "zaas_semantic_cache_questions")
    private let errors = Counter(label: "zaas_semantic_cache_errors_total")
    private let evicted = Counter(label: "zaas_semantic_cache_evicted_total")

    init(redis: RedisClient, threshold: Float, maximumPerScope: Int = 20_000, logger: Logger) {
        self.redis = redis
        self.threshold = threshold
        self.maximumPerScope = maximumPerScope
        self.logger = logger
    }

    static var nowMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    static func streamKey(_ key: QueryCacheKey) -> String {
        "zaas:{t:\(key.tenant.lowercased)}:sc:\(key.canonTag):\(key.scope)"
    }

    /// The best cached question that clears the threshold and the guard, if any.
    func lookup(
        _ key: QueryCacheKey, vector: [Float], threshold: Float? = nil, ttlSeconds: UInt32,
        isKeyTerm: (String) -> Bool
    ) async -> Hit? {
        await self.synchronize(key, dimensions: vector.count, ttlSeconds: ttlSeconds)
        let now = self.clock.now
        let wallNow = Self.nowMilliseconds
        let candidates = self.scopes.withLock { scopes -> [Hit] in
            guard let scope = scopes[Self.streamKey(key)] else { return [] }
            scopes[Self.streamKey(key)]?.lastUsed = now
            return scope.index.nearest(vector, limit: 4, now: wallNow).map {
                Hit(
                    digest: scope.index.ids[$0.index], question: scope.index.questions[$0.index],
                    similarity: $0.similarity)
            }
        }
        for candidate in candidates where candidate.similarity >= (threshold ?? self.threshold) {
            guard candidate.digest != key.digest else { continue }
            let verdict = QuestionGuard.compare(key.keptQuestion, candidate.question, isKeyTerm: isKeyTerm)
            if verdict == .compatible { return candidate }
            Counter(label: "zaas_semantic_cache_guard_refusals_total", dimensions: [("reason", verdict.rawValue)])
                .increment()
        }
        return nil
    }

    /// A neighbour whose answer has expired: never offered again by this node.
    func forget(_ digest: String, in key: QueryCacheKey) {
        self.scopes.withLock { $0[Self.streamKey(key)]?.index.remove(id: digest) }
    }

    /// Appends the question to its scope's stream (and this node's index), trimming entries
    /// older than the TTL.
    func add(_ key: QueryCacheKey, vector: [Float], ttlSeconds: UInt32) async {
        guard ttlSeconds > 0 else { return }
        let (quantised, scale) = SemanticCacheIndex.quantise(vector)
        var payload = quantised.map { UInt8(bitPattern: $0) }
        withUnsafeBytes(of: scale.bitPattern.littleEndian) { payload.append(contentsOf: $0) }
        let stream = Self.streamKey(key)
        let oldest = Int(Date().timeIntervalSince1970 * 1000) - Int(ttlSeconds) * 1000
        do {
            _ = try await self.redis.pipeline([
                [
                    "XADD", .string(stream), "MINID", "~", .int(oldest), "*", "d", .string(key.digest), "q",
                    .string(key.keptQuestion), "v", .bytes(payload),
                ],
                ["EXPIRE", .string(stream), .int(ttlSeconds)],
            ])
        } catch {
            self.errors.increment()
            self.logger.debug("semantic cache write failed", metadata: ["error": "\(error)"])
        }
        let expiresAt = Self.nowMilliseconds + Int64(ttlSeconds) * 1000
        self.withScope(stream, dimensions: vector.count) { scope in
            scope.index.add(
                id: key.digest, question: key.keptQuestion, quantised: quantised, scale: scale, expiresAt: expiresAt)
            self.bound(&scope.index)
        }
    }

    /// Changes a scope's index where it is held (creating it if new). Copying the scope out of
    /// the dictionary and back would copy its arrays on every change: megabytes per question
    /// for a scope near its cap.
    private func withScope(_ stream: String, dimensions: Int, _ body: (inout Scope) -> Void) {
        self.scopes.withLock { scopes in
            body(
                &scopes[
                    stream, default: Scope(index: SemanticCacheIndex(dimensions: dimensions), lastUsed: self.clock.now)]
            )
        }
    }

    /// The per-scope cap (oldest out first), and compaction once a quarter is dead.
    private func bound(_ index: inout SemanticCacheIndex) {
        let evicted = index.evictOldest(keeping: self.maximumPerScope)
        if evicted > 0 { self.evicted.increment(by: evicted) }
        if index.deadCount > 64, index.deadCount * 4 > index.count { index.compact() }
    }

    /// Reads what the scope's stream gained since this node last read it.
    private func synchronize(_ key: QueryCacheKey, dimensions: Int, ttlSeconds: UInt32) async {
        let stream = Self.streamKey(key)
        while true {
            let after = self.scopes.withLock { $0[stream]?.lastID ?? "0-0" }
            let reply: RESPValue
            do {
                reply = try await self.redis.send([
                    "XRANGE", .string(stream), .string("(" + after), "+", "COUNT", .int(Self.readBatch),
                ])
            } catch {
                self.errors.increment()
                self.logger.debug("semantic cache read failed", metadata: ["error": "\(error)"])
                return
            }
            let entries = reply.array ?? []
            let parsed = entries.compactMap { Self.parse($0, dimensions: dimensions) }
            guard let last = entries.last?.array?.first?.string else { return }
            self.withScope(stream, dimensions: dimensions) { scope in
                for entry in parsed {
                    // A stream id starts with the milliseconds it was added at.
                    let added = Int64(entry.id.split(separator: "-").first ?? "") ?? Self.nowMilliseconds
                    scope.index.add(
                        id: entry.digest, question: entry.question, quantised: entry.vector, scale: entry.scale,
                        expiresAt: added + Int64(ttlSeconds) * 1000)
                }
                self.bound(&scope.index)
                if Self.isAfter(last, scope.lastID) { scope.lastID = last }
            }
            if entries.count < Self.readBatch { return }
        }
    }

    private static func parse(_ entry: RESPValue, dimensions: Int) -> (
        id: String, digest: String, question: String, vector: [Int8], scale: Float
    )? {
        guard let parts = entry.array, parts.count == 2, let id = parts[0].string, let fields = parts[1].array else {
            return nil
        }
        var digest: String?
        var question: String?
        var payload: [UInt8]?
        var index = 0
        while index + 1 < fields.count {
            switch fields[index].string {
            case "d": digest = fields[index + 1].string
            case "q": question = fields[index + 1].string
            case "v": payload = fields[index + 1].bytes
            default: break
            }
            index += 2
        }
        guard let digest, let question, let payload, payload.count == dimensions + 4 else { return nil }
        let scale = payload[dimensions...].withUnsafeBytes {
            Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)))
        }
        return (id, digest, question, payload[..<dimensions].map { Int8(bitPattern: $0) }, scale)
    }

    /// Stream ids compare as (milliseconds, sequence).
    static func isAfter(_ a: String, _ b: String) -> Bool {
        func parts(_ id: String) -> (UInt64, UInt64) {
            let split = id.split(separator: "-")
            return (UInt64(split.first ?? "0") ?? 0, UInt64(split.last ?? "0") ?? 0)
        }
        let (x, y) = (parts(a), parts(b))
        return x.0 != y.0 ? x.0 > y.0 : x.1 > y.1
    }

    /// Drops indexes unused for a while; reports memory.
    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(30))
                self.evictIdle()
            }
        }
    }

    func evictIdle() {
        let now = self.clock.now
        let wallNow = Self.nowMilliseconds
        let (bytes, questions) = self.scopes.withLock { scopes in
            scopes = scopes.filter { now - $0.value.lastUsed < Self.idleScope }
            for key in Array(scopes.keys) {
                scopes[key]?.index.expire(now: wallNow)
                scopes[key]?.index.compact()
                if scopes[key]?.index.count == 0 { scopes[key] = nil }
            }
            return scopes.values.reduce((0, 0)) { ($0.0 + $1.index.byteCount, $0.1 + $1.index.count) }
        }
        self.bytesGauge.record(bytes)
        self.questionsGauge.record(questions)
    }
}
