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
}
