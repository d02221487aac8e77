import Configuration
import Foundation
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import Shared

/// Closes billing periods by itself once late events have had their grace (docs/billing.md): each
/// `interval`, the oldest month that ended more than `graceHours` ago and is not closed, from the
/// month the first tenant was created (or after the last closed one). Runs on the operator path
/// as the system (`BillingCloser.systemOperator` in the operator audit, `closed_by` `system`);
/// several control planes may run it, the close's lock lets one at a time through.
struct BillingCloser: Service {
    /// The operator id the system acts under: no account has it.
    static let systemOperator = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    struct Settings: Sendable {
        var enabled: Bool
        var graceHours: Int
        var interval: Duration

        init(enabled: Bool = true, graceHours: Int = 72, interval: Duration = .seconds(3600)) {
            self.enabled = enabled
            self.graceHours = graceHours
            self.interval = interval
        }

        init(reader: ConfigReader) throws {
            self.init(
                enabled: try reader.flag("billing.auto_close"),
                graceHours: try reader.setting("billing.grace_hours", in: 0...2160),
                interval: .seconds(try reader.setting("billing.close_check_seconds", in: 1...86_400)))
        }

        static let defaults: [AbsoluteConfigKey: ConfigValue] = [
            "billing.auto_close": "true",
            "billing.grace_hours": "72",
            "billing.close_check_seconds": "3600",
        ]
    }

    let database: ScopedDatabase
    let settings: Settings
    let logger: Logger
    let failures = Counter(label: "zaas_billing_close_failures_total")

    func run() async throws {
        guard self.settings.enabled else { return try await gracefulShutdown() }
        await Rounds.run(firstAfter: .seconds(5), every: self.settings.interval) { await self.runOnce() != nil }
    }

    /// Closes every period that is due, oldest first; the periods closed (nil when a round failed,
    /// which is logged and counted).
    @discardableResult
    func runOnce(now: Date = Date()) async -> [String]? {
        var closed: [String] = []
        do {
            while let period = try await self.due(now: now) {
                let result = try await self.database.withOperator(Self.systemOperator, logger: self.logger) {
                    try await BillingStore.close(period, by: "system", now: now, connection: $0, logger: self.logger)
                }
                closed.append(BillingStore.name(period))
                self.logger.notice(
                    "billing period closed",
                    metadata: [
                        "period": "\(BillingStore.name(period))", "charges": "\(result.charges)",
                        "adjustments": "\(result.adjustments)", "by": "system",
                    ])
            }
        } catch BillingStore.CloseError.alreadyClosed {
            // Another control plane closed it meanwhile.
        } catch {
            self.failures.increment()
            self.logger.error("billing close failed", metadata: ["error": "\(String(reflecting: error))"])
            return nil
        }
        return closed
    }

    /// The next period to close: after the last closed one, else the month of the first tenant;
    /// nil unless it ended `graceHours` ago.
    func due(now: Date) async throws -> Date? {
        try await self.database.withOperator(Self.systemOperator, logger: self.logger) { connection in
            var start: Date?
            for try await (last, first) in try await connection.query(
                """
                SELECT (SELECT max(period) FROM billing_periods WHERE state = 'closed')::timestamptz,
                       (SELECT date_trunc('month', min(created_at), 'UTC') FROM tenants)
                """, logger: self.logger
            ).decode((Date?, Date?).self) {
                start = last.map(BillingStore.nextMonth) ?? first
            }
            guard let start else { return nil }
            let end = BillingStore.nextMonth(start)
            return end.addingTimeInterval(Double(self.settings.graceHours) * 3600) <= now ? start : nil
        }
    }
}
