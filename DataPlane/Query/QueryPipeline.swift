import Canon
import Embeddings
import Foundation
import Metrics
import NIOCore
import Retrieval
import Shared

/// The query path of a data-plane node, stage by stage, as the design lays it out
/// (docs/architecture.md has the table of stages and files):
///
/// 1. authenticate: `APIKeyAuthenticator` (Auth/), the middleware of the query route, has
///    checked the caller's key before the pipeline runs;
/// 3. validate: the body (`QueryRequest`) and the tenant's canon being loaded (`CanonLibrary`).
///    It runs before the limit so that a query refused here costs nothing, while its answer still
///    shows the limits;
/// 2. limit: `RateLimiter` (RateLimit/), one Redis script that also reads the exact cache;
/// 4–5. cache: `AnswerCache` (Cache/): exact, then (one computation per node for identical
///    questions) persistent and semantic;
/// 6. retrieve: `HybridRetriever` (Common/Retrieval/) over the tenant's canon layers;
/// 7–8. route and infer: `InferenceEngine` (Inference/) picks the model class and backend from
///    the catalog and runs the fallback chain down to `ExtractiveAnswerer`, which always answers;
/// 9. filter: `AnswerFilter` (Inference/): citations checked against the passages given, guards
///    (instructions, system-prompt echo, credentials, links), every sentence attributed to a
///    passage or dropped;
/// 10. store and account: the answer into every cache tier; the key's last use was recorded
///    by the authenticator.
///
/// `QueryController` only decodes the request and renders what the pipeline returns.
struct QueryPipeline: Sendable {
    /// An answer, which cache gave it, the similarity of a semantic hit, and the time its stages took.
    struct Answer: Sendable {
        let stored: StoredAnswer
        let outcome: CacheOutcome
        let similarity: Float?
        var timings: StageTimings = StageTimings()
        /// An exact answer that PostgreSQL kept after Redis lost it.
        var persistent = false
        /// What a model call cost, for a computed answer that called one.
        var usage: ModelUsage? = nil
    }

    /// Tokens and cost of the model calls behind one answer.
    struct ModelUsage: Sendable, Equatable {
        var inputTokens: Int
        var outputTokens: Int
        var costNanoDollars: UInt64
    }

    /// A query past validation, the limit and the exact cache: what computing its answer needs.
    struct Admitted: Sendable {
        let query: QueryRequest
        var key: QueryCacheKey
        let layers: [CanonLayer]
        let policy: TenantPolicy
        /// The stages it went through so far.
        var timings: StageTimings
    }

    enum Admission: Sendable {
        /// The exact cache answered (the question asked, for the audit).
        case answered(Answer, question: String)
        /// No exact answer: `lookUp`, then `compute` (what `run` does, in a single flight).
        case missing(Admitted)
    }

    let limiter: RateLimiter
    let canon: CanonLibrary
    let cache: AnswerCache
    let embedder: any Embedder
    let inference: InferenceEngine
    /// What the caches keep of a question (redacted unless the tenant opted in to raw questions).
    let privacy: QuestionPrivacy
    let retriever = HybridRetriever()
    let answerer = ExtractiveAnswerer()
    /// Identical questions arriving together on this node are answered once (and the persistent
    /// and semantic tiers asked once).
    private let flights = SingleFlight<Answer>()
    private let answered = Counter(label: "zaas_queries_total", dimensions: [("outcome", "answered")])
    private let uncovered = Counter(label: "zaas_queries_total", dimensions: [("outcome", "not_covered")])

    init(
        limiter: RateLimiter, canon: CanonLibrary, cache: AnswerCache, embedder: any Embedder,
        inference: InferenceEngine, privacy: QuestionPrivacy
    ) {
        self.limiter = limiter
        self.canon = canon
        self.cache = cache
        self.embedder = embedder
        self.inference = inference
        self.privacy = privacy
    }

    /// The answer to a query body of an authenticated caller, and the rate-limit decision its
    /// response shows. Throws a `Problem` for a query that is refused.
    func run(_ body: ByteBuffer, caller: Caller) async throws -> (Answer, question: String, RateLimitDecision) {
        let (admission, decision) = try await self.admit(body, caller: caller)
        switch admission {
        case .answered(let answer, let question):
            return (answer, question, decision)
        case .missing(let admitted):
            return (try await self.complete(admitted), admitted.query.question, decision)
        }
    }

    /// The answer to an admitted query no exact answer met: the other tiers, then computed, once
    /// for identical questions in flight on this node.
    func complete(_ admitted: Admitted) async throws -> Answer {
        let (answer, _) = try await self.flights.run(admitted.key.digest) {
            try await self.answerMissing(admitted)
        }
        self.cache.record(answer.outcome)
        return answer
    }

    /// What `completeOrDefer` found: the answer, or the class of a query to answer asynchronously.
    enum Disposition: Sendable {
        case answered(Answer)
        case deferred(ModelClass)
    }

    /// `complete` for a query whose request does not say `async`, under a quota policy with
    /// asynchronous classes: after the persistent and semantic tiers, a query the model class it
    /// would be routed to now is one of those is `deferred` (its embedding and retrieval are done
    /// again when a worker runs it: milliseconds beside a layer-split model's seconds per token).
    /// A query answered now reuses the retrieval the decision was made on.
    func completeOrDefer(_ admitted: Admitted) async throws -> Disposition {
        switch try await self.lookUp(admitted) {
        case .hit(let answer):
            self.cache.record(answer.outcome)
            return .answered(answer)
        case .miss(let missing, let vector):
            let query = missing.query
            let prepared = self.prepare(query, vector: vector, layers: missing.layers)
            if prepared.extractive.covered,
                let modelClass = self.inference.answeringClass(
                    question: query.question, vector: vector, retrieval: prepared.retrieval,
                    preference: query.modelPreference, allowed: missing.policy.modelClasses,
                    routingThreshold: missing.policy.routingThreshold ?? TenantPolicy.defaultRoutingThreshold),
                missing.policy.asyncModelClasses.contains(modelClass.flag)
            {
                return .deferred(modelClass)
            }
            let (answer, _) = try await self.flights.run(missing.key.digest) {
                try await self.compute(missing, vector: vector, prepared: prepared, stream: nil)
            }
            self.cache.record(answer.outcome)
            return .answered(answer)
        }
    }

    /// An asynchronous query's answer, when a worker runs it (`QueryJobWorker`): validated again
    /// (the tenant's policy or canon may have changed since it was submitted) but not charged again
    /// (its submission was), then as `run`.
    func runAdmitted(_ body: ByteBuffer, caller: Caller) async throws -> (Answer, question: String) {
        let (query, layers) = try self.validate(body, caller: caller)
        let key = Self.cacheKey(query, layers: layers, tenant: caller.tenant.id)
        if let cached = await self.cache.exact(key) {
            self.cache.record(.exact)
            return (Answer(stored: cached, outcome: .exact, similarity: nil), query.question)
        }
        let admitted = Admitted(
            query: query, key: key, layers: layers, policy: caller.policy, timings: StageTimings())
        return (try await self.complete(admitted), query.question)
    }

    /// Stage 3: the body, the model class the tenant may use, its canon being loaded.
    private func validate(_ body: ByteBuffer, caller: Caller) throws -> (QueryRequest, [CanonLayer]) {
        let query = try QueryRequest(json: body, citationLimit: Int(caller.policy.maxCitations))
        try query.requireAllowed(by: caller.policy)
        return (query, try self.canon.layers(for: caller.tenant))
    }

    static func cacheKey(_ query: QueryRequest, layers: [CanonLayer], tenant: UUID) -> QueryCacheKey {
        QueryCacheKey(
            tenant: tenant, canon: layers.map(\.index.sha256), question: query.question,
            context: query.context, maxCitations: query.maxCitations, modelClass: query.modelPreference.rawValue)
    }

    /// Stages 1–4: validation, the limit and the exact cache. Throws a `Problem` for a query
    /// that is refused.
    func admit(_ body: ByteBuffer, caller: Caller) async throws -> (Admission, RateLimitDecision) {
        let tenant = caller.tenant
        let buckets = RateLimitBucket.buckets(key: caller.key.id, tenant: tenant.id, policy: caller.policy)
        var timings = StageTimings()

        // 3. Validate.
        let query: QueryRequest
        let layers: [CanonLayer]
        do {
            (query, layers) = try self.validate(body, caller: caller)
        } catch var problem as Problem {
            if let decision = try? await self.limiter.decide(buckets, cost: 0) {
                problem.headers.append(contentsOf: decision.headers)
            }
            throw problem
        }
        let key = Self.cacheKey(query, layers: layers, tenant: tenant.id)

        // 2. Limit, reading the exact cache in the same round trip.
        let (decision, prefetched) = try await timings.measure("limit") {
            try await self.limiter.decide(buckets, fetching: key.redisKey)
        }
        guard decision.admitted else { throw Problem.rateLimited(decision) }

        // 4. Exact cache.
        if let cached = await self.cache.exact(key, prefetched: prefetched) {
            self.cache.record(.exact)
            let answer = Answer(stored: cached, outcome: .exact, similarity: nil, timings: timings)
            return (.answered(answer, question: query.question), decision)
        }
        return (
            .missing(Admitted(query: query, key: key, layers: layers, policy: caller.policy, timings: timings)),
            decision
        )
    }

    /// What the persistent and semantic tiers found for an admitted query: an answer, or the
    /// question's embedding to compute one with.
    enum Lookup: Sendable {
        case hit(Answer)
        case miss(Admitted, vector: [Float])
    }

    /// Stages 4–5 after an exact miss: the answers Redis lost (PostgreSQL), the question's
    /// embedding, the semantic tier. A streaming caller runs this before its stream begins, so
    /// `X-ZaaS-Cache` is known and an overloaded embedder is a plain 503.
    func lookUp(_ admitted: Admitted) async throws -> Lookup {
        var admitted = admitted
        // From here on the caches keep (and the semantic guard compares) the question in the form
        // the tenant chose: redacted and tagged, or raw.
        admitted.key.keptQuestion = self.privacy.forCache(
            admitted.key.question, tenant: admitted.key.tenant, raw: admitted.policy.storeRawQuestions)
        let (query, key, layers, policy) = (admitted.query, admitted.key, admitted.layers, admitted.policy)
        // 4. Exact answers Redis lost, kept in PostgreSQL.
        if let recovered = await admitted.timings.measure("cache", { await self.cache.recovered(key) }) {
            return .hit(
                Answer(stored: recovered, outcome: .exact, similarity: nil, timings: admitted.timings, persistent: true)
            )
        }
        let vector: [Float]
        do {
            vector = try await admitted.timings.measure("embed") { try await self.embedder.embed([query.question])[0] }
        } catch EmbedderError.overloaded, EmbedderError.timedOut {
            throw Problem.overloaded
        }
        // 5. Semantic cache. Words the tenant's canon knows are key terms: a question differing in
        // one is another question.
        let isKeyTerm = { (term: String) in layers.contains { $0.index.documentFrequency(of: term) > 0 } }
        if let (similar, similarity) = await admitted.timings.measure(
            "cache",
            {
                await self.cache.similar(
                    key, vector: vector, threshold: policy.semanticCacheThreshold, ttlSeconds: policy.cacheTTLSeconds,
                    isKeyTerm: isKeyTerm)
            })
        {
            return .hit(Answer(stored: similar, outcome: .semantic, similarity: similarity, timings: admitted.timings))
        }
        return .miss(admitted, vector: vector)
    }

    /// Stages 6–10 for a query no cache answered: retrieval and inference, and the answer stored
    /// in every tier. With `stream`, a model's answer is sent sentence by sentence as it is
    /// generated; a streamed answer is not shared with identical questions in flight (a caller
    /// that leaves cancels its own model call and no one else's). `prepared` is this query's
    /// retrieval when the caller already made it.
    func compute(
        _ admitted: Admitted, vector: [Float], prepared: Prepared? = nil, stream: InferenceEngine.StreamSink?
    ) async throws -> Answer {
        var timings = admitted.timings
        let (answer, usage) = try await self.answer(
            admitted.query, vector: vector, layers: admitted.layers, policy: admitted.policy, prepared: prepared,
            timings: &timings, stream: stream)
        let stored = try StoredAnswer(answer)
        // 10. Store.
        await timings.measure("store") {
            await self.cache.store(
                stored, for: admitted.key, vector: vector, ttlSeconds: admitted.policy.cacheTTLSeconds)
        }
        return Answer(stored: stored, outcome: .miss, similarity: nil, timings: timings, usage: usage)
    }

    /// Counts an answer a streaming caller got (`run` counts its own).
    func record(_ answer: Answer) {
        self.cache.record(answer.outcome)
    }

    private func answerMissing(_ admitted: Admitted) async throws -> Answer {
        switch try await self.lookUp(admitted) {
        case .hit(let answer): return answer
        case .miss(let admitted, let vector): return try await self.compute(admitted, vector: vector, stream: nil)
        }
    }

    /// Stage 6, retrieval, and the extractive answer made from it: what routing decides on, and
    /// the answer of last resort.
    struct Prepared: Sendable {
        let retrieval: RetrievalResult
        let extractive: ExtractiveAnswer
        let took: Duration
    }

    private func prepare(_ query: QueryRequest, vector: [Float], layers: [CanonLayer]) -> Prepared {
        let started = ContinuousClock.now
        let retrieval = self.retriever.retrieve(
            layers: layers, question: query.question, vector: vector, limit: max(query.maxCitations, 1))
        let extractive = self.answerer.answer(
            question: query.question, retrieval: retrieval, layers: layers, maxCitations: query.maxCitations)
        return Prepared(retrieval: retrieval, extractive: extractive, took: ContinuousClock.now - started)
    }

    /// Retrieval (unless `prepared` carries it), then the routed answer (the extractive answer when
    /// no model can give one), and what its model calls cost (nil when none was made).
    func answer(
        _ query: QueryRequest, vector: [Float], layers: [CanonLayer], policy: TenantPolicy, prepared: Prepared? = nil,
        timings: inout StageTimings, stream: InferenceEngine.StreamSink? = nil
    ) async throws -> (CachedAnswer, ModelUsage?) {
        let prepared = prepared ?? self.prepare(query, vector: vector, layers: layers)
        let (retrieval, extractive) = (prepared.retrieval, prepared.extractive)
        timings.add("retrieve", prepared.took)
        (extractive.covered ? self.answered : self.uncovered).increment()
        let routed = try await self.inference.answer(
            question: query.question, vector: vector, context: query.context, retrieval: retrieval, layers: layers,
            maxCitations: query.maxCitations, preference: query.modelPreference, allowed: policy.modelClasses,
            routingThreshold: policy.routingThreshold ?? TenantPolicy.defaultRoutingThreshold, extractive: extractive,
            retrievalConfidence: extractive.confidence, citationThreshold: self.answerer.citationThreshold,
            stream: stream)
        if let model = routed.modelTime { timings.add("model", model) }
        if let filter = routed.filterTime { timings.add("filter", filter) }
        let usage =
            routed.modelTime == nil
            ? nil
            : ModelUsage(
                inputTokens: routed.inputTokens, outputTokens: routed.outputTokens,
                costNanoDollars: routed.costNanoDollars)
        let answer = CachedAnswer(
            answer: routed.text, citations: routed.citations, confidence: routed.confidence,
            modelUsed: routed.modelUsed, canonVersion: layers.map(\.index.label).joined(separator: "+"),
            covered: routed.covered, route: routed.route, fallbackReason: routed.fallbackReason, filter: routed.filter)
        return (answer, usage)
    }
}

/// How long each stage of one query took, in the order they ran (`timings_ms` in answers); a
/// stage that runs twice (the persistent and the semantic cache) adds up.
struct StageTimings: Sendable {
    private(set) var stages: [(name: String, duration: Duration)] = []

    mutating func add(_ name: String, _ duration: Duration) {
        if let index = self.stages.firstIndex(where: { $0.name == name }) {
            self.stages[index].duration += duration
        } else {
            self.stages.append((name, duration))
        }
    }

    mutating func measure<Result>(_ name: String, _ body: () async throws -> Result) async rethrows -> Result {
        let started = ContinuousClock.now
        defer { self.add(name, ContinuousClock.now - started) }
        return try await body()
    }

    /// `{"limit":0.412,…,"total":3.2}`: milliseconds to the microsecond.
    func json(total: Duration) -> String {
        let fields = (self.stages + [("total", total)]).map { #""\#($0.name)":\#($0.duration.milliseconds)"# }
        return "{" + fields.joined(separator: ",") + "}"
    }
}
