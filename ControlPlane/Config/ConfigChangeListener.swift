import Logging
import PostgresNIO
import ServiceLifecycle

/// Keeps a connection LISTENing on `zaas_config`, so a committed change wakes waiting watch
/// requests at once. Re-reads the head after every (re)connect and every few seconds, so a
/// notification lost with a dropped connection delays nodes by seconds at most.
struct ConfigChangeListener: Service {
    let client: PostgresClient
    let source: ConfigSource
    let notifier: ConfigChangeNotifier
    let pollInterval: Duration
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.listen() }
                group.addTask { await self.poll() }
                await group.next()
                group.cancelAll()
            }
        }
    }

    private func listen() async {
        var failures = 0
        while !Task.isCancelled {
            do {
                try await self.client.withOpenConnection { connection in
                    try await connection.listen(on: "zaas_config") { notifications in
                        await self.notifier.advance(to: try await self.source.head(logger: self.logger).version)
                        failures = 0
                        for try await notification in notifications {
                            if let version = Int64(notification.payload) {
                                await self.notifier.advance(to: version)
                            }
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                failures += 1
                // The first attempt may race the start-up migrations; only persistent trouble is news.
                self.logger.log(
                    level: failures > 2 ? .warning : .debug,
                    "config change listener lost its connection; retrying",
                    metadata: ["error": "\(String(reflecting: error))"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private func poll() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: self.pollInterval)
            if let head = try? await self.source.head(logger: self.logger) {
                await self.notifier.advance(to: head.version)
            }
        }
    }
}
