import Canon
import Common
import Embeddings
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore

/// A validated `POST /api/v1/query` body.
struct QueryRequest: Sendable, Equatable {
    enum ModelPreference: String, Sendable {
        case auto, local, cloud
    }

    static let fields: Set<String> = ["question", "context", "max_citations", "model_preference"]
    static let maximumQuestion = 4000
    static let maximumContext = 16000
    static let maximumCitations = 20
    static let defaultCitations = 5

    var question: String
    var context: String?
    var maxCitations: Int
    var modelPreference: ModelPreference

    /// Every problem of the body at once; the tier's citation limit caps `max_citations`.
    init(json bytes: ByteBuffer, citationLimit: Int) throws {
        let fields: [String: JSONValue]
        do {
            fields = try JSONDecoder().decode([String: JSONValue].self, from: Data(bytes.readableBytesView))
        } catch {
            throw Problem.invalidQuery(["body": "must be a JSON object"])
        }
        var errors: [String: String] = [:]
        for unknown in Set(fields.keys).subtracting(Self.fields) { errors[unknown] = "unknown field" }

        var question = ""
        switch fields["question"] {
        case .string(let text):
            question = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if question.isEmpty {
                errors["question"] = "must not be empty"
            } else if question.count > Self.maximumQuestion {
                errors["question"] = "must be at most \(Self.maximumQuestion) characters"
            }
        case nil: errors["question"] = "is required"
        default: errors["question"] = "must be a string"
        }

        var context: String?
        switch fields["context"] {
        case nil, .null: break
        case .string(let text):
            if text.count > Self.maximumContext {
                errors["context"] = "must be at most \(Self.maximumContext) characters"
            } else if !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                context = text
            }
        default: errors["context"] = "must be a string"
        }

        var maxCitations = min(Self.defaultCitations, citationLimit)
        switch fields["max_citations"] {
        case nil: break
        case .integer(let value) where (0...Self.maximumCitations).contains(value):
            if value > citationLimit {
                errors["max_citations"] = "must be at most \(citationLimit) on this tenant's tier"
            } else {
                maxCitations = value
            }
        default: errors["max_citations"] = "must be an integer from 0 to \(Self.maximumCitations)"
        }

        var preference = ModelPreference.auto
        switch fields["model_preference"] {
        case nil: break
        case .string(let text) where ModelPreference(rawValue: text) != nil:
            preference = ModelPreference(rawValue: text)!
        default: errors["model_preference"] = "must be auto, local or cloud"
        }
        guard errors.isEmpty else { throw Problem.invalidQuery(errors) }
        self.question = question
        self.context = context
        self.maxCitations = maxCitations
        self.modelPreference = preference
    }
}

/// Any JSON value, keeping its type: `true` is not 1, `2.5` is not an integer.
enum JSONValue: Decodable, Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case other

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        // Strings first: most fields are strings, and every failed attempt costs a thrown error.
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else {
            self = .other
        }
    }
}

/// `POST /api/v1/query`: embeds the question, retrieves from the tenant's overlay and the base
/// canon, and answers with the embedded extractive answerer.
struct QueryController: Sendable {
    static let maximumBody = 64 * 1024

    let embedder: any Embedder
    let library: CanonLibrary
    let store: ConfigStore
    let limiter: RateLimiter
    let cache: AnswerCache
    let flights = SingleFlight<(StoredAnswer, CacheOutcome, Float?)>()
    let retriever = HybridRetriever()
    let answerer = ExtractiveAnswerer()
    let answered = Counter(label: "zaas_queries_total", dimensions: [("outcome", "answered")])
    let uncovered = Counter(label: "zaas_queries_total", dimensions: [("outcome", "not_covered")])

    func addRoutes(to group: RouterGroup<AuthenticatedRequestContext>) {
        group.post { request, context in
            try await self.query(request, context: context)
        }
    }

    func query(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        if let type = request.headers[.contentType], !type.lowercased().hasPrefix("application/json") {
            throw Problem.unsupportedMediaType("Send the query as application/json.")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maximumBody)
        } catch {
            throw Problem.payloadTooLarge("The body is larger than \(Self.maximumBody) bytes.")
        }
        let buckets = RateLimitBucket.buckets(key: context.key.id, tenant: context.tenant.id, policy: context.policy)
        let query: QueryRequest
        let layers: [CanonLayer]
        do {
            query = try QueryRequest(json: body, citationLimit: Int(context.policy.maxCitations))
            // A node still loading the canon refuses before counting.
            layers = try self.layers(for: context.tenant)
        } catch var problem as Problem {
            // An invalid query (or one refused for the canon) does not count, but its answer
            // shows the limits all the same.
            if let decision = try? await self.limiter.decide(buckets, cost: 0) {
                problem.headers.append(contentsOf: decision.headers)
            }
            throw problem
        }
        let key = QueryCacheKey(
            tenant: context.tenant.id, canon: layers.map(\.index.sha256), question: query.question,
            context: query.context, maxCitations: query.maxCitations, modelClass: query.modelPreference.rawValue)
        // The limit and the exact cache in one round trip (the limiter's script reads the answer
        // when it admits the query); on the node's local buckets, the cache is asked on its own.
        let (decision, fetched) = try await self.limiter.decide(buckets, fetching: key.redisKey)
        guard decision.admitted else { throw Problem.rateLimited(decision) }
        let cached: StoredAnswer? =
            if decision.source == .redis {
                fetched.flatMap { StoredAnswer(bytes: $0) }
            } else {
                await self.cache.exact(key)
            }
        if let cached {
            self.cache.record(.exact, tenant: context.tenant.id)
            return try Self.response(cached, outcome: .exact, rateLimit: decision)
        }
        // Identical questions arriving together on this node are answered once (and the
        // persistent and semantic caches asked once).
        let ttl = context.policy.cacheTTLSeconds
        let threshold = context.policy.semanticCacheThreshold
        let (result, _) = try await self.flights.run(key.digest) {
            try await self.answerMissing(query, key: key, layers: layers, ttl: ttl, threshold: threshold)
        }
        let (answer, outcome, similarity) = result
        self.cache.record(outcome, tenant: context.tenant.id)
        return try Self.response(answer, outcome: outcome, similarity: similarity, rateLimit: decision)
    }

    /// After an exact-cache miss in Redis: the persistent cache, then (without context) the
    /// semantic cache, then retrieval and the answerer; what is computed is stored in all three.
    func answerMissing(
        _ query: QueryRequest, key: QueryCacheKey, layers: [CanonLayer], ttl: UInt32, threshold: Float?
    ) async throws -> (StoredAnswer, CacheOutcome, Float?) {
        if let (stored, remaining) = await self.cache.persistent?.lookup(key) {
            // Lost from Redis (restart, eviction), kept in PostgreSQL: back into Redis.
            await self.cache.store(stored, for: key, ttlSeconds: remaining)
            return (stored, .exact, nil)
        }
        let vector = try await self.embedder.embed([query.question])[0]
        if query.context == nil, let semantic = self.cache.semantic {
            // Words the tenant's canon knows are key terms: a question differing in one is another question.
            let isKeyTerm = { (term: String) in layers.contains { $0.index.documentFrequency(of: term) > 0 } }
            // A neighbour whose answer has expired is forgotten and the next one tried, a few times at most.
            for _ in 0..<4 {
                guard let hit = await semantic.lookup(key, vector: vector, threshold: threshold, isKeyTerm: isKeyTerm)
                else { break }
                let neighbour = QueryCacheKey.redisKey(tenant: key.tenant, canonTag: key.canonTag, digest: hit.digest)
                guard let answer = await self.cache.exact(redisKey: neighbour) else {
                    semantic.forget(hit.digest, in: key)
                    continue
                }
                await self.cache.store(answer, for: key, ttlSeconds: ttl)
                return (answer, .semantic, hit.similarity)
            }
        }
        let answer = try StoredAnswer(self.answer(query, vector: vector, layers: layers))
        await self.cache.store(answer, for: key, ttlSeconds: ttl)
        if query.context == nil { await self.cache.semantic?.add(key, vector: vector, ttlSeconds: ttl) }
        self.cache.persistent?.enqueue(
            .init(key: key, answer: answer, embedding: query.context == nil ? vector : nil, ttlSeconds: ttl))
        return (answer, .miss, nil)
    }

    /// Retrieval and the extractive answerer.
    func answer(_ query: QueryRequest, vector: [Float], layers: [CanonLayer]) -> CachedAnswer {
        let retrieval = self.retriever.retrieve(
            layers: layers, question: query.question, vector: vector, limit: max(query.maxCitations, 1))
        let answer = self.answerer.answer(
            question: query.question, retrieval: retrieval, layers: layers, maxCitations: query.maxCitations)
        (answer.covered ? self.answered : self.uncovered).increment()
        return CachedAnswer(
            answer: answer.text, citations: answer.citations, confidence: answer.confidence,
            modelUsed: ExtractiveAnswerer.modelName, canonVersion: layers.map(\.index.label).joined(separator: "+"),
            covered: answer.covered)
    }

    /// The stored answer with `cache_hit`, a fresh `query_id` (and the similarity of a semantic
    /// hit) added to its bytes; the limits and which cache answered in the headers.
    static func response(
        _ answer: StoredAnswer, outcome: CacheOutcome, similarity: Float? = nil, rateLimit: RateLimitDecision
    ) throws -> Response {
        var headers = rateLimit.headers
        headers[.zaasCache] = outcome.rawValue
        headers[.contentType] = "application/json"
        headers[.cacheControl] = "no-store"
        var body = ByteBuffer()
        body.reserveCapacity(answer.json.count + 128)
        body.writeBytes(answer.json.dropLast())
        body.writeString(#","cache_hit":\#(outcome != .miss),"query_id":"\#(UUID().uuidString.lowercased())""#)
        if let similarity {
            let rounded = String(format: "%.4f", Double(similarity))
            headers[.zaasCacheSimilarity] = rounded
            body.writeString(#","cache_similarity":\#(rounded)"#)
        }
        body.writeString("}")
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }

    /// The tenant's canon as installed. A version the config names but this node has not loaded
    /// yet is answered from the version before it; when there is none before it (the base canon,
    /// or the tenant's first overlay, not loaded yet), 503 rather than an answer from a part of
    /// the canon that would cite base entries the overlay replaces.
    func layers(for tenant: TenantConfig) throws -> [CanonLayer] {
        let state = self.library.current
        let wantsBase = self.store.current?.settings.baseCanon != nil
        if (wantsBase && state.base == nil) || (tenant.canon != nil && state.overlays[tenant.id] == nil) {
            throw Problem.canonNotReady
        }
        return state.layers(for: tenant.id)
    }
}

extension Problem {
    static func invalidQuery(_ errors: [String: String]) -> Problem {
        let sorted = errors.sorted { $0.key < $1.key }
        return Problem(
            slug: "invalid-query", title: "Bad Request", status: .badRequest,
            detail: sorted.map { "\($0.key): \($0.value)" }.joined(separator: "; "),
            extensions: [
                "errors": .array(sorted.map { .object(["field": .string($0.key), "message": .string($0.value)]) })
            ])
    }

    static var canonNotReady: Problem {
        Problem(
            slug: "canon-not-ready", title: "Service Unavailable", status: .serviceUnavailable,
            detail: "This node is still loading the canon. Try another node or retry shortly.",
            headers: [.retryAfter: "1"])
    }
}
