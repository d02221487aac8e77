import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The admin REST API over HTTP, for the CLI. Problems come back as `AdminClient.Failure`.
struct AdminClient {
    let baseURL: String
    let token: String?

    struct Failure: Error, CustomStringConvertible {
        let status: Int
        let title: String
        let detail: String?
        let errors: [String]

        var description: String {
            var text = "\(status) \(title)" + (detail.map { ": \($0)" } ?? "")
            for error in errors { text += "\n  - \(error)" }
            return text
        }
    }

    /// Sends one request; returns the decoded JSON body (nil for 204).
    func send(_ method: HTTPMethod, _ path: String, body: [String: Any]? = nil) async throws -> Any? {
        try await self.send(
            method, path, contentType: body == nil ? nil : "application/json",
            bytes: try body.map { Array(try JSONSerialization.data(withJSONObject: $0)) })
    }

    /// Sends a body of any media type (a canon upload).
    func send(_ method: HTTPMethod, _ path: String, contentType: String?, bytes: [UInt8]?) async throws -> Any? {
        var request = HTTPClientRequest(url: self.baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let bytes, let contentType {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(bytes: bytes))
        }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(300))
        } catch {
            throw Failure(status: 0, title: "cannot reach \(self.baseURL)", detail: "\(error)", errors: [])
        }
        let data = Data((try await response.body.collect(upTo: 16 << 20)).readableBytesView)
        let json = data.isEmpty ? nil : try? JSONSerialization.jsonObject(with: data)
        guard (200..<300).contains(Int(response.status.code)) else {
            let problem = json as? [String: Any] ?? [:]
            let errors = (problem["errors"] as? [[String: Any]] ?? []).map { entry in
                "\(entry["field"] ?? "?"): \(entry["message"] ?? "?")"
            }
            // Canon uploads list their problems by file and line.
            let problems = (problem["problems"] as? [[String: Any]] ?? []).map { entry in
                "\(entry["file"] ?? "?")" + (entry["line"].map { ":\($0)" } ?? "") + ": \(entry["message"] ?? "?")"
            }
            throw Failure(
                status: Int(response.status.code),
                title: problem["title"] as? String ?? response.status.reasonPhrase,
                detail: problem["detail"] as? String,
                errors: errors + problems
            )
        }
        return json
    }

    /// A file's bytes as they are (an export's files).
    func download(_ path: String) async throws -> [UInt8] {
        var request = HTTPClientRequest(url: self.baseURL + path)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(600))
        } catch {
            throw Failure(status: 0, title: "cannot reach \(self.baseURL)", detail: "\(error)", errors: [])
        }
        let body = try await response.body.collect(upTo: 4 << 30)
        guard response.status.code == 200 else {
            throw Failure(
                status: Int(response.status.code), title: response.status.reasonPhrase, detail: nil, errors: [])
        }
        return Array(body.readableBytesView)
    }

    /// Every item of a paged list, following `next_cursor`.
    func all(_ path: String) async throws -> [Any] {
        var items: [Any] = []
        var cursor: String?
        let separator = path.contains("?") ? "&" : "?"
        repeat {
            let page = try await self.send(
                .GET, path + separator + "limit=200" + (cursor.map { "&cursor=\($0)" } ?? ""))
            let object = page as? [String: Any]
            items += object?["items"] as? [Any] ?? []
            cursor = object?["next_cursor"] as? String
        } while cursor != nil
        return items
    }
}
