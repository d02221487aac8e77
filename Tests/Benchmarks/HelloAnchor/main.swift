import Foundation
import Hummingbird
import NIOCore

// The anchor of bench-cache's `livez` part (issue 20): Hummingbird as it comes, one route and no
// middleware, answering what a node's `GET /livez` answers. Started by the benchmark beside a node
// (ZAAS_HTTP_HOST, ZAAS_HTTP_PORT), so both run from the same release build and the same client
// measures both. Not named bench-*: `make bench` runs those.

let environment = ProcessInfo.processInfo.environment
let host = environment["ZAAS_HTTP_HOST"] ?? "127.0.0.1"
guard let port = Int(environment["ZAAS_HTTP_PORT"] ?? "") else {
    print("anchor-hello: set ZAAS_HTTP_PORT")
    exit(2)
}
let router = Router()
router.get("/livez") { _, _ in
    Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
}
let application = Application(router: router, configuration: .init(address: .hostname(host, port: port)))
try await application.runService()
