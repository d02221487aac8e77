import Foundation
import HTTPTypes
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Shared
import Synchronization

/// Keeps the node's configuration current: loads the copy on disk at start, then long-polls the
/// control plane's watch API for changes since the version it holds, verifies each signed
/// document, applies it atomically and writes it to disk. Through a control-plane outage it keeps
/// what it has and retries with capped backoff.
public final class ConfigWatcher: Service, Sendable {
    public enum Reachability: Sendable, Equatable, CustomStringConvertible {
        case unknown
        case up
        /// Answered, but not with configuration (refused our credential, sent a bad document…).
        case unhealthy(String)
        case down(String)

        public var description: String {
            switch self {
            case .unknown: "unknown"
            case .up: "up"
            case .unhealthy(let why): "unhealthy: \(why)"
            case .down(let why): "down: \(why)"
            }
        }
    }

    public struct Settings: Sendable {
        public var verificationKey: ConfigVerificationKey
        /// Who this node is, for the control plane's node registry.
        public var node: ControlPlaneClient.NodeReport
        /// How long the control plane may hold a watch request.
        public var wait: Duration
        /// The longest pause between retries while the control plane is unreachable.
        public var maximumBackoff: Duration

        public init(
            verificationKey: ConfigVerificationKey, nodeID: String, advertisedAddress: String, wait: Duration,
            maximumBackoff: Duration
        ) {
            self.verificationKey = verificationKey
            self.node = .init(id: nodeID, address: advertisedAddress)
            self.wait = wait
            self.maximumBackoff = maximumBackoff
        }
    }

    private struct Status {
        /// The disk copy is read once, before serving; later starts of `run` do not read it again.
        var diskLoaded = false
        var reachability: Reachability = .unknown
        /// When the control plane last confirmed (by answering a watch) that this node is current.
        var lastSync: Date?
        var journalEntries = 0
        var journalBytes = 0
        /// Nodes live in the registry, as the control plane last said; nil until it has said.
        var liveNodes: Int?
    }

    public let store: ConfigStore
    private let files: SnapshotFiles
    private let settings: Settings
    private let control: ControlPlaneClient
    private let logger: Logger
    private let status = Mutex(Status())
    private let versionGauge = Gauge(label: "zaas_config_version")
    private let ageGauge = Gauge(label: "zaas_config_staleness_seconds")
    private let reachableGauge = Gauge(label: "zaas_control_plane_up")
    private let fullUpdates = Counter(label: "zaas_config_updates_total", dimensions: [("kind", "full")])
    private let deltaUpdates = Counter(label: "zaas_config_updates_total", dimensions: [("kind", "delta")])
    private let refusedUpdates = Counter(label: "zaas_config_refused_total")

    public init(
        store: ConfigStore, files: SnapshotFiles, settings: Settings, control: ControlPlaneClient, logger: Logger
    ) {
        self.store = store
        self.files = files
        self.settings = settings
        self.control = control
        self.logger = logger
    }

    public var reachability: Reachability { self.status.withLock { $0.reachability } }
    public var lastSync: Date? { self.status.withLock { $0.lastSync } }
    /// How many nodes the node registry counted live (this one included) at the last watch
    /// answer; nil until the control plane has answered once.
    public var liveNodes: Int? { self.status.withLock { $0.liveNodes } }

    /// Loads the configuration saved on disk, if this node holds none yet. Called before serving.
    public func loadFromDisk() {
        let first = self.status.withLock { status in
            defer { status.diskLoaded = true }
            return !status.diskLoaded
        }
        guard first, self.store.current == nil,
            let loaded = self.files.load(verifyingWith: self.settings.verificationKey, logger: self.logger)
        else { return }
        self.store.install(loaded.state)
        self.status.withLock {
            $0.journalEntries = loaded.journalEntries
            $0.journalBytes = loaded.journalBytes
        }
        self.versionGauge.record(loaded.state.version)
        self.logger.notice(
            "configuration loaded from disk",
            metadata: ["config_version": "\(loaded.state.version)", "journal_entries": "\(loaded.journalEntries)"])
    }

    public func run() async throws {
        self.loadFromDisk()
        // Shutdown cancels a watch request held open by the control plane.
        try? await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.watchLoop() }
                group.addTask { await self.recordStaleness() }
                await group.next()
                group.cancelAll()
            }
        }
    }

    private func recordStaleness() async {
        while !Task.isCancelled {
            if let lastSync = self.lastSync {
                self.ageGauge.record(Date().timeIntervalSince(lastSync))
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private func watchLoop() async {
        var failures = 0
        var wantFull = false
        // The first request, and the first after a failure, asks for an immediate answer: the
        // control plane would otherwise hold it, and the node would not know it is back.
        var confirmed = false
        while !Task.isCancelled {
            let outcome = await self.poll(full: wantFull, wait: confirmed ? self.settings.wait : .zero)
            confirmed = outcome != .failed
            switch outcome {
            case .applied(let needsCompaction):
                failures = 0
                wantFull = needsCompaction
            case .unchanged:
                failures = 0
            case .resync:
                failures = 0
                wantFull = true
            case .failed:
                failures += 1
                // 100 ms, doubling, capped; jittered so nodes do not return in lockstep.
                let cap = self.settings.maximumBackoff
                let base = min(Duration.milliseconds(100) * (1 << min(failures - 1, 16)), cap)
                let jittered = base * Double.random(in: 0.5...1.0)
                try? await Task.sleep(for: jittered)
            }
        }
    }

    enum Outcome: Equatable {
        case applied(needsCompaction: Bool)
        case unchanged
        /// The update did not fit what the node holds: ask for a full snapshot next.
        case resync
        case failed
    }

    /// One watch request, and applying what it returned. Internal so tests can step it.
    func poll(full: Bool, wait: Duration) async -> Outcome {
        let held = full ? nil : self.store.current?.version
        let reply: ControlPlaneClient.Reply
        do {
            reply = try await self.control.watch(since: held, wait: wait, node: self.settings.node)
        } catch {
            if Task.isCancelled { return .unchanged }
            self.setReachability(.down("no answer from the control plane"))
            return .failed
        }
        if let live = reply.headers.first(name: HTTPField.Name.zaasLiveNodes.rawName).flatMap(Int.init), live > 0 {
            self.status.withLock { $0.liveNodes = live }
        }
        let body = reply.body
        let statusCode = reply.status
        switch statusCode {
        case 204:
            self.confirmSync()
            return .unchanged
        case 200:
            return self.apply(Array(body.readableBytesView))
        default:
            self.logger.error(
                "control plane refused the watch request",
                metadata: ["status": "\(statusCode)", "body": "\(String(buffer: body).prefix(300))"])
            self.setReachability(.unhealthy("watch answered \(statusCode)"))
            return .failed
        }
    }

    /// Replay: an expired document, or a snapshot older than what this node holds, is refused
    /// (a revoked key must not come back); the node keeps what it has and says why in health.
    private func requireFresh(_ update: ConfigUpdate) throws(ConfigValidity.Refusal) {
        switch update {
        case .full(let snapshot):
            try ConfigValidity.check(createdAt: snapshot.createdAt, validUntil: snapshot.validUntil)
            if let holding = self.store.current?.version, snapshot.version < holding {
                throw .older(version: snapshot.version, holding: holding)
            }
        case .delta(let delta):
            try ConfigValidity.check(createdAt: delta.createdAt, validUntil: delta.validUntil)
        }
    }

    private func apply(_ document: [UInt8]) -> Outcome {
        let update: ConfigUpdate
        do {
            update = try SignedConfigDocument.decode(document, verifyingWith: self.settings.verificationKey)
            try self.requireFresh(update)
        } catch {
            self.refusedUpdates.increment()
            self.logger.error("config document refused", metadata: ["reason": "\(error)"])
            self.setReachability(.unhealthy("sent a config document this node refuses: \(error)"))
            return .failed
        }
        let next: ConfigState
        switch update {
        case .full(let snapshot):
            next = ConfigState(snapshot: snapshot)
        case .delta(let delta):
            guard let current = self.store.current else {
                self.logger.warning("\(ConfigApplyError.noBase(deltaFrom: delta.fromVersion)); asking for a snapshot")
                return .resync
            }
            do {
                next = try current.applying(delta)
            } catch {
                self.logger.warning("\(error); asking for a snapshot")
                return .resync
            }
        }
        self.store.install(next)
        self.versionGauge.record(next.version)
        self.confirmSync()
        // Memory first, disk second: a failing disk must not keep a revocation from taking effect.
        var needsCompaction = false
        do {
            switch update {
            case .full:
                self.fullUpdates.increment()
                try self.files.saveSnapshot(document)
                self.status.withLock {
                    $0.journalEntries = 0
                    $0.journalBytes = 0
                }
            case .delta:
                self.deltaUpdates.increment()
                try self.files.appendDelta(document)
                needsCompaction = self.status.withLock {
                    $0.journalEntries += 1
                    $0.journalBytes += document.count
                    return $0.journalEntries >= SnapshotFiles.journalCompactionEntries
                        || $0.journalBytes >= SnapshotFiles.journalCompactionBytes
                }
            }
        } catch {
            self.logger.error(
                "cannot write the configuration to disk; serving it from memory", metadata: ["reason": "\(error)"])
        }
        self.logger.info("configuration applied", metadata: ["config_version": "\(next.version)"])
        return .applied(needsCompaction: needsCompaction)
    }

    private func confirmSync() {
        self.status.withLock { $0.lastSync = Date() }
        self.ageGauge.record(0)
        self.setReachability(.up)
    }

    private func setReachability(_ new: Reachability) {
        let previous = self.status.withLock { status in
            defer { status.reachability = new }
            return status.reachability
        }
        self.reachableGauge.record(new == .up ? 1 : 0)
        if previous != new {
            self.logger.notice("control plane reachability changed", metadata: ["control_plane": "\(new)"])
        }
    }
}
