import Foundation

/// Times as the APIs take them in query parameters: an ISO 8601 date-time with a zone, with or
/// without fractional seconds (`2026-12-01T00:00:00Z`), or a date (`2026-12-01`, midnight UTC).
public enum ISO8601Time {
    public static func parse(_ text: some StringProtocol) -> Date? {
        let text = String(text)
        if let date = try? Date(text, strategy: .iso8601) { return date }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) {
            return date
        }
        guard text.utf8.count == 10 else { return nil }
        return try? Date(
            text, strategy: Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!).year().month().day())
    }
}
