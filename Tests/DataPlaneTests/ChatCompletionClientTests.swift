import AsyncHTTPClient
import Foundation
import NIOCore
import Shared
import TestSupport
import Testing

@testable import DataPlane

/// The chat-completion client against a scripted provider on loopback: each way a backend fails
/// becomes a `Failure` of a stable kind (what answers report as `fallback_reason`), never a hang
/// or a crash, and a caller that leaves ends the backend call.
@Suite("chat completions against a scripted provider: answers, streams and every failure mode")
struct ChatCompletionClientTests {
    static func backend(_ provider: FakeModelProvider) -> ModelBackend {
        ModelBackend(
            id: UUID(), name: "fake-cloud", modelClass: .cloud, baseURL: provider.baseURL,
            upstreamModel: "vendor/fake-120b", credentialName: "ZAAS_MODEL_FAKE")
    }

    static let request = ChatCompletionClient.Request(
        messages: [.init(role: "system", content: "Answer from the passages."), .init(role: "user", content: "Q?")],
        maximumTokens: 64)

    static func withProvider(_ body: (FakeModelProvider, ChatCompletionClient) async throws -> Void) async throws {
        let provider = try FakeModelProvider()
        try await provider.start()
        defer { provider.stop() }
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            try await body(provider, ChatCompletionClient(httpClient: http))
        } catch {
            try await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    static func failureKind(_ call: () async throws -> Void) async -> ChatCompletionClient.Failure.Kind? {
        do {
            try await call()
            return nil
        } catch let failure as ChatCompletionClient.Failure {
            return failure.kind
        } catch {
            Issue.record("not a Failure: \(error)")
            return nil
        }
    }

    @Test("a whole answer: the request carries the upstream model, the messages and the credential; usage is read")
    func answer() async throws {
        try await Self.withProvider { provider, client in
            try await provider.script([.answer("Energy is conserved [1].", usage: (321, 9))])
            let completion = try await client.complete(
                Self.request, backend: Self.backend(provider), credential: "sk-test", deadline: .now() + .seconds(5))
            #expect(completion.text == "Energy is conserved [1]." && completion.finishReason == "stop")
            #expect(completion.inputTokens == 321 && completion.outputTokens == 9)
            let received = try await provider.received()
            #expect(received.count == 1)
            #expect(received.first?.authorization == "Bearer sk-test")
            #expect(received.first?.body["model"] as? String == "vendor/fake-120b")
            #expect(received.first?.body["max_tokens"] as? Double == 64)
            #expect(received.first?.messages.map(\.role) == ["system", "user"])
        }
    }

    @Test(
        "a backend that closes each connection after a streamed answer (llama-server): back-to-back calls all succeed")
    func closedAfterStream() async throws {
        try await Self.withProvider { provider, client in
            let calls = 40
            try await provider.script(
                [], default: .streamThenClose(["Energy is ", "conserved [1]."]))
            for call in 0..<calls {
                var pieces: [String] = []
                let completion = try await client.stream(
                    Self.request, backend: Self.backend(provider), credential: nil, deadline: .now() + .seconds(5)
                ) { pieces.append($0) }
                #expect(completion.text == "Energy is conserved [1].", "call \(call)")
                #expect(pieces == ["Energy is ", "conserved [1]."])
            }
            #expect(try await provider.received().count == calls)
        }
    }

    @Test(
        "429, 500, 400, a malformed body, an empty answer, a dropped connection, an oversized body, a refused connection, a hang"
    )
    func failures() async throws {
        try await Self.withProvider { provider, client in
            let backend = Self.backend(provider)
            func call(_ deadline: TimeAmount = .seconds(5), backend: ModelBackend? = nil) async throws {
                _ = try await client.complete(
                    Self.request, backend: backend ?? Self.backend(provider), credential: nil,
                    deadline: .now() + deadline)
            }
            try await provider.script([
                // A connection closed before any answer is tried once more (it may have been a
                // pooled one the backend had closed): dropped twice, the call fails.
                .status(429), .status(503), .status(400), .raw("<html>gateway</html>"), .answer("  "), .drop, .drop,
                .raw(String(repeating: "x", count: ChatCompletionClient.maximumResponseBytes + 1)),
            ])
            #expect(await Self.failureKind { try await call() } == .rateLimited)
            #expect(await Self.failureKind { try await call() } == .serverError)
            #expect(await Self.failureKind { try await call() } == .refused)
            #expect(await Self.failureKind { try await call() } == .malformed)
            #expect(await Self.failureKind { try await call() } == .empty)
            #expect(await Self.failureKind { try await call() } == .connectionLost)
            #expect(await Self.failureKind { try await call() } == .tooLarge)
            #expect(try await provider.received().count == 8)
            #expect(!ChatCompletionClient.Failure(kind: .refused, detail: "").countsAgainstBackend)
            #expect(ChatCompletionClient.Failure(kind: .rateLimited, detail: "").countsAgainstBackend)

            // Nothing listens there.
            var gone = backend
            gone.baseURL = "http://127.0.0.1:\(try RedisServerProcess.freePort())/v1"
            #expect(await Self.failureKind { try await call(backend: gone) } == .connectFailed)

            // A backend that never answers is cut off at the deadline, and it sees the client leave.
            try await provider.script([.hang])
            let clock = ContinuousClock()
            let started = clock.now
            #expect(await Self.failureKind { try await call(.milliseconds(300)) } == .timedOut)
            #expect(clock.now - started < .seconds(3))
            let left = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                try await provider.received().last?.clientLeft == true
            }
            #expect(left != nil, "the provider never saw the client leave")
        }
    }

    @Test("a stream arrives piece by piece and adds up to the answer; a stream cut short is a lost connection")
    func streams() async throws {
        try await Self.withProvider { provider, client in
            try await provider.script([
                .stream(["Energy", " is", " conserved", " [1]."], usage: (200, 4)), .dropMidStream(["Energy", " is"]),
            ])
            var pieces: [String] = []
            let completion = try await client.stream(
                Self.request, backend: Self.backend(provider), credential: nil, deadline: .now() + .seconds(5)
            ) { pieces.append($0) }
            #expect(pieces == ["Energy", " is", " conserved", " [1]."])
            #expect(completion.text == "Energy is conserved [1]." && completion.outputTokens == 4)
            #expect(try await provider.received().first?.body["stream"] as? Double == 1)

            var partial: [String] = []
            let kind = await Self.failureKind {
                _ = try await client.stream(
                    Self.request, backend: Self.backend(provider), credential: nil, deadline: .now() + .seconds(5)
                ) { partial.append($0) }
            }
            #expect(kind == .connectionLost || kind == .timedOut, "\(String(describing: kind))")
            // What arrived before the cut, in order, and nothing else. Not necessarily both pieces:
            // AsyncHTTPClient fails a body stream as soon as the connection closes, and a piece still
            // in its buffer then is dropped (seen on a loaded machine: only "Energy").
            #expect(["Energy", " is"].starts(with: partial), "\(partial)")
        }
    }

    @Test("a caller that leaves mid-stream ends the backend call")
    func cancellation() async throws {
        try await Self.withProvider { provider, client in
            try await provider.script([.stream((0..<200).map { "piece \($0) " }, interval: .milliseconds(50))])
            let firstPiece = AsyncStream<Void>.makeStream()
            let call = Task {
                try await client.stream(
                    Self.request, backend: Self.backend(provider), credential: nil, deadline: .now() + .seconds(30)
                ) { _ in firstPiece.continuation.yield() }
            }
            for await _ in firstPiece.stream { break }
            call.cancel()
            let result = await call.result
            #expect(throws: CancellationError.self) { try result.get() }
            let left = try await TestHTTP.waitUntil(timeout: .seconds(20)) {
                try await provider.received().last?.clientLeft == true
            }
            #expect(left != nil, "the provider should see the connection closed long before its 10 s stream ends")
        }
    }
}
