import Hummingbird
import NIOCore

extension Request {
    /// The whole body, or 413 `payload-too-large` when it is longer than `limit` bytes; `what`
    /// names it in the problem ("The upload is larger than … bytes.").
    public func collectBody(upTo limit: Int, what: String = "body") async throws -> ByteBuffer {
        do {
            return try await self.body.collect(upTo: limit)
        } catch {
            throw Problem.payloadTooLarge("The \(what) is larger than \(limit) bytes.")
        }
    }
}
