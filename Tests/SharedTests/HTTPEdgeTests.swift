import Configuration
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

@testable import Shared

@Suite("problem+json, request ids and logs")
struct HTTPEdgeTests {
    struct Boom: Error {}

    func makeApp() -> some ApplicationProtocol {
        _ = PrometheusMetrics.registry
        let router = Router()
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: ProblemMiddleware())
        router.add(middleware: MetricsMiddleware())
        router.get("/problem") { _, _ -> String in
            throw Problem(
                slug: "quota-exceeded", title: "Too Many Requests", status: .tooManyRequests, detail: "slow down",
                headers: [.retryAfter: "7"])
        }
        router.get("/crash") { _, _ -> String in throw Boom() }
        router.post("/json") { request, context -> String in
            struct Body: Decodable { let name: String }
            return try await request.decode(as: Body.self, context: context).name
        }
        router.post("/upload") { request, _ -> String in
            let body = try await request.collectBody(upTo: 16, what: "upload")
            return "\(body.readableBytes)"
        }
        router.addMetricsRoute()
        return Application(router: router)
    }

    func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
    }

    @Test("a domain problem renders as RFC 9457 problem+json with its headers and the request id")
    func domainProblem() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/problem", method: .get, headers: [.requestID: "abc-123"]) { response in
                #expect(response.status == .tooManyRequests)
                #expect(response.headers[.contentType] == "application/problem+json")
                #expect(response.headers[.retryAfter] == "7")
                #expect(response.headers[.requestID] == "abc-123")
                let body = try json(response.body)
                #expect(body["type"] as? String == "https://zaas.dev/problems/quota-exceeded")
                #expect(body["status"] as? Int == 429)
                #expect(body["detail"] as? String == "slow down")
                #expect(body["instance"] as? String == "/problem")
                #expect(body["request_id"] as? String == "abc-123")
            }
        }
    }

    @Test("a body up to the limit is read whole; one byte more is 413 payload-too-large naming what was sent")
    func bodyLimit() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/upload", method: .post, body: ByteBuffer(repeating: 0x61, count: 16)) {
                response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "16")
            }
            try await client.execute(uri: "/upload", method: .post, body: ByteBuffer(repeating: 0x61, count: 17)) {
                response in
                #expect(response.status == .contentTooLarge)
                #expect(response.headers[.contentType] == "application/problem+json")
                let body = try json(response.body)
                #expect(body["type"] as? String == "https://zaas.dev/problems/payload-too-large")
                #expect(body["detail"] as? String == "The upload is larger than 16 bytes.")
            }
        }
    }

    @Test("an unexpected error is a bare 500 problem with no internals")
    func unexpectedError() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/crash", method: .get) { response in
                #expect(response.status == .internalServerError)
                #expect(response.headers[.contentType] == "application/problem+json")
                let text = String(buffer: response.body)
                #expect(!text.contains("Boom"))
                let type = try json(response.body)["type"] as? String
                #expect(type == "https://zaas.dev/problems/internal-error")
                #expect(response.headers[.requestID]?.isEmpty == false)
            }
        }
    }

    @Test("unknown routes and malformed JSON are problems too")
    func routingAndDecodingProblems() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/nope", method: .get) { response in
                #expect(response.status == .notFound)
                let type = try json(response.body)["type"] as? String
                #expect(type == "https://zaas.dev/problems/not-found")
            }
            try await client.execute(
                uri: "/json",
                method: .post,
                headers: [.contentType: "application/json"],
                body: ByteBuffer(string: "{\"name\": ")
            ) { response in
                #expect(response.status == .badRequest)
                #expect(response.headers[.contentType] == "application/problem+json")
                let type = try json(response.body)["type"] as? String
                #expect(type?.hasPrefix("https://zaas.dev/problems/") == true)
            }
        }
    }

    @Test("a caller's request id is kept only when well formed")
    func requestIDValidation() async throws {
        #expect(RequestIDMiddleware<BasicRequestContext>.isAcceptable("a1-B2_c3.d4"))
        #expect(!RequestIDMiddleware<BasicRequestContext>.isAcceptable("bad id\nwith newline"))
        #expect(!RequestIDMiddleware<BasicRequestContext>.isAcceptable(String(repeating: "a", count: 129)))
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/problem", method: .get, headers: [.requestID: "has space"]) { response in
                let id = try #require(response.headers[.requestID])
                #expect(id != "has space")
                #expect(UUID(uuidString: id) != nil)
            }
        }
    }

    @Test("GET /metrics serves the Prometheus text format")
    func metrics() async throws {
        try await makeApp().test(.router) { client in
            _ = try await client.execute(uri: "/problem", method: .get)
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
                #expect(String(buffer: response.body).contains("hb_requests"))
            }
        }
    }

    @Test("log lines are single-line JSON with escaped text and metadata as fields")
    func jsonLogLines() throws {
        let line = JSONLogHandler.render(
            timestamp: Date(timeIntervalSince1970: 0),
            level: .warning,
            label: "zaas",
            message: "quote \" backslash \\ newline \n tab \t nul \u{0}",
            fields: ["tenant": "t1", "nested": .dictionary(["n": .array(["x", "y"])])]
        )
        #expect(line.hasSuffix("}\n"))
        #expect(line.dropLast().contains("\n") == false)
        let object = try #require(
            JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        )
        #expect(object["level"] as? String == "warning")
        #expect(object["ts"] as? String == "1970-01-01T00:00:00.000Z")
        #expect(object["msg"] as? String == "quote \" backslash \\ newline \n tab \t nul \u{0}")
        #expect(object["tenant"] as? String == "t1")
        #expect(((object["nested"] as? [String: Any])?["n"] as? [String]) == ["x", "y"])
    }

    /// Sends `chunks` on a fresh connection to 127.0.0.1:`port`, pausing `pause` between them, and
    /// returns what came back and whether the server closed the connection, within `wait`. With
    /// `warmUp`, a complete `GET /ok` is answered first and the clock starts at its answer (the
    /// slow part then happens on a kept-alive connection).
    /// The blocking socket calls run on a thread of their own: on the concurrency pool (two
    /// threads here) they would starve the server under test, whose connections are accepted and
    /// served by tasks on that pool.
    static func rawExchange(
        port: Int, warmUp: Bool = false, chunks: [String], pause: Duration, wait: Duration
    ) async throws -> (reply: String, closed: Bool, after: Duration) {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(
                    with: Result {
                        try Self.blockingExchange(port: port, warmUp: warmUp, chunks: chunks, pause: pause, wait: wait)
                    })
            }.start()
        }
    }

    static func blockingExchange(port: Int, warmUp: Bool, chunks: [String], pause: Duration, wait: Duration) throws
        -> (reply: String, closed: Bool, after: Duration)
    {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw Boom() }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let clock = ContinuousClock()
        var start = clock.now
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        /// True once the server has closed: end of stream, or a reset (a server closing with
        /// bytes it has not read yet, as a busy one may, resets the connection).
        func drain() -> Bool {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count > 0 { reply += buffer[0..<count] }
            return count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        }
        if warmUp {
            _ = "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n".withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            while !String(decoding: reply, as: UTF8.self).hasSuffix("\r\n\r\nok") {
                guard clock.now - start < wait, !drain() else { throw Boom() }
            }
            reply = []
            start = clock.now
        }
        for chunk in chunks {
            _ = chunk.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            let until = clock.now + pause
            while clock.now < until {
                if drain() { return (String(decoding: reply, as: UTF8.self), true, clock.now - start) }
            }
        }
        while clock.now - start < wait {
            if drain() { return (String(decoding: reply, as: UTF8.self), true, clock.now - start) }
        }
        return (String(decoding: reply, as: UTF8.self), false, clock.now - start)
    }

    /// Each timeout is 1 s and the slow head takes 1.5 s to send, so a cut-off comes after about
    /// 2.5 s. The bound is loose because `make test` runs this beside process-level suites on two
    /// cores (it once took 5.4 s); without the timeouts the connections would stay open for the
    /// whole 12 s wait, which `closed` rules out.
    static let cutOffBound: Duration = .seconds(9)

    @Test(
        "slow clients are cut off: a head still incomplete after the head timeout, a body that never ends, an idle keep-alive"
    )
    func slowClients() async throws {
        let settings = try ServerSettings(
            reader: try await ConfigurationLoader.reader(
                defaults: ServerSettings.defaults(port: 0),
                environment: [
                    "ZAAS_HTTP_HEAD_TIMEOUT_SECONDS": "1", "ZAAS_HTTP_BODY_TIMEOUT_SECONDS": "1",
                    "ZAAS_HTTP_IDLE_TIMEOUT_SECONDS": "1",
                ]))
        let router = Router()
        router.get("/ok") { _, _ in "ok" }
        router.post("/upload") { request, _ -> String in
            "\(try await request.collectBody(upTo: 1 << 20, what: "upload").readableBytes)"
        }
        let app = Application(
            router: router, server: settings.serverBuilder,
            configuration: settings.applicationConfiguration(serverName: "test"))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let slowLines = ["GET /ok HTTP/1.1\r\n", "Host: x\r\n", "X-A: 1\r\n", "X-B: 1\r\n", "X-C: 1\r\n"]
            // A new connection's first head, one line every 300 ms, never finished: closed after
            // about a second.
            let slowHead = try await Self.rawExchange(
                port: port, chunks: slowLines, pause: .milliseconds(300), wait: .seconds(12))
            #expect(slowHead.closed && slowHead.reply.isEmpty, "\(slowHead)")
            #expect(slowHead.after < Self.cutOffBound, "\(slowHead.after)")
            // The same on an accepted keep-alive connection, after an answer: closed within seconds.
            let slowNext = try await Self.rawExchange(
                port: port, warmUp: true, chunks: slowLines, pause: .milliseconds(300), wait: .seconds(12))
            #expect(slowNext.closed && slowNext.reply.isEmpty, "\(slowNext)")
            #expect(slowNext.after < Self.cutOffBound, "\(slowNext.after)")
            // A body announced but never sent: closed after about a second, nothing stored.
            let slowBody = try await Self.rawExchange(
                port: port, warmUp: true,
                chunks: ["POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"],
                pause: .milliseconds(10), wait: .seconds(12))
            #expect(slowBody.closed && !slowBody.reply.contains("200 OK"), "\(slowBody)")
            #expect(slowBody.after < Self.cutOffBound, "\(slowBody.after)")
            // A prompt request is answered; then the idle keep-alive connection is closed.
            let prompt = try await Self.rawExchange(
                port: port, warmUp: true, chunks: ["GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"],
                pause: .milliseconds(10), wait: .seconds(12))
            #expect(prompt.reply.hasPrefix("HTTP/1.1 200"), "\(prompt)")
            #expect(prompt.closed && prompt.after < Self.cutOffBound, "\(prompt)")
        }
    }

    @Test("metrics are served on their own listener; a port's default is the HTTP port + 1000")
    func metricsListenerSettings() async throws {
        func settings(_ environment: [String: String]) async throws -> ServerSettings {
            try ServerSettings(
                reader: try await ConfigurationLoader.reader(
                    defaults: ServerSettings.defaults(port: 8401), environment: environment))
        }
        #expect(try await settings([:]).metricsPort == 9401)
        #expect(try await settings(["ZAAS_HTTP_PORT": "0"]).metricsPort == 0)
        #expect(try await settings(["ZAAS_METRICS_PORT": "9999"]).metricsPort == 9999)
        #expect(try await settings([:]).metricsHost == "127.0.0.1")
        await #expect(throws: ConfigurationError.self) { _ = try await settings(["ZAAS_METRICS_PORT": "8401"]) }
        await #expect(throws: ConfigurationError.self) { _ = try await settings(["ZAAS_HTTP_PORT": "65000"]) }
    }
}
