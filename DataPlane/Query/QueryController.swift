import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Shared

/// `POST /api/v1/query`: decodes the request, runs the `QueryPipeline` and renders its answer,
/// whole (`application/json`) or, for `Accept: text/event-stream`, as server-sent events while a
/// model generates it.
struct QueryController: Sendable {
    static let maximumBody = 64 * 1024
    /// A streaming response writes a comment this often while nothing else is sent: proxies keep
    /// the connection, and a client that left is noticed (the write fails) and its model call ended.
    static let heartbeat = Duration.seconds(1)

    let pipeline: QueryPipeline
    let inFlight: InFlightLimit
    let audit: AuditRecorder
    let jobs: QueryJobs
    let counters = TenantQueryCounters()

    func addRoutes(to group: RouterGroup<AuthenticatedRequestContext>) {
        group.post { request, context in
            try await self.query(request, context: context)
        }
    }

    /// Every outcome is recorded in the audit before its response is written: an answer here,
    /// a refusal or failure by `recordFailure` (the authenticator records its own).
    func query(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let started = ContinuousClock.now
        let queryID = UUID()
        let requestID = request.headers[.requestID]
        let tenant = context.caller.tenant.slug
        do {
            let response = try await self.answer(
                request, context: context, queryID: queryID, requestID: requestID, started: started)
            self.counters.record(tenant: tenant, code: response.status.code)
            return response
        } catch {
            self.recordFailure(
                error, caller: context.caller, queryID: queryID, requestID: requestID,
                total: ContinuousClock.now - started)
            if !(error is CancellationError) {
                self.counters.record(tenant: tenant, code: (error as? Problem)?.status.code ?? 500)
            }
            throw error
        }
    }

    /// A refusal is not an answer: when even its event cannot be recorded, the refusal still
    /// goes out (and the event is counted lost).
    private func recordFailure(
        _ error: any Error, caller: Caller, queryID: UUID, requestID: String?, total: Duration
    ) {
        try? self.audit.unanswered(
            .init(error: error), caller: caller, queryID: queryID, requestID: requestID, total: total)
    }

    private func answer(
        _ request: Request, context: AuthenticatedRequestContext, queryID: UUID, requestID: String?,
        started: ContinuousClock.Instant
    ) async throws -> Response {
        if let type = request.headers[.contentType], !type.lowercased().hasPrefix("application/json") {
            throw Problem.unsupportedMediaType("Send the query as application/json.")
        }
        let caller = context.caller
        // Held while this request works, streaming included: given back when the last reference goes.
        let place = try InFlightLimit.Place(self.inFlight)
        let body = try await request.collectBody(upTo: Self.maximumBody)
        let (admission, rateLimit) = try await self.pipeline.admit(body, caller: caller)
        // Asked asynchronously and no exact answer: recorded for a worker (an exact answer is
        // given at once, as without `async`).
        if case .missing(let admitted) = admission, admitted.query.async == true {
            return try await self.submit(
                body, caller: caller, queryID: queryID, requestID: requestID, rateLimit: rateLimit)
        }
        guard Self.wantsEventStream(request.headers[.accept]) else {
            let (answer, question): (QueryPipeline.Answer, String)
            switch admission {
            case .answered(let hit, let asked): (answer, question) = (hit, asked)
            case .missing(let admitted) where admitted.query.async == nil && !admitted.policy.asyncModelClasses.isEmpty:
                // Not said: asynchronous if the class it would be routed to is one of the policy's.
                switch try await self.pipeline.completeOrDefer(admitted) {
                case .answered(let computed): (answer, question) = (computed, admitted.query.question)
                case .deferred(let modelClass):
                    return try await self.submit(
                        body, caller: caller, queryID: queryID, requestID: requestID, rateLimit: rateLimit,
                        deferredTo: modelClass)
                }
            case .missing(let admitted):
                (answer, question) = (try await self.pipeline.complete(admitted), admitted.query.question)
            }
            let total = ContinuousClock.now - started
            try self.audit.answered(
                answer, question: question, caller: caller, queryID: queryID, requestID: requestID, total: total)
            return Self.response(answer, queryID: queryID, rateLimit: rateLimit, total: total)
        }
        // Refusals (a bad body, the limit, an overloaded embedder) are plain problem responses;
        // the caches are asked before the stream begins; a failure after the first byte is an
        // `error` event.
        var headers = rateLimit.headers
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-store"
        let lookup: QueryPipeline.Lookup
        let question: String
        switch admission {
        case .answered(let answer, let asked): (lookup, question) = (.hit(answer), asked)
        case .missing(let admitted):
            (lookup, question) = (try await self.pipeline.lookUp(admitted), admitted.query.question)
        }
        let (admitted, vector): (QueryPipeline.Admitted, [Float])
        switch lookup {
        case .hit(let answer):
            // A cache hit streams as one event.
            if case .missing = admission { self.pipeline.record(answer) }
            headers[.zaasCache] = answer.outcome.rawValue
            if let similarity = answer.similarity {
                headers[.zaasCacheSimilarity] = String(format: "%.4f", Double(similarity))
            }
            let total = ContinuousClock.now - started
            try self.audit.answered(
                answer, question: question, caller: caller, queryID: queryID, requestID: requestID, total: total)
            let event = Self.event("answer", Self.json(answer, queryID: queryID, total: total))
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: event))
        case .miss(let missing, let embedding):
            (admitted, vector) = (missing, embedding)
        }
        headers[.zaasCache] = CacheOutcome.miss.rawValue
        let pipeline = self.pipeline
        let audit = self.audit
        let logger = context.logger
        let instance = request.uri.path
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                // The place is held until the stream ends.
                defer { withExtendedLifetime(place) {} }
                let (events, continuation) = AsyncStream<ByteBuffer>.makeStream()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        defer { continuation.finish() }
                        do {
                            let answer = try await pipeline.compute(admitted, vector: vector) { event in
                                continuation.yield(Self.event(event))
                            }
                            pipeline.record(answer)
                            let total = ContinuousClock.now - started
                            try audit.answered(
                                answer, question: question, caller: caller, queryID: queryID, requestID: requestID,
                                total: total)
                            continuation.yield(
                                Self.event("answer", Self.json(answer, queryID: queryID, total: total)))
                        } catch is CancellationError {
                            try? audit.unanswered(
                                .init(outcome: AuditEvent.Outcome.abandoned, status: 200), caller: caller,
                                question: question, queryID: queryID, requestID: requestID,
                                total: ContinuousClock.now - started)
                        } catch {
                            let problem = ProblemMiddleware<AuthenticatedRequestContext>.problem(
                                for: error, logger: logger)
                            try? audit.unanswered(
                                .init(error: problem), caller: caller, question: question, queryID: queryID,
                                requestID: requestID, total: ContinuousClock.now - started)
                            var event = ByteBuffer()
                            event.writeBytes(problem.json(instance: instance, requestID: requestID))
                            continuation.yield(Self.event("error", event))
                        }
                    }
                    group.addTask {
                        while (try? await Task.sleep(for: Self.heartbeat)) != nil {
                            continuation.yield(ByteBuffer(string: ": keep-alive\n\n"))
                        }
                    }
                    // Ends when the answer task finishes the stream; a write that fails (the
                    // client left) throws, and leaving the group cancels the model call.
                    for await event in events { try await writer.write(event) }
                    group.cancelAll()
                }
                try await writer.finish(nil)
            })
    }

    /// Whether the `Accept` header asks for server-sent events (`text/event-stream`, with or
    /// without parameters, among other types).
    static func wantsEventStream(_ accept: String?) -> Bool {
        guard let accept else { return false }
        return accept.split(separator: ",").contains {
            $0.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() == "text/event-stream"
        }
    }

    /// An asynchronous query, recorded in Redis for a worker of any node: 202 with its id and where
    /// its answer will be (and `model_class`, when the tenant's policy made it asynchronous). Its
    /// audit event is recorded when it has run.
    private func submit(
        _ body: ByteBuffer, caller: Caller, queryID: UUID, requestID: String?, rateLimit: RateLimitDecision,
        deferredTo modelClass: ModelClass? = nil
    ) async throws -> Response {
        do {
            try await self.jobs.submit(
                id: queryID, tenant: caller.tenant.id, keyID: caller.key.keyID, keyRecord: caller.key.id,
                body: String(buffer: body), requestID: requestID)
        } catch {
            throw Problem.asyncUnavailable
        }
        let location = QueryStatusController.location(queryID)
        var headers = rateLimit.headers
        headers[.contentType] = "application/json"
        headers[.cacheControl] = "no-store"
        headers[.location] = location
        let routed = modelClass.map { #","model_class":"\#($0.rawValue)""# } ?? ""
        let reply =
            #"{"query_id":"\#(queryID.lowercased)","status":"queued","location":"\#(location)"\#(routed)}"#
        return Response(status: .accepted, headers: headers, body: .init(byteBuffer: ByteBuffer(string: reply)))
    }

    /// The stored answer with `cache_hit`, a fresh `query_id` (and the similarity of a semantic
    /// hit) added to its bytes; the limits and which cache answered in the headers.
    static func response(
        _ answer: QueryPipeline.Answer, queryID: UUID, rateLimit: RateLimitDecision, total: Duration
    ) -> Response {
        var headers = rateLimit.headers
        headers[.zaasCache] = answer.outcome.rawValue
        headers[.contentType] = "application/json"
        headers[.cacheControl] = "no-store"
        if let similarity = answer.similarity {
            headers[.zaasCacheSimilarity] = String(format: "%.4f", Double(similarity))
        }
        return Response(
            status: .ok, headers: headers, body: .init(byteBuffer: Self.json(answer, queryID: queryID, total: total)))
    }

    /// The answer's JSON: the stored bytes with `cache_hit`, `query_id`, `cache_similarity` and
    /// `timings_ms` added.
    static func json(_ answer: QueryPipeline.Answer, queryID: UUID, total: Duration) -> ByteBuffer {
        let json = answer.stored.json
        var body = ByteBuffer()
        body.reserveCapacity(json.count + 256)
        body.writeBytes(json.dropLast())
        body.writeString(#","cache_hit":\#(answer.outcome != .miss),"query_id":"\#(queryID.lowercased)""#)
        if let similarity = answer.similarity {
            body.writeString(#","cache_similarity":\#(String(format: "%.4f", Double(similarity)))"#)
        }
        body.writeString(#","timings_ms":\#(answer.timings.json(total: total))}"#)
        return body
    }

    /// One server-sent event: `event: NAME`, then `data:` with JSON on one line.
    static func event(_ name: String, _ json: ByteBuffer) -> ByteBuffer {
        var event = ByteBuffer()
        event.reserveCapacity(json.readableBytes + name.utf8.count + 16)
        event.writeString("event: \(name)\ndata: ")
        event.writeImmutableBuffer(json)
        event.writeString("\n\n")
        return event
    }

    static func event(_ event: InferenceEngine.StreamEvent) -> ByteBuffer {
        let encoder = StoredAnswer.encoder
        switch event {
        case .delta(let text, let citations):
            struct Delta: Encodable {
                let text: String
                let citations: [Citation]
            }
            let data = (try? encoder.encode(Delta(text: text, citations: citations))) ?? Data("{}".utf8)
            return Self.event("delta", ByteBuffer(bytes: data))
        case .reset(let reason):
            let data = (try? encoder.encode(["reason": reason])) ?? Data("{}".utf8)
            return Self.event("reset", ByteBuffer(bytes: data))
        }
    }
}
