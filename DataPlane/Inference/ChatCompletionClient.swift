import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Shared

/// One call to an OpenAI-compatible chat-completions backend (`POST {base_url}/chat/completions`),
/// whole or streamed as server-sent events. It knows the wire format and how calls fail; which
/// backend to call, and what to do when one fails, is `ModelRouter`'s business.
struct ChatCompletionClient: Sendable {
    struct Message: Sendable, Equatable, Encodable {
        let role: String
        let content: String
    }

    struct Request: Sendable {
        var messages: [Message]
        var maximumTokens: Int
        /// Greedy by default: an answer from the canon should not change from one ask to the next
        /// (the caches and the audit assume the same question gets the same answer).
        var temperature: Double = 0
    }

    /// What the backend answered.
    struct Completion: Sendable, Equatable {
        var text: String
        var finishReason: String?
        /// As the backend counted them; nil when it did not say.
        var inputTokens: Int?
        var outputTokens: Int?
    }

    /// Why a call gave no usable answer; `reason` is what answers report as `fallback_reason`.
    struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        enum Kind: String, Sendable {
            /// No connection could be made (nothing was sent: safe to retry).
            case connectFailed = "connect_failed"
            case timedOut = "timeout"
            /// The connection closed before the answer was complete.
            case connectionLost = "connection_lost"
            case rateLimited = "backend_rate_limited"
            /// 429 with `Retry-After`: the backend is healthy and full (the AirLLM sidecar's
            /// queue); it is skipped until then and its circuit does not count it.
            case busy = "backend_busy"
            case serverError = "backend_error"
            /// 4xx other than 429: this request, or the catalog entry (401/403), is wrong.
            case refused = "backend_refused"
            case malformed = "malformed_response"
            case empty = "empty_answer"
            case tooLarge = "response_too_large"
        }

        let kind: Kind
        let detail: String
        /// For `busy`: how long the backend asked callers to wait.
        var retryAfter: Duration? = nil

        var reason: String { self.kind.rawValue }
        var description: String { "\(self.kind.rawValue): \(self.detail)" }

        /// Whether the backend's health is to blame (the circuit counts it). A request the
        /// backend refused as malformed or too long (400, 413, 422) says nothing about its health.
        var countsAgainstBackend: Bool {
            switch self.kind {
            case .connectFailed, .timedOut, .connectionLost, .rateLimited, .serverError, .malformed, .empty, .tooLarge:
                true
            case .refused, .busy: false
            }
        }
    }

    /// Bodies above this are refused (a runaway or hostile backend cannot fill the node's memory).
    static let maximumResponseBytes = 4 << 20

    let httpClient: HTTPClient

    /// The whole answer in one response.
    func complete(_ request: Request, backend: ModelBackend, credential: String?, deadline: NIODeadline) async throws
        -> Completion
    {
        let response = try await self.send(
            request, stream: false, backend: backend, credential: credential, deadline: deadline)
        let body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: Self.maximumResponseBytes)
        } catch is NIOTooManyBytesError {
            throw Failure(kind: .tooLarge, detail: "more than \(Self.maximumResponseBytes) bytes")
        } catch {
            throw Self.bodyFailure(error)
        }
        return try Self.parseCompletion(Data(body.readableBytesView))
    }

    /// The answer as it is generated: `onText` gets each piece in order; the completion is the
    /// whole. The backend call ends when the caller's task is cancelled (a client that left).
    func stream(
        _ request: Request, backend: ModelBackend, credential: String?, deadline: NIODeadline,
        onText: (String) async throws -> Void
    ) async throws -> Completion {
        let response = try await self.send(
            request, stream: true, backend: backend, credential: credential, deadline: deadline)
        var parser = ServerSentEvents.Parser()
        var completion = Completion(text: "")
        var received = 0
        do {
            for try await chunk in response.body {
                received += chunk.readableBytes
                guard received <= Self.maximumResponseBytes else {
                    throw Failure(kind: .tooLarge, detail: "more than \(Self.maximumResponseBytes) bytes")
                }
                for event in parser.feed(chunk.readableBytesView) {
                    if event == "[DONE]" { return try Self.finished(completion) }
                    let piece = try Self.parseChunk(Data(event.utf8), into: &completion)
                    if !piece.isEmpty { try await onText(piece) }
                }
            }
        } catch let failure as Failure {
            throw failure
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw Self.bodyFailure(error)
        }
        // Some servers end the stream without `[DONE]`: what arrived is the answer.
        return try Self.finished(completion)
    }

    private func send(
        _ request: Request, stream: Bool, backend: ModelBackend, credential: String?, deadline: NIODeadline
    ) async throws -> HTTPClientResponse {
        let base = backend.baseURL.hasSuffix("/") ? String(backend.baseURL.dropLast()) : backend.baseURL
        var http = HTTPClientRequest(url: base + "/chat/completions")
        http.method = .POST
        http.headers.add(name: "Content-Type", value: "application/json")
        http.headers.add(name: "Accept", value: stream ? "text/event-stream" : "application/json")
        if let credential { http.headers.add(name: "Authorization", value: "Bearer \(credential)") }
        var body: [String: Any] = [
            "model": backend.upstreamModel,
            "messages": request.messages.map { ["role": $0.role, "content": $0.content] },
            "max_tokens": request.maximumTokens,
            "temperature": request.temperature,
            "stream": stream,
        ]
        if stream { body["stream_options"] = ["include_usage": true] }
        http.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        let response: HTTPClientResponse
        do {
            response = try await self.httpClient.execute(http, deadline: deadline)
        } catch let error where Self.isStaleConnection(error) && NIODeadline.now() < deadline {
            // A pooled connection the backend had closed (llama-server closes one after a
            // streamed answer, while saying keep-alive), found closed before any answer: sent
            // once more, on a new connection. A chat completion has no effect but its answer, so
            // sending it again is safe even if the first copy reached the backend.
            do {
                response = try await self.httpClient.execute(http, deadline: deadline)
            } catch {
                throw Self.failure(error)
            }
        } catch {
            throw Self.failure(error)
        }
        switch response.status.code {
        case 200..<300:
            return response
        case 429:
            // Retry-After in seconds (RFC 9110 also allows a date; backends that mean "busy"
            // send seconds), at most five minutes.
            if let text = response.headers.first(name: "retry-after"), let seconds = Int(text), seconds >= 0 {
                throw Failure(
                    kind: .busy, detail: "429 from the backend, retry after \(seconds) s",
                    retryAfter: .seconds(min(seconds, 300)))
            }
            throw Failure(kind: .rateLimited, detail: "429 from the backend")
        case 500..<600:
            throw Failure(kind: .serverError, detail: "\(response.status.code) from the backend")
        default:
            throw Failure(kind: .refused, detail: "\(response.status.code) from the backend")
        }
    }

    /// The connection was found closed before the response began.
    static func isStaleConnection(_ error: any Error) -> Bool {
        if let channel = error as? ChannelError, channel == .ioOnClosedChannel { return true }
        if let client = error as? HTTPClientError, client == .remoteConnectionClosed { return true }
        return false
    }

    /// An error while the answer's body arrived: the answer had begun, so short of the deadline
    /// (or the caller leaving) the connection was lost.
    static func bodyFailure(_ error: any Error) -> any Error {
        let mapped = Self.failure(error)
        if let failure = mapped as? Failure, failure.kind != .timedOut {
            return Failure(kind: .connectionLost, detail: failure.detail)
        }
        return mapped
    }

    static func failure(_ error: any Error) -> any Error {
        if error is CancellationError { return error }
        if let failure = error as? Failure { return failure }
        if let client = error as? HTTPClientError {
            switch client {
            case .connectTimeout:
                return Failure(kind: .connectFailed, detail: "\(client)")
            case .deadlineExceeded, .readTimeout, .writeTimeout:
                return Failure(kind: .timedOut, detail: "\(client)")
            case .remoteConnectionClosed, .bodyLengthMismatch:
                return Failure(kind: .connectionLost, detail: "\(client)")
            case .cancelled:
                return CancellationError()
            default:
                break
            }
        }
        // With connection retries off, a refused or unreachable backend fails the connect at once.
        if error is NIOConnectionError || error is IOError {
            return Failure(kind: .connectFailed, detail: "\(error)")
        }
        return Failure(kind: .serverError, detail: "\(error)")
    }

    // MARK: Parsing

    static func parseCompletion(_ data: Data) throws -> Completion {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let choices = object["choices"] as? [[String: Any]], let first = choices.first,
            let message = first["message"] as? [String: Any]
        else { throw Failure(kind: .malformed, detail: "no choices[0].message") }
        guard let text = message["content"] as? String else {
            throw Failure(kind: .malformed, detail: "choices[0].message.content is not a string")
        }
        let usage = object["usage"] as? [String: Any]
        return try Self.finished(
            Completion(
                text: text, finishReason: first["finish_reason"] as? String,
                inputTokens: usage?["prompt_tokens"] as? Int, outputTokens: usage?["completion_tokens"] as? Int))
    }

    /// One streamed chunk: its piece of text (possibly empty); usage and finish reason go into
    /// `completion` when the chunk carries them.
    static func parseChunk(_ data: Data, into completion: inout Completion) throws -> String {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Failure(kind: .malformed, detail: "a streamed event is not a JSON object")
        }
        if let usage = object["usage"] as? [String: Any] {
            completion.inputTokens = usage["prompt_tokens"] as? Int ?? completion.inputTokens
            completion.outputTokens = usage["completion_tokens"] as? Int ?? completion.outputTokens
        }
        guard let choices = object["choices"] as? [[String: Any]], let first = choices.first else { return "" }
        if let reason = first["finish_reason"] as? String { completion.finishReason = reason }
        let piece = (first["delta"] as? [String: Any])?["content"] as? String ?? ""
        completion.text += piece
        return piece
    }

    private static func finished(_ completion: Completion) throws -> Completion {
        guard !completion.text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw Failure(kind: .empty, detail: "the backend answered nothing")
        }
        return completion
    }
}

/// Server-sent events as chat-completion backends send them: `data:` lines, events separated by
/// a blank line. Only the data of each event matters here.
enum ServerSentEvents {
    struct Parser {
        private var line: [UInt8] = []
        private var data: [String] = []

        /// The events completed by these bytes (their data, lines joined by newlines).
        mutating func feed(_ bytes: some Sequence<UInt8>) -> [String] {
            var events: [String] = []
            for byte in bytes {
                if byte == UInt8(ascii: "\n") {
                    if self.line.last == UInt8(ascii: "\r") { self.line.removeLast() }
                    if self.line.isEmpty {
                        if !self.data.isEmpty { events.append(self.data.joined(separator: "\n")) }
                        self.data = []
                    } else if self.line.starts(with: Array("data:".utf8)) {
                        var value = self.line.dropFirst(5)
                        if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
                        self.data.append(String(decoding: value, as: UTF8.self))
                    }
                    self.line.removeAll(keepingCapacity: true)
                } else {
                    self.line.append(byte)
                }
            }
            return events
        }
    }
}
