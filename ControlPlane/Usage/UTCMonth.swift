import Foundation

/// Calendar months in UTC: the periods usage is reported by and billing closes.
enum UTCMonth {
    static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    /// The first instant of the month holding `date`.
    static func start(of date: Date) -> Date {
        calendar.date(from: calendar.dateComponents([.year, .month], from: date))!
    }

    /// The month `months` after (or, negative, before) the one starting at `month`.
    static func adding(_ months: Int, to month: Date) -> Date {
        calendar.date(byAdding: .month, value: months, to: month)!
    }

    /// `YYYY-MM` of the month holding `date`.
    static func name(_ date: Date) -> String {
        let parts = calendar.dateComponents([.year, .month], from: date)
        return String(format: "%04d-%02d", parts.year!, parts.month!)
    }

    /// The first instant of the month `YYYY-MM` names, nil unless it is a month from 2000 to 9999.
    static func parse(_ text: String) -> Date? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard text.utf8.count == 7, parts.count == 2, let year = Int(parts[0]), let month = Int(parts[1]),
            (2000...9999).contains(year), (1...12).contains(month)
        else { return nil }
        return calendar.date(from: DateComponents(year: year, month: month, day: 1))
    }
}
