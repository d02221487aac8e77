import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Shared

/// The persistent answer cache on the internal API:
///
/// - `POST /internal/v1/cache`: a batch of answers nodes computed, stored with their TTL.
/// - `GET /internal/v1/cache/{tenant}/{digest}`: an unexpired answer and the seconds it has
///   left, or 404. Nodes ask on a Redis miss and put what they get back into Redis.
struct AnswerCacheController: Sendable {
    static let maximumBatch = 500
    static let maximumAnswerBytes = 256 * 1024
    static let maximumBody = 16 << 20

    let store: AnswerCacheStore
    let stored = Counter(label: "zaas_answer_cache_stored_total")

    struct Batch: Decodable {
        let entries: [AnswerCacheRecord]
    }

    func addRoutes(to group: RouterGroup<some RequestContext>) {
        group.post(RouterPath(InternalAPI.cache)) { request, context in
            let batch = try await StrictJSON.decode(
                Batch.self, from: request, context: context, allowedFields: ["entries"], maximumBytes: Self.maximumBody)
            try Self.validate(batch.entries)
            let count = try await self.store.put(batch.entries, logger: context.logger)
            self.stored.increment(by: count)
            return Response(status: .noContent)
        }
        group.get(RouterPath(InternalAPI.cache + "/{tenant}/{digest}")) { request, context in
            guard let tenant = context.parameters.get("tenant").flatMap(UUID.init(uuidString:)),
                let digest = context.parameters.get("digest"), Self.isHex(digest, length: 64)
            else { throw Problem.notFound() }
            guard let (answer, ttl) = try await self.store.get(tenant: tenant, digest: digest, logger: context.logger)
            else { throw Problem.notFound() }
            var body = ByteBuffer(string: #"{"ttl_seconds":\#(ttl),"answer":"#)
            body.writeString(answer)
            body.writeString("}")
            return Response(
                status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: .init(byteBuffer: body))
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
}
