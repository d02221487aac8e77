import Foundation
import Shared
import Synchronization

/// The bearer tokens of model backends, which never travel in the config: a catalog entry names
/// its credential (`ZAAS_MODEL_OPENAI`) and each node reads it from its own environment, or from
/// the file of that name in `models.credentials_dir` (a mounted secret), re-read every 30 s so a
/// rotated secret takes effect without a restart.
final class ModelCredentials: Sendable {
    let directory: String?
    private let environment: [String: String]
    private let cache = Mutex<[String: (value: String?, readAt: ContinuousClock.Instant)]>([:])
    private let clock = ContinuousClock()
    static let refresh: Duration = .seconds(30)
    /// A secret file larger than this is not a token.
    static let maximumBytes = 16 * 1024

    init(directory: String?, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.directory = directory.flatMap { $0.isEmpty ? nil : $0 }
        self.environment = environment
    }

    /// The credential's value, or nil when this node has none by that name.
    func value(named name: String) -> String? {
        guard ModelCatalogRules.isValidCredentialName(name) else { return nil }
        if let value = self.environment[name], !value.isEmpty { return value }
        guard let directory else { return nil }
        let now = self.clock.now
        if let cached = self.cache.withLock({ $0[name] }), now - cached.readAt < Self.refresh { return cached.value }
        let value = Self.read(directory + "/" + name)
        self.cache.withLock { $0[name] = (value, now) }
        return value
    }

    private static func read(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let data = try? handle.read(upToCount: Self.maximumBytes + 1), data.count <= Self.maximumBytes,
            let text = String(data: data, encoding: .utf8)
        else { return nil }
        let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return value.isEmpty || value.contains(where: \.isNewline) ? nil : value
    }
}
