import Configuration
import Shared

/// Canon uploads and builds.
public struct CanonSettings: Sendable {
    /// The sentence-transformers model the builder embeds chunks with (the nodes' model).
    public var modelDirectory: String
    /// Embedding threads of one build.
    public var buildThreads: Int
    /// Largest upload body.
    public var maximumUploadBytes: Int
    /// Largest single file in an upload (Markdown, JSON, NDJSON, or inside an archive).
    public var maximumFileBytes: Int
    /// What one tenant may ask of the shared builder and database.
    public var limits: CanonLimits

    init(reader: ConfigReader) throws {
        self.modelDirectory = try reader.setting("embeddings.model_dir")
        self.buildThreads = try reader.setting("canon.build_threads", in: 1...64)
        self.maximumUploadBytes = (try reader.setting("canon.max_upload_mib", in: 1...1024)) << 20
        self.maximumFileBytes = (try reader.setting("canon.max_file_mib", in: 1...256)) << 20
        self.limits = CanonLimits(
            maximumPendingBuilds: try reader.setting("canon.max_pending_builds_per_tenant", in: 1...100),
            maximumVersionsPerHour: try reader.setting("canon.max_versions_per_hour", in: 1...10_000),
            keptUnpublishedVersions: try reader.setting("canon.keep_unpublished_versions", in: 1...1000),
            maximumConcurrentUploads: try reader.setting("canon.max_concurrent_uploads_per_tenant", in: 1...100))
    }
}

/// Bounds on what one tenant's uploads and updates (`POST /api/v1/canon/update`) cost everyone.
public struct CanonLimits: Sendable {
    /// Versions queued or building at once (`canon.max_pending_builds_per_tenant`); past it, 429.
    public var maximumPendingBuilds: Int
    /// Versions created in any hour (`canon.max_versions_per_hour`); past it, 429 with Retry-After.
    public var maximumVersionsPerHour: Int
    /// Versions never published that are kept, newest first (`canon.keep_unpublished_versions`);
    /// older ones are deleted when a new version is made.
    public var keptUnpublishedVersions: Int
    /// Upload bodies read and parsed at once per tenant on one control plane
    /// (`canon.max_concurrent_uploads_per_tenant`); past it, 429.
    public var maximumConcurrentUploads: Int

    public static let standard = CanonLimits(
        maximumPendingBuilds: 2, maximumVersionsPerHour: 60, keptUnpublishedVersions: 20, maximumConcurrentUploads: 2)
}
