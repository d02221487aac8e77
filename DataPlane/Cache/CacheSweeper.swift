import Canon
import Foundation
import Logging
import Metrics
import Retrieval
import ServiceLifecycle
import Shared
import Synchronization

/// Removes from Redis the cached answers and semantic streams of canon versions a publish has
/// replaced, in the background.
///
/// They are unreachable from the moment the node serves the new version (the canon versions are
/// in every key), and would expire with their TTL; this frees the memory sooner. Every few
/// seconds the sweeper compares each tenant's canon tag (what `QueryCacheKey` puts in its keys)
/// with the last pass; when tags changed and this node serves the versions the configuration
/// names, one node (whichever claims the event in Redis first) scans the cache keys and unlinks
/// those of the changed tenants that carry another tag.
final class CacheSweeper: Service, Sendable {
    let redis: RedisClient
    let library: CanonLibrary
    let store: ConfigStore
    let interval: Duration
    private let logger: Logger
    private let known = Mutex<[UUID: String]?>(nil)
    private let removed = Counter(label: "zaas_cache_swept_keys_total")

    init(
        redis: RedisClient, library: CanonLibrary, store: ConfigStore, interval: Duration = .seconds(2), logger: Logger
    ) {
        self.redis = redis
        self.library = library
        self.store = store
        self.interval = interval
        self.logger = logger
    }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.interval)
                await self.pass()
            }
        }
    }

    /// One comparison, and a sweep if tags changed. The first pass only records.
    func pass() async {
        guard let config = self.store.current, self.library.isCurrent(for: config) else { return }
        let state = self.library.current
        var tags: [UUID: String] = [:]
        for tenant in config.tenants.values {
            tags[tenant.id] = QueryCacheKey.canonTag(state.layers(for: tenant.id).map(\.index.sha256))
        }
        let changed = self.known.withLock { known -> [UUID: String] in
            defer { known = tags }
            guard let known else { return [:] }
            return tags.filter { known[$0.key] != nil && known[$0.key] != $0.value }
        }
        guard !changed.isEmpty else { return }
        do {
            try await self.sweep(keeping: changed)
        } catch {
            self.logger.warning(
                "cache sweep failed; the old entries expire with their TTL", metadata: ["error": "\(error)"])
        }
    }

    /// Unlinks every cache key of the given tenants whose canon tag is not the one given.
    func sweep(keeping tags: [UUID: String]) async throws {
        // Every node sees the same event; the first to claim it sweeps.
        let event = QueryCacheKey.canonTag(
            tags.sorted { $0.key.uuidString < $1.key.uuidString }.map { "\($0.key)=\($0.value)" })
        let claim = try await self.redis.send(["SET", .string("zaas:cache-sweep:\(event)"), "1", "NX", "EX", 3600])
        guard claim == .simpleString("OK") else { return }
        var cursor = "0"
        var unlinked = 0
        repeat {
            let reply = try await self.redis.send([
                "SCAN", .string(cursor), "MATCH", "zaas:{t:*}:[qs]c:*", "COUNT", 1000,
            ])
            let parts = reply.array ?? []
            cursor = parts.first?.string ?? "0"
            let stale = (parts.last?.array ?? []).compactMap(\.string).filter { key in
                guard let (tenant, tag) = Self.parse(key), let keep = tags[tenant] else { return false }
                return tag != keep
            }
            if !stale.isEmpty {
                unlinked += Int(try await self.redis.send(["UNLINK"] + stale.map { .string($0) }).int ?? 0)
            }
        } while cursor != "0"
        self.removed.increment(by: unlinked)
        self.logger.info("cache entries of replaced canon versions removed", metadata: ["keys": "\(unlinked)"])
    }

    /// `zaas:{t:<tenant>}:qc:<tag>:…` or `…:sc:<tag>:…` → (tenant, tag).
    static func parse(_ key: String) -> (UUID, String)? {
        let parts = key.split(separator: ":")
        guard parts.count >= 5, parts[1].hasPrefix("{t"), let tenant = UUID(uuidString: String(parts[2].dropLast()))
        else { return nil }
        return (tenant, String(parts[4]))
    }
}
