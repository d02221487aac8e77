import Common
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import PostgresNIO
import ServiceLifecycle

/// The persistent answer cache on the internal API (node credential):
///
/// - `POST /internal/v1/cache`: a batch of answers nodes computed, stored with their TTL.
/// - `GET /internal/v1/cache/{tenant}/{digest}`: an unexpired answer and the seconds it has
///   left, or 404. Nodes ask on a Redis miss and put what they get back into Redis.
struct InternalCacheController: Sendable {
    static let maximumBatch = 500
    static let maximumAnswerBytes = 256 * 1024
    static let maximumBody = 16 << 20

    let credential: NodeCredential
    let client: PostgresClient
    let stored = Counter(label: "zaas_answer_cache_stored_total")

    struct Batch: Decodable {
        let entries: [AnswerCacheRecord]
    }

    func addRoutes(to router: Router<some RequestContext>) {
        let routes = router.group("/internal/v1/cache")
        routes.post { request, context in
            try self.credential.authenticate(request)
            let batch = try await StrictJSON.decode(
                Batch.self, from: request, context: context, allowedFields: ["entries"], maximumBytes: Self.maximumBody)
            try Self.validate(batch.entries)
            let count = try await self.store(batch.entries, logger: context.logger)
            self.stored.increment(by: count)
            return Response(status: .noContent)
        }
        routes.get("{tenant}/{digest}") { request, context in
            try self.credential.authenticate(request)
            guard let tenant = context.parameters.get("tenant").flatMap(UUID.init(uuidString:)),
                let digest = context.parameters.get("digest"), Self.isHex(digest, length: 64)
            else { throw Problem.notFound() }
            let rows = try await self.client.query(
                "SELECT answer::text, ttl_seconds FROM zaas_answer_cache_get(\(tenant), \(digest))",
                logger: context.logger)
            for try await (answer, ttl) in rows.decode((String, Int32).self) {
                var body = ByteBuffer(string: #"{"ttl_seconds":\#(ttl),"answer":"#)
                body.writeString(answer)
                body.writeString("}")
                return Response(
                    status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                    body: .init(byteBuffer: body))
            }
            throw Problem.notFound()
        }
    }

    static func validate(_ entries: [AnswerCacheRecord]) throws {
        var errors: [FieldError] = []
        if entries.count > Self.maximumBatch {
            errors.append(FieldError("entries", "at most \(Self.maximumBatch) per batch"))
        }
        for (index, entry) in entries.enumerated() where errors.count < 20 {
            let field = "entries[\(index)]"
            if !Self.isHex(entry.digest, length: 64) { errors.append(FieldError(field + ".digest", "64 hex digits")) }
            if !Self.isHex(entry.scope, length: 32) { errors.append(FieldError(field + ".scope", "32 hex digits")) }
            if entry.question.isEmpty || entry.question.utf8.count > 20000 {
                errors.append(FieldError(field + ".question", "1 to 20000 bytes"))
            }
            if let embedding = entry.embedding, (Data(base64Encoded: embedding)?.count ?? 16385) > 16384 {
                errors.append(FieldError(field + ".embedding", "base64 of at most 16384 bytes"))
            }
            if entry.answer.utf8.count > Self.maximumAnswerBytes
                || !((try? JSONSerialization.jsonObject(with: Data(entry.answer.utf8))) is [String: Any])
            {
                errors.append(FieldError(field + ".answer", "a JSON object of at most 256 KiB, as a string"))
            }
            if !(1...86_400).contains(entry.ttlSeconds) {
                errors.append(FieldError(field + ".ttl_seconds", "1 to 86400"))
            }
        }
        guard errors.isEmpty else { throw Problem.validation(errors) }
    }

    static func isHex(_ text: String, length: Int) -> Bool {
        text.utf8.count == length && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    func store(_ entries: [AnswerCacheRecord], logger: Logger) async throws -> Int {
        guard !entries.isEmpty else { return 0 }
        let rows = try await self.client.query(
            """
            SELECT zaas_answer_cache_put(
                \(entries.map(\.tenantId)), \(entries.map(\.digest)), \(entries.map(\.scope)),
                \(entries.map(\.question)), \(entries.map { $0.embedding ?? "" }), \(entries.map(\.answer)),
                \(entries.map { Int32($0.ttlSeconds) }))
            """,
            logger: logger)
        var count = 0
        for try await stored in rows.decode(Int32.self) { count = Int(stored) }
        return count
    }
}

/// Removes expired answers and answers of canon versions since replaced, in the background.
struct AnswerCacheSweeper: Service {
    let client: PostgresClient
    let interval: Duration
    let logger: Logger
    let removed = Counter(label: "zaas_answer_cache_swept_total")
    static let batch: Int32 = 5000

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.interval)
                await self.sweep()
            }
        }
    }

    /// Deletes in batches until a batch comes back short.
    @discardableResult
    func sweep() async -> Int {
        var total = 0
        do {
            while true {
                let rows = try await self.client.query(
                    "SELECT zaas_answer_cache_sweep(\(Self.batch))", logger: self.logger)
                var removed: Int32 = 0
                for try await count in rows.decode(Int32.self) { removed = count }
                total += Int(removed)
                if removed < Self.batch { break }
            }
        } catch {
            self.logger.warning("answer cache sweep failed", metadata: ["error": "\(String(reflecting: error))"])
        }
        if total > 0 { self.removed.increment(by: total) }
        return total
    }
}
