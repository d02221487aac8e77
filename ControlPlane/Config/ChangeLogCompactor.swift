import Logging
import PostgresNIO
import ServiceLifecycle

/// Drops change-log entries older than the retention, hourly. Nodes that were behind them get a
/// full snapshot on their next watch.
struct ChangeLogCompactor: Service {
    let client: PostgresClient
    let retention: Duration
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(3600))
                if Task.isCancelled { return }
                do {
                    try await Self.compact(client: self.client, olderThan: self.retention, logger: self.logger)
                } catch {
                    self.logger.warning(
                        "config change log compaction failed", metadata: ["error": "\(String(describing: error))"])
                }
            }
        }
    }

    /// Returns the version compacted through (0 when nothing was old enough).
    @discardableResult
    static func compact(client: PostgresClient, olderThan age: Duration, logger: Logger) async throws -> Int64 {
        let seconds = Double(age.components.seconds)
        let rows = try await client.queryRows(
            "SELECT zaas_compact_config_changes(now() - make_interval(secs => \(seconds)))", logger: logger)
        for try await through in rows.decode(Int64.self) { return through }
        return 0
    }
}
