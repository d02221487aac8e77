import Foundation

/// A scriptable stand-in for a model provider's OpenAI-compatible API: a real HTTP server on
/// loopback (python3's asyncio, as a child process, so it can misbehave at the socket level), for
/// tests that drive slow answers, 429s and 500s, malformed bodies, dropped connections, invented
/// citations and injection attempts.
///
/// `POST /v1/chat/completions` takes the next scripted behaviour (or the default) and records the
/// request. `POST /_script` sets the script, `GET /_requests` returns what was received (and
/// whether the client left before the answer ended), `POST /_reset` clears both.
public final class FakeModelProvider: @unchecked Sendable {
    /// What one call gets.
    public enum Behaviour: Sendable {
        /// A whole answer after `delay`, with the usage it reports.
        case answer(String, delay: Duration = .zero, usage: (input: Int, output: Int)? = (100, 20))
        /// The answer as server-sent events, one piece every `interval`.
        case stream([String], interval: Duration = .milliseconds(20), usage: (input: Int, output: Int)? = (100, 20))
        /// An HTTP status with a JSON error body.
        case status(Int)
        /// A 200 whose body is these bytes as they are.
        case raw(String)
        /// The connection is closed before any answer.
        case drop
        /// Some pieces are streamed, then the connection is closed.
        case dropMidStream([String])
        /// The whole answer streamed, then the connection closed although the response said
        /// nothing of it (as llama-server does after a streamed answer).
        case streamThenClose([String])
        /// Nothing is sent until the client gives up.
        case hang
        /// 429 with `Retry-After` (seconds): a sidecar whose queue is full.
        case busy(retryAfter: Int)

        var json: [String: Any] {
            func usage(_ value: (input: Int, output: Int)?) -> Any {
                value.map { [$0.input, $0.output] } ?? NSNull()
            }
            switch self {
            case .answer(let text, let delay, let counts):
                return ["kind": "answer", "text": text, "delay_ms": delay.milliseconds, "usage": usage(counts)]
            case .stream(let pieces, let interval, let counts):
                return [
                    "kind": "stream", "pieces": pieces, "interval_ms": interval.milliseconds, "usage": usage(counts),
                ]
            case .status(let status): return ["kind": "status", "status": status]
            case .raw(let body): return ["kind": "raw", "body": body]
            case .drop: return ["kind": "drop"]
            case .dropMidStream(let pieces): return ["kind": "drop_mid_stream", "pieces": pieces]
            case .streamThenClose(let pieces): return ["kind": "stream_then_close", "pieces": pieces]
            case .hang: return ["kind": "hang"]
            case .busy(let seconds): return ["kind": "busy", "retry_after": seconds]
            }
        }
    }

    /// One call as the provider saw it.
    public struct Received: Sendable {
        /// The request body, decoded.
        public let body: [String: any Sendable]
        public let authorization: String?
        /// The client closed the connection before the answer was complete.
        public let clientLeft: Bool

        public var messages: [(role: String, content: String)] {
            (self.body["messages"] as? [[String: Any]] ?? []).map {
                ($0["role"] as? String ?? "", $0["content"] as? String ?? "")
            }
        }
    }

    public let port: Int
    /// The base URL a catalog entry points at.
    public var baseURL: String { "http://127.0.0.1:\(self.port)/v1" }
    private var process: ChildProcess?

    public init() throws {
        self.port = try RedisServerProcess.freePort()
    }

    deinit { self.process?.kill() }

    /// Starts listening; returns once it answers.
    public func start() async throws {
        self.process = try await ChildProcess.pythonListener(
            script: Self.script, arguments: [String(self.port)], port: self.port, what: "the fake model provider")
    }

    public func stop() {
        self.process?.kill()
        self.process = nil
    }

    /// The behaviours the next calls get, in order; after them, `default` (a plain answer).
    public func script(_ behaviours: [Behaviour], default fallback: Behaviour = .answer("The fake provider answers."))
        async throws
    {
        let body: [String: Any] = ["behaviours": behaviours.map(\.json), "default": fallback.json]
        _ = try await self.control("POST", "/_script", body: body)
    }

    /// Every call received since the last reset, in order.
    public func received() async throws -> [Received] {
        let reply = try await self.control("GET", "/_requests", body: nil)
        let calls = (reply as? [String: Any])?["requests"] as? [[String: Any]] ?? []
        return calls.map { call in
            Received(
                body: Self.sendable(call["body"] as? [String: Any] ?? [:]),
                authorization: call["authorization"] as? String, clientLeft: call["client_left"] as? Bool ?? false)
        }
    }

    /// What `GET /metrics` serves (Prometheus text, as the AirLLM sidecar's); at first
    /// `airllm_model_loaded 1`, so a catalog entry of the large-local class is called.
    public func setMetrics(_ text: String) async throws {
        _ = try await self.control("POST", "/_metrics", body: ["text": text])
    }

    public func reset() async throws {
        _ = try await self.control("POST", "/_reset", body: nil)
    }

    private func control(_ method: String, _ path: String, body: [String: Any]?) async throws -> Any? {
        let reply = try await TestHTTP.send(
            method, "http://127.0.0.1:\(self.port)" + path,
            json: try body.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) })
        guard reply.status == 200 else {
            throw TestEnvironment.SetupError(message: "fake provider \(path): \(reply.status) \(reply.text)")
        }
        return reply.json
    }

    private static func sendable(_ object: [String: Any]) -> [String: any Sendable] {
        // JSONSerialization's values (strings, numbers, arrays, dictionaries) are immutable here.
        object.mapValues { value in
            switch value {
            case let string as String: string
            case let number as NSNumber: number.doubleValue
            case let list as [[String: Any]]: list.map { sendable($0) }
            case let dictionary as [String: Any]: sendable(dictionary)
            default: "\(value)"
            }
        }
    }

    static let script = #"""
        import asyncio, json, sys

        port = int(sys.argv[1])
        state = {"metrics": "airllm_model_loaded 1\n", "behaviours": [], "default": {"kind": "answer", "text": "The fake provider answers.", "delay_ms": 0, "usage": [100, 20]}, "requests": []}

        async def read_request(reader):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = b""
            if "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")
                        break
                    body += await reader.readexactly(size)
                    await reader.readexactly(2)
            return method, path, headers, body

        def respond(writer, status, body, content_type="application/json", extra=""):
            data = body if isinstance(body, bytes) else body.encode()
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {len(data)}\r\n\r\n".encode() + data)

        def completion(text, usage):
            body = {"id": "fake", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
            if usage:
                body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1]}
            return json.dumps(body)

        def chunk(text=None, finish=None, usage=None):
            body = {"id": "fake", "object": "chat.completion.chunk", "choices": []}
            if text is not None or finish is not None:
                choice = {"index": 0, "delta": {}, "finish_reason": finish}
                if text is not None:
                    choice["delta"]["content"] = text
                body["choices"].append(choice)
            if usage:
                body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
            return ("data: " + json.dumps(body) + "\n\n").encode()

        async def stream(writer, record, pieces, interval, usage, done=True):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            def send(data):
                writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            try:
                for piece in pieces:
                    send(chunk(text=piece))
                    await writer.drain()
                    await asyncio.sleep(interval / 1000)
                if not done:
                    return
                send(chunk(finish="stop"))
                send(chunk(usage=usage))
                send(b"data: [DONE]\n\n")
                writer.write(b"0\r\n\r\n")
                await writer.drain()
            except (ConnectionError, OSError):
                record["client_left"] = True

        async def completions(reader, writer, headers, body):
            try:
                request = json.loads(body)
            except Exception:
                request = {"unparsed": body.decode("utf-8", "replace")}
            record = {"body": request, "authorization": headers.get("authorization"), "client_left": False}
            state["requests"].append(record)
            behaviour = state["behaviours"].pop(0) if state["behaviours"] else state["default"]
            kind = behaviour["kind"]
            if kind == "answer":
                await asyncio.sleep(behaviour.get("delay_ms", 0) / 1000)
                if request.get("stream"):
                    await stream(writer, record, [behaviour["text"]], 0, behaviour.get("usage"))
                else:
                    respond(writer, 200, completion(behaviour["text"], behaviour.get("usage")))
            elif kind == "stream":
                await stream(writer, record, behaviour["pieces"], behaviour.get("interval_ms", 20), behaviour.get("usage"))
            elif kind == "status":
                respond(writer, behaviour["status"], json.dumps({"error": {"message": "scripted failure", "type": "fake"}}))
            elif kind == "busy":
                respond(writer, 429, json.dumps({"error": {"message": "queue full", "type": "busy"}}),
                        extra=f"Retry-After: {behaviour['retry_after']}\r\n")
            elif kind == "raw":
                respond(writer, 200, behaviour["body"])
            elif kind == "drop":
                pass
            elif kind == "stream_then_close":
                await stream(writer, record, behaviour["pieces"], 0, [100, 20])
            elif kind == "drop_mid_stream":
                await stream(writer, record, behaviour["pieces"], 10, None, done=False)
            elif kind == "hang":
                try:
                    while not reader.at_eof():
                        if not await reader.read(1024):
                            break
                except (ConnectionError, OSError):
                    pass
                record["client_left"] = True
            return kind not in ("drop", "drop_mid_stream", "hang", "stream_then_close")

        async def handle(reader, writer):
            try:
                while True:
                    try:
                        method, path, headers, body = await read_request(reader)
                    except (asyncio.IncompleteReadError, ConnectionError):
                        break
                    if path == "/_script":
                        script = json.loads(body)
                        state["behaviours"] = list(script["behaviours"])
                        state["default"] = script["default"]
                        respond(writer, 200, "{}")
                    elif path == "/_metrics":
                        state["metrics"] = json.loads(body)["text"]
                        respond(writer, 200, "{}")
                    elif method == "GET" and path == "/metrics":
                        respond(writer, 200, state["metrics"], content_type="text/plain; version=0.0.4")
                    elif path == "/_requests":
                        respond(writer, 200, json.dumps({"requests": state["requests"]}))
                    elif path == "/_reset":
                        state["behaviours"], state["requests"] = [], []
                        respond(writer, 200, "{}")
                    elif method == "POST" and path.endswith("/chat/completions"):
                        if not await completions(reader, writer, headers, body):
                            break
                    else:
                        respond(writer, 404, json.dumps({"error": {"message": "not found"}}))
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def main():
            server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True)
            async with server:
                await server.serve_forever()

        asyncio.run(main())
        """#
}

extension Duration {
    fileprivate var milliseconds: Int {
        Int(self.components.seconds * 1000 + self.components.attoseconds / 1_000_000_000_000_000)
    }
}
