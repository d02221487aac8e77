import Foundation
import Hummingbird
import Shared

/// `?limit=` (1…200, default 50) and `?cursor=` (the last id of the previous page) of a list request.
struct PageRequest: Sendable {
    let limit: Int
    let after: UUID?

    init(_ request: Request) throws {
        var errors: [FieldError] = []
        var limit = 50
        if let text = request.uri.queryParameters["limit"] {
            if let value = Int(String(text)), (1...200).contains(value) {
                limit = value
            } else {
                errors.append(FieldError("limit", "must be an integer from 1 to 200"))
            }
        }
        var after: UUID?
        if let cursor = request.uri.queryParameters["cursor"] {
            after = UUID(uuidString: String(cursor))
            if after == nil { errors.append(FieldError("cursor", "is not a cursor this API returned")) }
        }
        guard errors.isEmpty else { throw Problem.validation(errors) }
        self.limit = limit
        self.after = after
    }

    /// Trims the one extra row fetched to learn whether another page follows.
    func page<Item>(_ rows: [Item], id: (Item) -> String) -> (items: [Item], nextCursor: String?) {
        guard rows.count > self.limit else { return (rows, nil) }
        let items = Array(rows.prefix(self.limit))
        return (items, items.last.map(id))
    }
}
