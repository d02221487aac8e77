import Canon
import Foundation
import HTTPTypes
import Logging
import Metrics
import NIOCore
import Retrieval
import ServiceLifecycle
import Shared
import Synchronization

/// Keeps the node's canon in step with its configuration: for every published version the config
/// names (the base canon and each tenant's overlay) it loads the artifact from local disk or
/// fetches it from the control plane by hash, verifies the SHA-256, keeps it on disk and
/// memory-maps it; then installs the new `CanonState` at once.
public final class CanonLibrary: Service, Sendable {
    /// Where artifacts are kept, by hash (`<sha256>.zcan`).
    let directory: String
    let configuration: ConfigStore
    let control: ControlPlaneClient
    let logger: Logger
    private let state = Mutex<CanonState>(.empty)
    /// The config version the installed state was made for.
    private let syncedVersion = Mutex<Int64?>(nil)
    /// Artifacts that could not be had, by hash, with when to try again.
    private let failures = Mutex<[String: ContinuousClock.Instant]>([:])
    let loads = Counter(label: "zaas_canon_loads_total")
    let refused = Counter(label: "zaas_canon_refused_total")

    init(directory: String, configuration: ConfigStore, control: ControlPlaneClient, logger: Logger) {
        self.directory = directory
        self.configuration = configuration
        self.control = control
        self.logger = logger
    }

    public var current: CanonState { self.state.withLock { $0 } }

    /// The layers a tenant's query searches, as installed. A version the config names but this
    /// node has not loaded yet is answered from the version before it; when there is none before
    /// it (the base canon, or the tenant's first overlay, not loaded yet), 503 rather than an
    /// answer from a part of the canon that would cite base entries the overlay replaces.
    func layers(for tenant: TenantConfig) throws -> [CanonLayer] {
        let state = self.current
        let wantsBase = self.configuration.current?.settings.baseCanon != nil
        if (wantsBase && state.base == nil) || (tenant.canon != nil && state.overlays[tenant.id] == nil) {
            throw Problem.canonNotReady
        }
        return state.layers(for: tenant.id)
    }

    /// True when the installed canon matches what the configuration names.
    public func isCurrent(for config: ConfigState) -> Bool {
        let state = self.current
        if state.base?.sha256 != config.settings.baseCanon?.sha256 { return false }
        for tenant in config.tenants.values where state.overlays[tenant.id]?.sha256 != tenant.canon?.sha256 {
            return false
        }
        return true
    }

    public func run() async throws {
        try? FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.synchronize()
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// Brings the installed canon up to the current configuration, if it is not already.
    func synchronize() async {
        guard let config = self.configuration.current else { return }
        let retryDue = self.failures.withLock { failures in
            failures.values.contains { $0 <= ContinuousClock.now }
        }
        if self.syncedVersion.withLock({ $0 }) == config.version && !retryDue { return }
        let installed = self.current
        var loaded: [String: CanonIndex] = [:]
        for index in [installed.base].compactMap({ $0 }) + installed.overlays.values.map({ $0 }) {
            loaded[index.sha256] = index
        }
        func obtain(_ reference: CanonReference) async -> CanonIndex? {
            if let index = loaded[reference.sha256] { return index }
            if let next = self.failures.withLock({ $0[reference.sha256] }), next > ContinuousClock.now { return nil }
            do {
                let index = try await self.load(reference)
                loaded[reference.sha256] = index
                self.failures.withLock { _ = $0.removeValue(forKey: reference.sha256) }
                return index
            } catch {
                self.refused.increment()
                self.logger.error(
                    "canon artifact unavailable; serving the previous version",
                    metadata: [
                        "canon_version": "\(reference.label)", "sha256": "\(reference.sha256)", "error": "\(error)",
                    ])
                self.failures.withLock { $0[reference.sha256] = ContinuousClock.now + .seconds(2) }
                return nil
            }
        }
        // What cannot be had yet keeps what was installed for it.
        var base = installed.base
        if let reference = config.settings.baseCanon {
            if let index = await obtain(reference) { base = index }
        } else {
            base = nil
        }
        var overlays: [UUID: CanonIndex] = [:]
        for tenant in config.tenants.values {
            guard let reference = tenant.canon else { continue }
            if let index = await obtain(reference) {
                overlays[tenant.id] = index
            } else if let previous = installed.overlays[tenant.id] {
                overlays[tenant.id] = previous
            }
        }
        let next = CanonState(base: base, overlays: overlays)
        self.state.withLock { $0 = next }
        self.syncedVersion.withLock { $0 = config.version }
        self.removeUnused(keeping: next.artifacts)
    }

    /// From disk when there and intact, else from the control plane; verified either way.
    func load(_ reference: CanonReference) async throws -> CanonIndex {
        let path = self.directory + "/" + reference.sha256 + ".zcan"
        if FileManager.default.fileExists(atPath: path) {
            do {
                let index = try CanonIndex(contentsOf: path, sha256: reference.sha256)
                self.loads.increment()
                return index
            } catch {
                self.logger.warning(
                    "canon artifact on disk refused; fetching it again",
                    metadata: ["path": "\(path)", "error": "\(error)"])
                try? FileManager.default.removeItem(atPath: path)
            }
        }
        let body = try await self.control.artifact(
            sha256: reference.sha256, maximumBytes: Int(clamping: reference.byteCount) + 1)
        let bytes = Array(body.readableBytesView)
        try SnapshotFiles.writeAtomically(bytes, to: path, directory: self.directory)
        // Opening it verifies the SHA-256 (once); bytes that do not match are not kept.
        let index: CanonIndex
        do {
            index = try CanonIndex(contentsOf: path, sha256: reference.sha256)
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw CanonLibraryError.fetch("\(error)")
        }
        self.loads.increment()
        self.logger.info(
            "canon artifact loaded",
            metadata: [
                "canon_version": "\(reference.label)", "bytes": "\(bytes.count)", "chunks": "\(index.chunkCount)",
            ])
        return index
    }

    private func removeUnused(keeping: Set<String>) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: self.directory) else { return }
        for name in names where name.hasSuffix(".zcan") && !keeping.contains(String(name.dropLast(5))) {
            try? FileManager.default.removeItem(atPath: self.directory + "/" + name)
        }
    }
}

enum CanonLibraryError: Error, CustomStringConvertible {
    case fetch(String)

    var description: String {
        switch self {
        case .fetch(let reason): "fetch failed: \(reason)"
        }
    }
}

extension Problem {
    /// The tenant's canon is named by the configuration but not loaded on this node yet.
    static var canonNotReady: Problem {
        Problem(
            slug: "canon-not-ready", title: "Service Unavailable", status: .serviceUnavailable,
            detail: "This node is still loading the canon. Try another node or retry shortly.",
            headers: [.retryAfter: "1"])
    }
}
