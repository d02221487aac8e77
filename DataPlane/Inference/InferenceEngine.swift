import AsyncHTTPClient
import Embeddings
import Foundation
import Logging
import Metrics
import NIOCore
import Retrieval
import ServiceLifecycle
import Shared

/// Route and infer: which model class answers a query, which backend of it, and the fallback
/// chain when one fails (the chosen class → the other allowed class → the extractive answerer,
/// which always works). Owns the HTTP client the backends are called with.
final class InferenceEngine: Service, Sendable {
    struct Settings: Sendable {
        /// Where `credential_name` files are (`models.credentials_dir`); nil: environment only.
        var credentialsDirectory: String?
        /// How long a call waits for a free slot on its backend (`models.max_wait_ms`).
        var maximumWait: Duration
        /// Tokens a model may write (`models.max_answer_tokens`).
        var answerTokens: Int
        /// How often large-local backends' metrics are read (`models.monitor_interval_ms`).
        var monitorInterval: Duration

        init(
            credentialsDirectory: String? = nil, maximumWait: Duration = .milliseconds(250), answerTokens: Int = 320,
            monitorInterval: Duration = .seconds(2)
        ) {
            self.credentialsDirectory = credentialsDirectory
            self.maximumWait = maximumWait
            self.answerTokens = answerTokens
            self.monitorInterval = monitorInterval
        }
    }

    /// Where an answer came from and why: `class` is `local`, `cloud` or `extractive`;
    /// `complexity` is the router's estimate for the question (`ComplexityRouter`, 0...1).
    struct Route: Sendable, Codable, Equatable {
        var modelClass: String
        var complexity: Double?
        var reason: String

        init(modelClass: String, complexity: Double? = nil, reason: String) {
            self.modelClass = modelClass
            self.complexity = complexity
            self.reason = reason
        }

        enum CodingKeys: String, CodingKey {
            case modelClass = "class"
            case complexity
            case reason
        }
    }

    /// What the query path stores and renders.
    struct Routed: Sendable {
        var text: String
        var citations: [Citation]
        var confidence: Double
        var modelUsed: String
        var covered: Bool
        var route: Route
        /// Why the answer is not from the first backend tried (its failure's kind), if it is not.
        var fallbackReason: String?
        /// What the filter did to a model's answer (nil for the extractive answer).
        var filter: AnswerFilter.Report? = nil
        var inputTokens: Int = 0
        var outputTokens: Int = 0
        var costNanoDollars: UInt64 = 0
        /// Time spent in the model calls (every attempt, less the filter's work) and in the
        /// filter, for the answer's `timings_ms`; nil when no model was called.
        var modelTime: Duration? = nil
        var filterTime: Duration? = nil
    }

    /// What a streaming caller is told while the answer is generated.
    enum StreamEvent: Sendable {
        /// A sentence as it will be served (filtered, with its citation markers; concatenated,
        /// the deltas are the answer's text), and the citations it lists for the first time.
        case delta(String, citations: [Citation])
        /// The deltas sent so far are withdrawn: their model failed mid-answer (`reason`, as in
        /// `fallback_reason`) and the chain moves on.
        case reset(reason: String)
    }

    typealias StreamSink = @Sendable (StreamEvent) async throws -> Void

    let settings: Settings
    let backends: ModelBackends
    let credentials: ModelCredentials
    private let http: HTTPClient
    private let client: ChatCompletionClient
    private let prompts: PromptBuilder
    private let filter = AnswerFilter()
    private let router = ComplexityRouter.standard
    /// Embeds the answer's sentences for attribution.
    private let embedder: any Embedder
    private let catalog: @Sendable () -> [ModelBackend]
    private let logger: Logger

    init(
        settings: Settings, embedder: any Embedder, catalog: @escaping @Sendable () -> [ModelBackend], logger: Logger
    ) {
        var configuration = HTTPClient.Configuration()
        // A backend that refuses connections fails the call at once (the chain moves on).
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(2)
        // Each backend's gate bounds the calls in flight (`max_concurrency`); the pool must not
        // queue them again behind its default of 8 connections a host.
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = Int(
            ModelCatalogRules.maxConcurrency.upperBound)
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.client = ChatCompletionClient(httpClient: self.http)
        self.settings = settings
        self.backends = ModelBackends(maximumWait: settings.maximumWait)
        self.credentials = ModelCredentials(directory: settings.credentialsDirectory)
        self.prompts = PromptBuilder(answerTokens: settings.answerTokens)
        self.embedder = embedder
        self.catalog = catalog
        self.logger = logger
    }

    func run() async throws {
        let monitor = BackendMonitor(
            http: self.http, backends: self.backends, catalog: self.catalog, interval: self.settings.monitorInterval,
            logger: self.logger)
        try? await cancelWhenGracefulShutdown { await monitor.run() }
        try await self.shutdown()
    }

    /// Closes the HTTP client (for a node built but never run, as tests do).
    func shutdown() async throws {
        try await self.http.shutdown()
    }

    /// The classes to try, in order, and why the first was chosen. `auto` sends a question whose
    /// `complexity` reaches `threshold` to the cloud class, or, where the tenant may not use it or
    /// the catalog has none, to the large-local class; any other question to the local class. A
    /// class the tenant may not use or the catalog lacks is skipped, and the reason says so. The
    /// classes after the first are the fallbacks, in `ModelClass.fallbacks` order.
    func plan(
        preference: QueryRequest.ModelPreference, allowed: ModelClasses, catalog: [ModelBackend], complexity: Double,
        threshold: Double
    ) -> ([ModelClass], String) {
        let usable = ModelClass.allCases.filter {
            allowed.contains($0.flag) && self.backends.hasBackend($0, catalog: catalog)
        }
        func chain(_ first: ModelClass) -> [ModelClass] {
            first.fallbacks.filter(usable.contains)
        }
        let chosen: ModelClass
        switch preference {
        case .local: chosen = .local
        case .cloud: chosen = .cloud
        case .largeLocal: chosen = .largeLocal
        case .auto:
            let wanted: ModelClass = complexity >= threshold ? .cloud : .local
            let estimate =
                String(format: "complexity %.2f %@ threshold %.2f", complexity, wanted == .cloud ? "≥" : "<", threshold)
            guard !usable.isEmpty else {
                return (
                    [],
                    allowed.contains(.cloud)
                        ? "auto: \(estimate); no model in the catalog for the allowed classes"
                        : "auto: \(estimate); no local model in the catalog"
                )
            }
            if usable.contains(wanted) {
                return (chain(wanted), "auto: \(estimate): \(wanted.rawValue)")
            }
            let order = chain(wanted)
            let why =
                !allowed.contains(wanted.flag)
                ? "the tenant's tier does not allow \(wanted.rawValue) models"
                : "no \(wanted.rawValue) model configured"
            return (order, "auto: \(estimate), but \(why); answered by \(order[0].rawValue)")
        }
        guard usable.contains(chosen) else {
            return (chain(chosen), "\(chosen.rawValue) requested; no \(chosen.rawValue) model in the catalog")
        }
        return (chain(chosen), "\(chosen.rawValue) requested")
    }

    /// The router's estimate for a question, to the thousandth (what answers report).
    private func complexity(question: String, vector: [Float], retrieval: RetrievalResult) -> Double {
        (self.router.complexity(question: question, vector: vector, retrieval: retrieval) * 1000).rounded() / 1000
    }

    /// The class that would answer a question the canon covers if it were asked now: the first of
    /// its chain with a backend that may be called (nil: the extractive answerer would). The query
    /// path asks it to give a tenant's asynchronous classes (`async_model_classes`) their 202.
    func answeringClass(
        question: String, vector: [Float], retrieval: RetrievalResult, preference: QueryRequest.ModelPreference,
        allowed: ModelClasses, routingThreshold: Float
    ) -> ModelClass? {
        let catalog = self.catalog()
        let (classes, _) = self.plan(
            preference: preference, allowed: allowed, catalog: catalog,
            complexity: self.complexity(question: question, vector: vector, retrieval: retrieval),
            threshold: Double(routingThreshold))
        return classes.first { !self.backends.candidates($0, catalog: catalog).isEmpty }
    }

    /// The answer to `question` from the chain; `extractive` is the answer that always works.
    /// `vector` is the question's embedding (the router reads it), `routingThreshold` the tenant's.
    /// With `stream`, a model's answer is generated as a stream and each sentence the filter keeps
    /// is sent as it completes.
    func answer(
        question: String, vector: [Float], context: String?, retrieval: RetrievalResult, layers: [CanonLayer],
        maxCitations: Int, preference: QueryRequest.ModelPreference, allowed: ModelClasses, routingThreshold: Float,
        extractive: ExtractiveAnswer, retrievalConfidence: Double, citationThreshold: Float,
        stream: StreamSink? = nil
    ) async throws -> Routed {
        let complexity = self.complexity(question: question, vector: vector, retrieval: retrieval)
        let fallback = { (reason: String?, route: Route) in
            var route = route
            route.complexity = complexity
            return Routed(
                text: extractive.text, citations: extractive.citations, confidence: extractive.confidence,
                modelUsed: ExtractiveAnswerer.modelName, covered: extractive.covered, route: route,
                fallbackReason: reason)
        }
        // Nothing in the canon is close enough: a model would answer from nothing.
        guard extractive.covered else {
            return fallback(nil, Route(modelClass: "extractive", reason: "the canon does not cover the question"))
        }
        let catalog = self.catalog()
        let (classes, reason) = self.plan(
            preference: preference, allowed: allowed, catalog: catalog, complexity: complexity,
            threshold: Double(routingThreshold))
        guard !classes.isEmpty else { return fallback(nil, Route(modelClass: "extractive", reason: reason)) }

        let given = AnswerFilter.given(
            retrieval, layers: layers, limit: max(maxCitations, 1), threshold: citationThreshold)
        let snippets = Dictionary(
            extractive.citations.map { ($0.id, $0.snippet) }, uniquingKeysWith: { first, _ in first })
        var firstFailure: String?
        // `timings_ms.model`: every attempt, failed ones included, less the filter's work.
        let started = ContinuousClock.now
        for modelClass in classes {
            let candidates = self.backends.candidates(modelClass, catalog: catalog)
            guard let runtime = candidates.first else {
                firstFailure = firstFailure ?? self.backends.unavailability(modelClass, catalog: catalog)
                continue
            }
            do {
                let routed = try await self.call(
                    runtime, question: question, context: context, given: given, layers: layers,
                    maxCitations: maxCitations,
                    retrievalConfidence: retrievalConfidence, snippets: snippets,
                    route: Route(
                        modelClass: modelClass.rawValue, complexity: complexity,
                        reason: modelClass == classes[0] ? reason : "fell back to \(modelClass.rawValue)"),
                    stream: stream)
                var answer = routed
                answer.fallbackReason = firstFailure
                answer.modelTime = ContinuousClock.now - started - (routed.filterTime ?? .zero)
                return answer
            } catch let failure as AttemptFailure {
                Counter(
                    label: "zaas_model_fallbacks_total",
                    dimensions: [("model", runtime.backend.name), ("reason", failure.reason)]
                ).increment()
                self.logger.notice(
                    "model call failed; falling back",
                    metadata: ["model": "\(runtime.backend.name)", "reason": "\(failure.reason)"])
                firstFailure = firstFailure ?? failure.reason
                if failure.streamed, let stream { try await stream(.reset(reason: failure.reason)) }
            }
        }
        var answer = fallback(
            firstFailure, Route(modelClass: "extractive", reason: "every model failed; extractive answer"))
        answer.modelTime = ContinuousClock.now - started
        return answer
    }

    /// Why one attempt gave no answer (its `reason` is what answers report as `fallback_reason`);
    /// `streamed` when part of its answer was already sent to a streaming caller.
    struct AttemptFailure: Error {
        let reason: String
        var streamed = false
    }

    private func call(
        _ runtime: ModelBackends.Runtime, question: String, context: String?, given: [AnswerFilter.Given],
        layers: [CanonLayer], maxCitations: Int, retrievalConfidence: Double, snippets: [String: String],
        route: Route, stream sink: StreamSink?
    ) async throws -> Routed {
        let backend = runtime.backend
        guard
            let prompt = self.prompts.prompt(
                question: question, context: context, passages: given.map(\.passage),
                contextWindow: Int(backend.contextWindow))
        else { throw AttemptFailure(reason: "prompt_too_large") }
        let credential = backend.credentialName.flatMap { self.credentials.value(named: $0) }
        guard let permit = runtime.breaker.acquire() else { throw AttemptFailure(reason: "circuit_open") }
        let request = ChatCompletionClient.Request(messages: prompt.messages, maximumTokens: self.settings.answerTokens)
        let deadline = NIODeadline.now() + .milliseconds(Int64(backend.timeoutMilliseconds))
        let given = Array(given.prefix(prompt.passageCount))
        var session = AnswerFilter.Session(
            filter: self.filter, given: given, layers: layers, maxCitations: maxCitations)
        var sentences = AnswerFilter.SentenceStream(passageCount: given.count)
        var filtering = Duration.zero
        var streamed = false
        // One sentence of a streamed answer: screened, embedded, attributed, and sent when kept.
        func consider(_ sentence: AnswerFilter.Sentence, sink: StreamSink) async throws {
            let started = ContinuousClock.now
            guard session.screen(sentence) else { return filtering += ContinuousClock.now - started }
            let vector: [Float]
            do {
                vector = try await self.embedder.embed([sentence.plain])[0]
            } catch EmbedderError.overloaded, EmbedderError.timedOut {
                throw AttemptFailure(reason: "filter_overloaded", streamed: streamed)
            }
            let listedBefore = session.order.count
            let served = session.attribute(sentence, vector: vector)
            filtering += ContinuousClock.now - started
            guard let served else { return }
            let citations = (listedBefore..<session.order.count).map { session.citation($0 + 1, snippets: snippets) }
            try await sink(.delta(streamed ? " " + served : served, citations: citations))
            streamed = true
        }

        let started = ContinuousClock.now
        let completion: ChatCompletionClient.Completion
        do {
            guard
                let done = try await runtime.gate.run({
                    guard let sink else {
                        return try await self.client.complete(
                            request, backend: backend, credential: credential, deadline: deadline)
                    }
                    let completion = try await self.client.stream(
                        request, backend: backend, credential: credential, deadline: deadline
                    ) { piece in
                        for sentence in sentences.append(piece) { try await consider(sentence, sink: sink) }
                    }
                    for sentence in sentences.finish() { try await consider(sentence, sink: sink) }
                    return completion
                })
            else {
                runtime.breaker.record(.abandoned, permit: permit)
                throw AttemptFailure(reason: "backend_busy")
            }
            completion = done
        } catch let failure as ChatCompletionClient.Failure {
            runtime.breaker.record(failure.countsAgainstBackend ? .failure : .abandoned, permit: permit)
            if let wait = failure.retryAfter { runtime.breaker.busy(until: .now + wait) }
            throw AttemptFailure(reason: failure.reason, streamed: streamed)
        } catch let failure as AttemptFailure {
            runtime.breaker.record(.abandoned, permit: permit)
            throw failure
        } catch {
            // Cancelled (a client that left), or the stream's receiver failed: not the backend's fault.
            runtime.breaker.record(.abandoned, permit: permit)
            throw error
        }
        runtime.breaker.record(.success, permit: permit)
        let modelTime = ContinuousClock.now - started - filtering
        Timer(label: "zaas_model_call_duration_seconds", dimensions: [("model", backend.name)])
            .recordNanoseconds(modelTime.nanoseconds)
        let checked: AnswerFilter.Answer?
        if sink != nil {
            checked = session.answer(retrievalConfidence: retrievalConfidence, snippets: snippets)
        } else {
            let started = ContinuousClock.now
            do {
                checked = try await self.filter.filter(
                    completion.text, given: given, layers: layers, maxCitations: maxCitations,
                    retrievalConfidence: retrievalConfidence, snippets: snippets,
                    embed: { try await self.embedder.embed($0) })
            } catch EmbedderError.overloaded, EmbedderError.timedOut {
                throw AttemptFailure(reason: "filter_overloaded")
            }
            filtering = ContinuousClock.now - started
        }
        guard let checked else { throw AttemptFailure(reason: "unsupported_answer", streamed: streamed) }
        if checked.report.changed {
            for (reason, count) in checked.report.dropped {
                Counter(label: "zaas_filter_dropped_sentences_total", dimensions: [("reason", reason)])
                    .increment(by: count)
            }
        }
        let input = completion.inputTokens ?? prompt.estimatedTokens
        let output = completion.outputTokens ?? PromptBuilder.estimatedTokens(completion.text)
        Counter(label: "zaas_model_tokens_total", dimensions: [("model", backend.name), ("direction", "input")])
            .increment(by: input)
        Counter(label: "zaas_model_tokens_total", dimensions: [("model", backend.name), ("direction", "output")])
            .increment(by: output)
        let cost = backend.costNanoDollars(inputTokens: input, outputTokens: output)
        Counter(label: "zaas_model_cost_nanodollars_total", dimensions: [("model", backend.name)])
            .increment(by: Int(clamping: cost))
        self.logger.debug(
            "model answered",
            metadata: [
                "model": "\(backend.name)", "class": "\(route.modelClass)", "input_tokens": "\(input)",
                "output_tokens": "\(output)", "cost_nanodollars": "\(cost)",
            ])
        return Routed(
            text: checked.text, citations: checked.citations, confidence: checked.confidence, modelUsed: backend.name,
            covered: true, route: route, fallbackReason: nil, filter: checked.report, inputTokens: input,
            outputTokens: output, costNanoDollars: cost, filterTime: filtering)
    }
}

extension Duration {
    /// The whole duration in nanoseconds (saturating).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = self.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : whole.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }

    /// In milliseconds, to the microsecond.
    var milliseconds: Double { (Double(self.nanoseconds) / 1_000).rounded() / 1_000 }
}
