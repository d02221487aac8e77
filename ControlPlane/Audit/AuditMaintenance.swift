import Configuration
import Logging
import Metrics
import ServiceLifecycle
import Shared

/// The audit trail's upkeep, at start and then every `interval`: partitions made for the coming
/// days and dropped once older than the longest retention; events past their tenant's retention
/// deleted in batches (docs/audit.md). Several control planes may run it: one at a time does.
struct AuditMaintenance: Service {
    struct Settings: Sendable {
        var interval: Duration
        /// Days ahead of today that have a partition.
        var daysAhead: Int
        /// How long events of no tenant (refusals of unknown keys) are kept.
        var unattributedRetentionDays: Int

        init(interval: Duration = .seconds(3600), daysAhead: Int = 3, unattributedRetentionDays: Int = 30) {
            self.interval = interval
            self.daysAhead = daysAhead
            self.unattributedRetentionDays = unattributedRetentionDays
        }

        init(reader: ConfigReader) throws {
            self.init(
                interval: .seconds(try reader.setting("audit.maintenance_interval_seconds", in: 1...86_400)),
                daysAhead: try reader.setting("audit.partition_days_ahead", in: 1...60),
                unattributedRetentionDays: try reader.setting("audit.unattributed_retention_days", in: 1...3650))
        }

        static let defaults: [AbsoluteConfigKey: ConfigValue] = [
            "audit.maintenance_interval_seconds": "3600",
            "audit.partition_days_ahead": "3",
            "audit.unattributed_retention_days": "30",
        ]
    }

    let store: AuditStore
    let settings: Settings
    let logger: Logger
    let expired = Counter(label: "zaas_audit_events_expired_total")
    let partitionsDropped = Counter(label: "zaas_audit_partitions_dropped_total")
    let failures = Counter(label: "zaas_audit_maintenance_failures_total")
    static let batch = 10_000

    func run() async throws {
        // Migrations run as the server starts: the first round waits for them a little.
        await Rounds.run(firstAfter: .seconds(2), every: self.settings.interval) { await self.runOnce() != nil }
    }

    /// One round; what it did (nil when it failed, which is logged and counted).
    @discardableResult
    func runOnce() async -> (AuditStore.Maintenance, expired: Int)? {
        do {
            let upkeep = try await self.store.maintain(
                daysAhead: self.settings.daysAhead, unattributedDays: self.settings.unattributedRetentionDays,
                logger: self.logger)
            var total = 0
            while true {
                let removed = try await self.store.expire(
                    batch: Self.batch, unattributedDays: self.settings.unattributedRetentionDays, logger: self.logger)
                total += removed
                if removed < Self.batch { break }
            }
            self.expired.increment(by: total)
            self.partitionsDropped.increment(by: upkeep.dropped)
            if upkeep.created > 0 || upkeep.dropped > 0 || total > 0 {
                self.logger.info(
                    "audit upkeep",
                    metadata: [
                        "partitions_created": "\(upkeep.created)", "partitions_dropped": "\(upkeep.dropped)",
                        "events_expired": "\(total)",
                    ])
            }
            return (upkeep, total)
        } catch {
            self.failures.increment()
            self.logger.error("audit upkeep failed", metadata: ["error": "\(String(reflecting: error))"])
            return nil
        }
    }
}
