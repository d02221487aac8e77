import AsyncHTTPClient
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

        init(credentialsDirectory: String? = nil, maximumWait: Duration = .milliseconds(250), answerTokens: Int = 320) {
            self.credentialsDirectory = credentialsDirectory
            self.maximumWait = maximumWait
            self.answerTokens = answerTokens
        }
    }

    /// Where an answer came from and why: `class` is `local`, `cloud` or `extractive`.
    struct Route: Sendable, Codable, Equatable {
        var modelClass: String
        var reason: String

        enum CodingKeys: String, CodingKey {
            case modelClass = "class"
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
        var inputTokens: Int = 0
        var outputTokens: Int = 0
        var costNanoDollars: UInt64 = 0
    }

    let settings: Settings
    let backends: ModelBackends
    let credentials: ModelCredentials
    private let http: HTTPClient
    private let client: ChatCompletionClient
    private let prompts: PromptBuilder
    private let catalog: @Sendable () -> [ModelBackend]
    private let logger: Logger

    init(settings: Settings, catalog: @escaping @Sendable () -> [ModelBackend], logger: Logger) {
        var configuration = HTTPClient.Configuration()
        // A backend that refuses connections fails the call at once (the chain moves on).
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(2)
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.client = ChatCompletionClient(httpClient: self.http)
        self.settings = settings
        self.backends = ModelBackends(maximumWait: settings.maximumWait)
        self.credentials = ModelCredentials(directory: settings.credentialsDirectory)
        self.prompts = PromptBuilder(answerTokens: settings.answerTokens)
        self.catalog = catalog
        self.logger = logger
    }

    func run() async throws {
        try? await gracefulShutdown()
        try await self.shutdown()
    }

    /// Closes the HTTP client (for a node built but never run, as tests do).
    func shutdown() async throws {
        try await self.http.shutdown()
    }

    /// The classes to try, in order, and why the first was chosen.
    func plan(preference: QueryRequest.ModelPreference, allowed: ModelClasses, catalog: [ModelBackend]) -> (
        [ModelClass], String
    ) {
        let usable = ModelClass.allCases.filter {
            allowed.contains($0.flag) && self.backends.hasBackend($0, catalog: catalog)
        }
        switch preference {
        case .local, .cloud:
            let chosen: ModelClass = preference == .local ? .local : .cloud
            guard usable.contains(chosen) else {
                return (
                    usable.filter { $0 != chosen },
                    "\(chosen.rawValue) requested; no \(chosen.rawValue) model in the catalog"
                )
            }
            return ([chosen] + usable.filter { $0 != chosen }, "\(chosen.rawValue) requested")
        case .auto:
            // Until the trained router lands (issue 15), `auto` takes the cheaper allowed class.
            guard let first = usable.first else {
                return (
                    [],
                    allowed.contains(.cloud)
                        ? "no model in the catalog for the allowed classes" : "no local model in the catalog"
                )
            }
            let reason =
                first == .local && allowed.contains(.cloud) && !usable.contains(.cloud)
                ? "auto: no cloud model configured; answered locally" : "auto: the cheaper allowed class"
            return (usable, reason)
        }
    }

    /// The answer to `question` from the chain; `extractive` is the answer that always works.
    func answer(
        question: String, context: String?, retrieval: RetrievalResult, layers: [CanonLayer], maxCitations: Int,
        preference: QueryRequest.ModelPreference, allowed: ModelClasses, extractive: ExtractiveAnswer,
        retrievalConfidence: Double, citationThreshold: Float
    ) async throws -> Routed {
        let fallback = { (reason: String?, route: Route) in
            Routed(
                text: extractive.text, citations: extractive.citations, confidence: extractive.confidence,
                modelUsed: ExtractiveAnswerer.modelName, covered: extractive.covered, route: route,
                fallbackReason: reason)
        }
        // Nothing in the canon is close enough: a model would answer from nothing.
        guard extractive.covered else {
            return fallback(nil, Route(modelClass: "extractive", reason: "the canon does not cover the question"))
        }
        let catalog = self.catalog()
        let (classes, reason) = self.plan(preference: preference, allowed: allowed, catalog: catalog)
        guard !classes.isEmpty else { return fallback(nil, Route(modelClass: "extractive", reason: reason)) }

        let given = GenerativeAnswerer.passages(
            retrieval, layers: layers, limit: max(maxCitations, 1), threshold: citationThreshold)
        let snippets = Dictionary(
            extractive.citations.map { ($0.id, $0.snippet) }, uniquingKeysWith: { first, _ in first })
        var firstFailure: String?
        for modelClass in classes {
            let candidates = self.backends.candidates(modelClass, catalog: catalog)
            guard let runtime = candidates.first else {
                firstFailure = firstFailure ?? "circuit_open"
                continue
            }
            do {
                let routed = try await self.call(
                    runtime, question: question, context: context, given: given, maxCitations: maxCitations,
                    retrievalConfidence: retrievalConfidence, snippets: snippets,
                    route: Route(
                        modelClass: modelClass.rawValue,
                        reason: modelClass == classes[0] ? reason : "fell back to \(modelClass.rawValue)"))
                var answer = routed
                answer.fallbackReason = firstFailure
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
            }
        }
        return fallback(firstFailure, Route(modelClass: "extractive", reason: "every model failed; extractive answer"))
    }

    /// Why one attempt gave no answer (its `reason` is what answers report as `fallback_reason`).
    struct AttemptFailure: Error {
        let reason: String
    }

    private func call(
        _ runtime: ModelBackends.Runtime, question: String, context: String?,
        given: [(entry: RetrievedEntry, passage: PromptBuilder.Passage)], maxCitations: Int,
        retrievalConfidence: Double, snippets: [String: String], route: Route
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
        let started = ContinuousClock.now
        let completion: ChatCompletionClient.Completion
        do {
            guard
                let done = try await runtime.gate.run({
                    try await self.client.complete(
                        request, backend: backend, credential: credential, deadline: deadline)
                })
            else {
                runtime.breaker.record(.abandoned, permit: permit)
                throw AttemptFailure(reason: "backend_busy")
            }
            completion = done
        } catch let failure as ChatCompletionClient.Failure {
            runtime.breaker.record(failure.countsAgainstBackend ? .failure : .abandoned, permit: permit)
            throw AttemptFailure(reason: failure.reason)
        } catch is CancellationError {
            runtime.breaker.record(.abandoned, permit: permit)
            throw CancellationError()
        }
        runtime.breaker.record(.success, permit: permit)
        Timer(label: "zaas_model_call_duration_seconds", dimensions: [("model", backend.name)])
            .recordInterval(since: started)
        let given = Array(given.prefix(prompt.passageCount))
        guard
            let checked = GenerativeAnswerer.checked(
                completion.text, given: given, maxCitations: maxCitations, retrievalConfidence: retrievalConfidence,
                snippets: snippets)
        else { throw AttemptFailure(reason: "unsupported_answer") }
        let input = completion.inputTokens ?? prompt.estimatedTokens
        let output = completion.outputTokens ?? PromptBuilder.estimatedTokens(completion.text)
        Counter(label: "zaas_model_tokens_total", dimensions: [("model", backend.name), ("direction", "input")])
            .increment(by: input)
        Counter(label: "zaas_model_tokens_total", dimensions: [("model", backend.name), ("direction", "output")])
            .increment(by: output)
        return Routed(
            text: checked.text, citations: checked.citations, confidence: checked.confidence, modelUsed: backend.name,
            covered: true, route: route, fallbackReason: nil, inputTokens: input, outputTokens: output,
            costNanoDollars: backend.costNanoDollars(inputTokens: input, outputTokens: output))
    }
}

extension Timer {
    fileprivate func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        self.recordNanoseconds(
            elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
