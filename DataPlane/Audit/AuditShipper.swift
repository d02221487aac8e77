import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Shared
import Synchronization

/// Makes the audit spool durable and empties it into the control plane (docs/audit.md):
///
/// - every `syncInterval`, fsync of what was appended;
/// - every `shipInterval`, the current segment is sealed (unless sealed segments are still
///   waiting: while the control plane is away the current one grows to its full size instead of
///   making a file a second), and each sealed segment is sent in batches
///   (`POST /internal/v1/audit`). A segment is deleted only once every batch of it was
///   acknowledged; the control plane stores each event once, so a batch sent again after a lost
///   reply is harmless. Events it refuses for good (an unknown tenant, a malformed event) are
///   kept beside the spool in `rejected/` for an operator, never retried.
///
/// Metrics: `zaas_audit_spool_bytes` (and its bound, `zaas_audit_spool_limit_bytes`),
/// `zaas_audit_ship_lag_seconds` (age of the oldest unshipped sealed segment),
/// `zaas_audit_events_shipped_total`, `zaas_audit_events_refused_total`,
/// `zaas_audit_corrupt_records_total`, `zaas_audit_ship_failures_total`.
final class AuditShipper: Service, Sendable {
    let spool: AuditSpool
    let settings: AuditRecorder.Settings
    private let send: @Sendable ([UInt8]) async throws -> AuditIngestReply
    private let logger: Logger
    private let bytesGauge = Gauge(label: "zaas_audit_spool_bytes")
    private let limitGauge = Gauge(label: "zaas_audit_spool_limit_bytes")
    private let lagGauge = Gauge(label: "zaas_audit_ship_lag_seconds")
    private let shipped = Counter(label: "zaas_audit_events_shipped_total")
    private let refused = Counter(label: "zaas_audit_events_refused_total")
    private let corrupt = Counter(label: "zaas_audit_corrupt_records_total")
    private let failures = Counter(label: "zaas_audit_ship_failures_total")
    /// Since when shipping has failed, and the last reason (health reports it).
    private let failing = Mutex<(since: Date, reason: String)?>(nil)

    init(
        spool: AuditSpool, settings: AuditRecorder.Settings, logger: Logger,
        send: @escaping @Sendable ([UInt8]) async throws -> AuditIngestReply
    ) {
        self.spool = spool
        self.settings = settings
        self.logger = logger
        self.send = send
    }

    convenience init(recorder: AuditRecorder, control: ControlPlaneClient, logger: Logger) {
        self.init(spool: recorder.spool, settings: recorder.settings, logger: logger) { batch in
            try await control.shipAudit(batch)
        }
    }

    /// Since when shipping has been failing, and why; nil while it works.
    var failure: (since: Date, reason: String)? { self.failing.withLock { $0 } }

    func run() async throws {
        self.limitGauge.record(self.settings.spool.maximumBytes)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await cancelWhenGracefulShutdown {
                    while (try? await Task.sleep(for: self.settings.syncInterval)) != nil {
                        self.syncNow()
                    }
                }
            }
            group.addTask {
                await cancelWhenGracefulShutdown {
                    var pause = self.settings.shipInterval
                    while (try? await Task.sleep(for: pause)) != nil {
                        let shippedAll = await self.shipOnce()
                        // Backs off while the control plane is away, up to half a minute.
                        pause = shippedAll ? self.settings.shipInterval : min(pause * 2, .seconds(30))
                    }
                }
            }
        }
        // What the last requests appended is made durable, and shipped when the control plane
        // answers at once; what is not shipped waits in the spool for the next start.
        self.syncNow()
        _ = await self.shipOnce()
    }

    func syncNow() {
        do {
            try self.spool.sync()
        } catch {
            self.logger.error("audit spool fsync failed", metadata: ["error": "\(error)"])
        }
        self.bytesGauge.record(self.spool.totalBytes)
    }

    /// Seals the current segment (when nothing sealed waits) and ships what is sealed. True when
    /// the spool holds nothing sealed afterwards.
    @discardableResult
    func shipOnce() async -> Bool {
        do {
            if try self.spool.sealed().isEmpty { try self.spool.seal() }
            let segments = try self.spool.sealed()
            if let oldest = segments.first {
                let modified =
                    (try? FileManager.default.attributesOfItem(atPath: oldest.path)[.modificationDate] as? Date)
                    ?? Date()
                self.lagGauge.record(max(0, Date().timeIntervalSince(modified)))
            }
            for segment in segments {
                try await self.ship(segment)
            }
            self.lagGauge.record(0)
            self.bytesGauge.record(self.spool.totalBytes)
            self.failing.withLock { $0 = nil }
            return true
        } catch {
            self.failures.increment()
            let reason = String(describing: error)
            let first = self.failing.withLock { failing in
                defer { failing = (failing?.since ?? Date(), reason) }
                return failing == nil
            }
            // Logged when shipping starts failing; the metric and health say how long it lasts.
            if first {
                self.logger.warning(
                    "cannot ship audit events; they wait in the spool", metadata: ["error": "\(reason)"])
            }
            return false
        }
    }

    /// Sends a sealed segment's events in batches; deletes it once all were acknowledged.
    private func ship(_ segment: AuditSpool.Segment) async throws {
        let contents = try self.spool.contents(of: segment)
        if contents.corrupt > 0 || contents.torn {
            self.corrupt.increment(by: contents.corrupt)
            self.logger.error(
                "an audit segment holds damaged records; they are skipped",
                metadata: [
                    "segment": "\(segment.path)", "corrupt": "\(contents.corrupt)", "torn": "\(contents.torn)",
                ])
        }
        var start = 0
        var rejected: [(event: [UInt8], reason: String)] = []
        while start < contents.records.count {
            var end = start
            var bytes = 0
            while end < contents.records.count, end - start < AuditIngestReply.maximumEvents,
                bytes + contents.records[end].count + 1 <= AuditIngestReply.maximumBytes
            {
                bytes += contents.records[end].count + 1
                end += 1
            }
            var batch = [UInt8]()
            batch.reserveCapacity(bytes)
            for record in contents.records[start..<end] {
                batch += record
                batch.append(UInt8(ascii: "\n"))
            }
            let reply = try await self.send(batch)
            self.shipped.increment(by: reply.stored + reply.duplicates)
            for refusal in reply.refused where (0..<(end - start)).contains(refusal.index) {
                rejected.append((contents.records[start + refusal.index], refusal.reason))
            }
            start = end
        }
        if !rejected.isEmpty {
            self.refused.increment(by: rejected.count)
            try self.keepRejected(rejected, from: segment)
        }
        try self.spool.remove(segment)
    }

    /// Refused events go to `rejected/<segment>.ndjson`, each with the reason, for an operator.
    private func keepRejected(_ events: [(event: [UInt8], reason: String)], from segment: AuditSpool.Segment) throws {
        let folder = self.spool.directory + "/rejected"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var lines = [UInt8]()
        for (event, reason) in events {
            lines += Array(#"{"reason":"#.utf8)
            JSONText.appendString(reason, to: &lines)
            lines += Array(#","event":"#.utf8) + event + Array("}\n".utf8)
        }
        let name = URL(fileURLWithPath: segment.path).deletingPathExtension().lastPathComponent
        try Data(lines).write(to: URL(fileURLWithPath: "\(folder)/\(name).ndjson"))
        self.logger.error(
            "the control plane refused audit events for good; kept in the spool's rejected folder",
            metadata: ["count": "\(events.count)", "first": "\(events[0].reason)", "file": "\(folder)/\(name).ndjson"])
    }
}
