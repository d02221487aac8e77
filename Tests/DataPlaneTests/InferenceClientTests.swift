import Foundation
import Shared
import Testing

@testable import DataPlane

@Suite("inference: the circuit breaker, chat-completion parsing, server-sent events, credentials")
struct InferenceClientTests {
    @Test(
        "the circuit opens after consecutive failures, refuses while open, lets one probe through, and closes on its success"
    )
    func circuit() throws {
        let breaker = CircuitBreaker(failureThreshold: 3, coolDown: .milliseconds(200), maximumCoolDown: .seconds(1))
        // The breaker is told the time, so the test does not depend on how fast the machine is.
        let start = ContinuousClock.now
        func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }
        // Isolated failures never open it.
        for _ in 0..<10 {
            breaker.record(.failure, permit: try #require(breaker.acquire(at: at(0))), at: at(0))
            breaker.record(.success, permit: try #require(breaker.acquire(at: at(0))), at: at(0))
        }
        #expect(breaker.state(at: at(0)) == .closed)
        // Abandoned calls (the client left) count for nothing.
        for _ in 0..<5 { breaker.record(.abandoned, permit: try #require(breaker.acquire(at: at(0))), at: at(0)) }
        #expect(breaker.state(at: at(0)) == .closed)

        for _ in 0..<3 { breaker.record(.failure, permit: try #require(breaker.acquire(at: at(0))), at: at(0)) }
        #expect(breaker.state(at: at(100)) == .open(until: at(200)))
        #expect(breaker.acquire(at: at(100)) == nil && !breaker.isAvailable(at: at(100)))

        // After the cool-down: half-open, one probe at a time.
        #expect(breaker.state(at: at(250)) == .halfOpen && breaker.isAvailable(at: at(250)))
        let probe = try #require(breaker.acquire(at: at(250)))
        #expect(probe.isProbe)
        #expect(breaker.acquire(at: at(260)) == nil && !breaker.isAvailable(at: at(260)))
        // The probe fails: open again, for twice as long (400 ms from 300).
        breaker.record(.failure, permit: probe, at: at(300))
        #expect(breaker.acquire(at: at(650)) == nil)
        let second = try #require(breaker.acquire(at: at(700)))
        #expect(second.isProbe)
        breaker.record(.success, permit: second, at: at(710))
        #expect(breaker.state(at: at(710)) == .closed)
        #expect(breaker.acquire(at: at(710))?.isProbe == false)
        // Closed again, the cool-down is back to its start: three failures open it for 200 ms.
        for _ in 0..<3 { breaker.record(.failure, permit: try #require(breaker.acquire(at: at(800))), at: at(800)) }
        #expect(breaker.state(at: at(800)) == .open(until: at(1000)))
    }

    @Test("a whole completion is read with its usage; anything else is a malformed or empty answer")
    func parseCompletion() throws {
        let good = Data(
            #"{"choices": [{"message": {"role": "assistant", "content": "Energy is conserved [1]."}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 120, "completion_tokens": 7}}"#
                .utf8)
        let completion = try ChatCompletionClient.parseCompletion(good)
        #expect(
            completion
                == .init(text: "Energy is conserved [1].", finishReason: "stop", inputTokens: 120, outputTokens: 7))
        for (body, kind) in [
            ("not json", ChatCompletionClient.Failure.Kind.malformed),
            (#"{"choices": []}"#, .malformed),
            (#"{"choices": [{"message": {"content": 42}}]}"#, .malformed),
            (#"{"error": {"message": "overloaded"}}"#, .malformed),
            (#"{"choices": [{"message": {"content": "  \n "}}]}"#, .empty),
        ] {
            #expect(throws: ChatCompletionClient.Failure.self) {
                try ChatCompletionClient.parseCompletion(Data(body.utf8))
            }
            do {
                _ = try ChatCompletionClient.parseCompletion(Data(body.utf8))
            } catch let failure as ChatCompletionClient.Failure {
                #expect(failure.kind == kind, "\(body)")
            }
        }
    }

    @Test("server-sent events are split however the bytes arrive; streamed chunks add up to the answer")
    func serverSentEvents() throws {
        let stream = Array(
            """
            : keep-alive\r
            data: {"choices": [{"delta": {"content": "Energy"}}]}\r
            \r
            data: {"choices": [{"delta": {"content": " is conserved."}, "finish_reason": "stop"}]}

            data: {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 4}}

            data: [DONE]


            """.utf8)
        for split in [1, 2, 7, 64, stream.count] {
            var parser = ServerSentEvents.Parser()
            var events: [String] = []
            var offset = 0
            while offset < stream.count {
                events += parser.feed(stream[offset..<min(offset + split, stream.count)])
                offset += split
            }
            #expect(events.count == 4, "split \(split)")
            #expect(events.last == "[DONE]")
            var completion = ChatCompletionClient.Completion(text: "")
            var pieces: [String] = []
            for event in events.dropLast() {
                pieces.append(try ChatCompletionClient.parseChunk(Data(event.utf8), into: &completion))
            }
            #expect(pieces == ["Energy", " is conserved.", ""])
            #expect(
                completion
                    == .init(text: "Energy is conserved.", finishReason: "stop", inputTokens: 50, outputTokens: 4))
        }
        var completion = ChatCompletionClient.Completion(text: "")
        #expect(throws: ChatCompletionClient.Failure.self) {
            try ChatCompletionClient.parseChunk(Data("{oops".utf8), into: &completion)
        }
    }

    @Test("credentials come from the environment or the secret directory, never from a malformed name")
    func credentials() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("zaas-creds-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "sk-from-file\n".write(toFile: directory + "/ZAAS_MODEL_FILE", atomically: true, encoding: .utf8)
        try "two\nlines".write(toFile: directory + "/ZAAS_MODEL_TWO", atomically: true, encoding: .utf8)
        try "x".write(toFile: directory + "/lower", atomically: true, encoding: .utf8)
        let credentials = ModelCredentials(
            directory: directory, environment: ["ZAAS_MODEL_ENV": "sk-from-env", "ZAAS_MODEL_FILE": ""])
        #expect(credentials.value(named: "ZAAS_MODEL_ENV") == "sk-from-env")
        #expect(credentials.value(named: "ZAAS_MODEL_FILE") == "sk-from-file")
        #expect(credentials.value(named: "ZAAS_MODEL_TWO") == nil)
        #expect(credentials.value(named: "ZAAS_MODEL_MISSING") == nil)
        #expect(credentials.value(named: "lower") == nil)
        #expect(credentials.value(named: "../ZAAS_MODEL_FILE") == nil)
        #expect(ModelCredentials(directory: nil, environment: [:]).value(named: "ZAAS_MODEL_FILE") == nil)
    }
}
