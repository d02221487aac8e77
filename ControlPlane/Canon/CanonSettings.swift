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

    init(reader: ConfigReader) throws {
        self.modelDirectory = try reader.setting("embeddings.model_dir")
        self.buildThreads = try reader.setting("canon.build_threads", in: 1...64)
        self.maximumUploadBytes = (try reader.setting("canon.max_upload_mib", in: 1...1024)) << 20
        self.maximumFileBytes = (try reader.setting("canon.max_file_mib", in: 1...256)) << 20
    }
}
