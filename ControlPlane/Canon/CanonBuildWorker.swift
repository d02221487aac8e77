import Canon
import Crypto
import Embeddings
import Foundation
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import Shared
import Synchronization

/// Builds queued canon versions into artifacts, one at a time per control plane.
///
/// Claims the oldest queued version (or one whose builder stopped renewing its lease, as when a
/// control plane died mid-build) with `FOR UPDATE SKIP LOCKED`, so several control planes share
/// the queue without building anything twice. Progress is written as it goes, which renews the
/// lease. The embedding model is loaded at the first build, not at start.
final class CanonBuildWorker: Service, Sendable {
    let postgres: PostgresClient
    let modelDirectory: String
    let threads: Int
    let pollInterval: Duration
    let leaseSeconds: Int
    let logger: Logger
    private let embedder = Mutex<BatchingEmbedder?>(nil)
    private let wakeUp = Mutex<Bool>(false)
    /// When the queue was last reported unavailable: once a minute is enough.
    private let lastQueueError = Mutex<ContinuousClock.Instant?>(nil)
    /// `zaas_canon_builds_total{outcome}`, made at start so both series exist at 0 (an alert on
    /// their increase sees the first failure).
    private let built = Counter(label: "zaas_canon_builds_total", dimensions: [("outcome", "built")])
    private let failed = Counter(label: "zaas_canon_builds_total", dimensions: [("outcome", "failed")])

    init(
        postgres: PostgresClient, modelDirectory: String, threads: Int, pollInterval: Duration = .milliseconds(500),
        leaseSeconds: Int = 60, logger: Logger
    ) {
        self.postgres = postgres
        self.modelDirectory = modelDirectory
        self.threads = threads
        self.pollInterval = pollInterval
        self.leaseSeconds = leaseSeconds
        self.logger = logger
    }

    /// Look at the queue now rather than at the next poll.
    func wake() { self.wakeUp.withLock { $0 = true } }

    func run() async throws {
        defer { self.embedder.withLock { $0?.shutdown() } }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    if try await self.buildNext() { continue }
                } catch is CancellationError {
                    return
                } catch {
                    let due = self.lastQueueError.withLock { last in
                        guard last.map({ ContinuousClock.now - $0 >= .seconds(60) }) ?? true else { return false }
                        last = ContinuousClock.now
                        return true
                    }
                    if due {
                        self.logger.error(
                            "canon build queue unavailable (reported once a minute)",
                            metadata: ["error": "\(String(reflecting: error))"])
                    }
                }
                // Idle: poll, in short steps so a wake-up is seen quickly.
                let deadline = ContinuousClock.now + self.pollInterval
                while ContinuousClock.now < deadline, !Task.isCancelled {
                    if self.wakeUp.withLock({
                        let woken = $0; $0 = false; return woken
                    }) {
                        break
                    }
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
        }
    }

    /// Builds one queued version; false when there was none.
    func buildNext() async throws -> Bool {
        var claimed: (UUID, UUID?, String)?
        let rows = try await self.postgres.queryRows(
            "SELECT id, tenant_id, label FROM zaas_canon_claim_build(\(Int32(self.leaseSeconds)))", logger: self.logger)
        for try await row in rows.decode((UUID, UUID?, String).self) { claimed = row }
        guard let (id, tenantID, label) = claimed else { return false }
        var logger = self.logger
        logger[metadataKey: "canon_version"] = "\(label)"
        logger[metadataKey: "tenant"] = "\(tenantID?.uuidString.lowercased() ?? "base")"
        let started = ContinuousClock.now
        do {
            let entries = try await self.entries(of: id, logger: logger)
            let embedder = try self.loadedEmbedder()
            let previous = try await self.reusable(for: id, logger: logger)
            let lastReport = Mutex<ContinuousClock.Instant?>(nil)
            let progressLogger = logger
            let artifact = try await CanonIndexer(concurrency: self.threads).artifact(
                label: label, entries: entries, embedder: embedder, reusing: previous
            ) { progress in
                let due = lastReport.withLock { last in
                    let now = ContinuousClock.now
                    guard
                        last == nil || now - last! >= .milliseconds(500)
                            || progress.embeddedChunks == progress.totalChunks
                    else { return false }
                    last = now
                    return true
                }
                guard due else { return }
                _ = try? await self.postgres.queryRows(
                    """
                    SELECT zaas_canon_build_progress(
                        \(id), \(Int32(progress.embeddedChunks)), \(Int32(progress.totalChunks)),
                        \(Int32(self.leaseSeconds)))
                    """,
                    logger: progressLogger)
            }
            // Read back before it is stored: what nodes will load is checked here first.
            let index = try CanonIndex(bytes: ArtifactBytes(copying: artifact))
            let sha256 = index.sha256
            let warnings = String(decoding: try JSONEncoder().encode(index.warnings), as: UTF8.self)
            _ = try await self.postgres.queryRows(
                "SELECT zaas_canon_build_warnings(\(id), \(warnings)::jsonb)", logger: logger)
            let outcome = try await self.finish(
                id, sha256: sha256, bytes: artifact, chunks: index.chunkCount, error: nil, logger: logger)
            let seconds =
                Double((ContinuousClock.now - started).components.seconds)
                + Double((ContinuousClock.now - started).components.attoseconds) / 1e18
            Timer(label: "zaas_canon_build_seconds").recordSeconds(seconds)
            self.built.increment()
            logger.info(
                "canon version built",
                metadata: [
                    "outcome": "\(outcome)", "entries": "\(entries.count)", "chunks": "\(index.chunkCount)",
                    "reused_from": "\(previous?.label ?? "none")", "injected_chunks": "\(index.injectedChunkCount)",
                    "bytes": "\(artifact.count)", "sha256": "\(sha256)", "seconds": "\(seconds)",
                ])
        } catch is CancellationError {
            // Stopping: hand the build back at once (a lease of zero seconds), so the next control
            // plane to look (this one restarted, or another replica) takes it up without waiting
            // for the lease to run out. Run outside this cancelled task; a crash leaves the lease
            // to expire instead.
            let (postgres, logger) = (self.postgres, logger)
            await Task {
                _ = try? await postgres.queryRows(
                    "SELECT zaas_canon_build_progress(\(id), 0, 0, 0)", logger: logger)
            }.value
            logger.notice("canon build handed back on shutdown")
            throw CancellationError()
        } catch {
            logger.error("canon build failed", metadata: ["error": "\(String(reflecting: error))"])
            self.failed.increment()
            _ = try? await self.finish(id, sha256: nil, bytes: nil, chunks: nil, error: "\(error)", logger: logger)
        }
        return true
    }

    /// The artifact of the version this one derives from, whose unchanged chunks need no model
    /// time; nil when there is none or it cannot be read (the build then embeds everything).
    private func reusable(for version: UUID, logger: Logger) async throws -> CanonIndex? {
        let rows = try await self.postgres.queryRows("SELECT zaas_canon_reuse_artifact(\(version))", logger: logger)
        for try await bytes in rows.decode(ByteBuffer?.self) {
            guard let bytes else { return nil }
            do {
                return try CanonIndex(bytes: ArtifactBytes(copying: Array(bytes.readableBytesView)))
            } catch {
                logger.warning(
                    "earlier canon artifact unreadable; embedding everything", metadata: ["error": "\(error)"])
                return nil
            }
        }
        return nil
    }

    private func entries(of version: UUID, logger: Logger) async throws -> [CanonEntry] {
        let rows = try await self.postgres.queryRows(
            "SELECT entry_id, kind, title, body, status, tags, links, source FROM zaas_canon_build_entries(\(version))",
            logger: logger)
        var entries: [CanonEntry] = []
        for try await (id, kind, title, body, status, tags, links, source) in rows.decode(
            (String, String, String, String, String, [String], [String], String?).self)
        {
            guard let kind = CanonEntry.Kind(rawValue: kind), let status = CanonEntry.Status(rawValue: status) else {
                throw CanonStoreError.unexpected("kind or status of \(id)")
            }
            entries.append(
                CanonEntry(
                    id: id, kind: kind, title: title, body: body, status: status, tags: tags, links: links,
                    source: source))
        }
        return entries
    }

    private func finish(
        _ id: UUID, sha256: String?, bytes: [UInt8]?, chunks: Int?, error: String?, logger: Logger
    ) async throws -> String {
        let buffer = bytes.map { ByteBuffer(bytes: $0) }
        let chunks = chunks.map { Int32(clamping: $0) }
        let rows = try await self.postgres.queryRows(
            "SELECT zaas_canon_finish_build(\(id), \(sha256), \(buffer), \(chunks), \(error))", logger: logger)
        for try await outcome in rows.decode(String.self) { return outcome }
        return "gone"
    }

    private func loadedEmbedder() throws -> BatchingEmbedder {
        try self.embedder.withLock { embedder in
            if let embedder { return embedder }
            let model: SentenceModel
            do {
                model = try SentenceModel(directory: self.modelDirectory)
            } catch {
                throw ConfigurationError.invalid(
                    key: "embeddings.model_dir", value: self.modelDirectory,
                    expected: "a sentence-transformers model folder (\(error)); fetch it with bash infra/fetch-model.sh"
                )
            }
            let loaded = BatchingEmbedder(model: model, threads: self.threads)
            embedder = loaded
            return loaded
        }
    }
}
