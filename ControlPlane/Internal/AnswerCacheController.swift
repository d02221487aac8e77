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
    static let maximumBody = 16 << 20

    let store: AnswerCacheStore
    let stored = Counter(label: "zaas_answer_cache_stored_total")
    let refused = Counter(label: "zaas_answer_cache_refused_total")

    struct Batch: Decodable {
        let entries: [AnswerCacheRecord]
    }

    func addRoutes(to group: RouterGroup<NodeContext>) {
        group.post(RouterPath(InternalAPI.cache)) { request, context in
            let batch = try await StrictJSON.decode(
                Batch.self, from: request, context: context, allowedFields: ["entries"], maximumBytes: Self.maximumBody)
            guard batch.entries.count <= Self.maximumBatch else {
                throw Problem.validation([FieldError("entries", "at most \(Self.maximumBatch) per batch")])
            }
            // One bad entry must not cost the others their place: each is checked (and, should
            // the database still refuse one, written) on its own, and the reply says which were
            // refused so the node drops exactly those.
            var valid: [(index: Int, record: AnswerCacheRecord)] = []
            var refused: [AnswerCacheStoreReply.Refused] = []
            for (index, entry) in batch.entries.enumerated() {
                let problems = entry.problems()
                if problems.isEmpty {
                    valid.append((index, entry))
                } else {
                    refused.append(
                        .init(
                            index: index, reason: problems.map { "\($0.field): \($0.message)" }.joined(separator: "; "))
                    )
                }
            }
            let outcome = try await self.store.put(valid.map(\.record), logger: context.logger)
            refused += outcome.refused.map { .init(index: valid[$0.index].index, reason: $0.reason) }
            refused.sort { $0.index < $1.index }
            self.stored.increment(by: outcome.stored)
            if !refused.isEmpty {
                self.refused.increment(by: refused.count)
                context.logger.warning(
                    "answers refused for the persistent cache",
                    metadata: ["refused": "\(refused.count)", "first": "\(refused[0].reason)"])
            }
            return try StrictJSON.response(AnswerCacheStoreReply(stored: outcome.stored, refused: refused))
        }
        group.get(RouterPath(InternalAPI.cache + "/{tenant}/{digest}")) { request, context in
            guard let tenant = context.parameters.get("tenant").flatMap(UUID.init(uuidString:)),
                let digest = context.parameters.get("digest"), Hex.isLowercase(digest, count: 64)
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
}
