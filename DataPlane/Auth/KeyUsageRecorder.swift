import Foundation
import Logging
import ServiceLifecycle
import Shared
import Synchronization

/// Last-used times of keys, gathered in memory and reported to the control plane in batches:
/// never a database write per request.
public final class KeyUsageRecorder: Service, Sendable {
    private let pending = Mutex<[UUID: Date]>([:])
    private let send: @Sendable ([(UUID, Date)]) async throws -> Void
    private let interval: @Sendable () -> Duration
    private let logger: Logger
    static let batchSize = KeyUsageReport.maximumKeys

    init(
        interval: @escaping @Sendable () -> Duration,
        logger: Logger,
        send: @escaping @Sendable ([(UUID, Date)]) async throws -> Void
    ) {
        self.interval = interval
        self.logger = logger
        self.send = send
    }

    /// Reporting to the control plane as node `nodeID`, as often as the configuration says.
    convenience init(control: ControlPlaneClient, nodeID: String, configuration: ConfigStore, logger: Logger) {
        self.init(
            interval: {
                // Until the first configuration arrives no key can be used, so there is nothing to report.
                .milliseconds(Int(configuration.current?.settings.usageReportIntervalMilliseconds ?? 1000))
            },
            logger: logger
        ) { entries in
            try await control.report(
                KeyUsageReport(nodeId: nodeID, keys: entries.map { .init(id: $0.0, lastUsedAt: $0.1) }))
        }
    }

    func record(_ keyID: UUID, at date: Date = Date()) {
        self.pending.withLock { $0[keyID] = date }
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.interval())
                await self.flush()
            }
        }
        // What was used since the last report goes out before the node stops.
        await self.flush()
    }

    /// Sends what is pending; on failure it is kept (merged with newer uses) for the next round.
    func flush() async {
        let batch = self.pending.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        guard !batch.isEmpty else { return }
        let entries = batch.map { ($0.key, $0.value) }
        var sent = 0
        do {
            while sent < entries.count {
                let chunk = Array(entries[sent..<min(sent + Self.batchSize, entries.count)])
                try await self.send(chunk)
                sent += chunk.count
            }
        } catch {
            self.logger.warning(
                "cannot report key usage; keeping it for the next round",
                metadata: ["error": "\(String(describing: error))", "keys": "\(entries.count - sent)"])
            self.pending.withLock { pending in
                for (id, date) in entries[sent...] where (pending[id] ?? .distantPast) < date {
                    pending[id] = date
                }
            }
        }
    }
}
