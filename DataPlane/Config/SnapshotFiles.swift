import Foundation
import Logging
import Shared

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The node's copy of its configuration on local disk, so it can start and serve while the
/// control plane is away.
///
/// - `config.snapshot`: the last full snapshot, exactly as signed by the control plane, replaced
///   atomically (write a temporary file, fsync it, rename it over, fsync the directory).
/// - `config.journal`: the signed deltas received since, appended and fsynced one by one.
///
/// Loading verifies every document's signature again and replays deltas in order; a corrupt,
/// truncated or wrongly signed document is refused with a logged reason and the node keeps the
/// valid part before it (a bad journal tail is cut off so later appends stay readable).
public struct SnapshotFiles: Sendable {
    public let directory: String
    /// Past this, the node asks the control plane for a full snapshot to start a new journal.
    public static let journalCompactionBytes = 8 << 20
    public static let journalCompactionEntries = 256

    public init(directory: String) {
        self.directory = directory
    }

    var snapshotPath: String { self.directory + "/config.snapshot" }
    var journalPath: String { self.directory + "/config.journal" }

    public struct Loaded: Sendable {
        public let state: ConfigState
        public let journalEntries: Int
        public let journalBytes: Int
    }

    /// The configuration on disk, or nil when there is none usable (reason logged).
    public func load(verifyingWith key: ConfigVerificationKey, logger: Logger) -> Loaded? {
        guard let snapshotBytes = FileManager.default.contents(atPath: self.snapshotPath) else {
            logger.info("no configuration snapshot on disk", metadata: ["path": "\(self.snapshotPath)"])
            return nil
        }
        var state: ConfigState
        do {
            guard case .full(let snapshot) = try SignedConfigDocument.decode(snapshotBytes, verifyingWith: key) else {
                logger.error(
                    "snapshot file holds a delta, not a snapshot; ignoring it",
                    metadata: ["path": "\(self.snapshotPath)"])
                return nil
            }
            state = ConfigState(snapshot: snapshot)
        } catch {
            logger.error(
                "snapshot file refused", metadata: ["path": "\(self.snapshotPath)", "reason": "\(error)"])
            return nil
        }

        let journal = [UInt8](FileManager.default.contents(atPath: self.journalPath) ?? Data())
        var offset = 0
        var entries = 0
        while offset < journal.count {
            let rest = journal[offset...]
            do {
                guard let length = try SignedConfigDocument.documentLength(rest), length <= rest.count else {
                    throw ConfigDocumentError.truncated
                }
                let update = try SignedConfigDocument.decode(rest.prefix(length), verifyingWith: key)
                guard case .delta(let delta) = update else {
                    throw ConfigDocumentError.malformed("journal holds a full snapshot")
                }
                if delta.toVersion > state.version {
                    state = try state.applying(delta)
                }
                offset += length
                entries += 1
            } catch {
                logger.error(
                    "config journal entry refused; keeping the entries before it",
                    metadata: ["path": "\(self.journalPath)", "offset": "\(offset)", "reason": "\(error)"])
                do {
                    try Self.writeAtomically(Array(journal[..<offset]), to: self.journalPath, directory: self.directory)
                } catch {
                    logger.error("cannot cut the config journal", metadata: ["reason": "\(error)"])
                }
                break
            }
        }
        return Loaded(state: state, journalEntries: entries, journalBytes: offset)
    }

    /// Replaces the snapshot and starts an empty journal.
    public func saveSnapshot(_ document: [UInt8]) throws {
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        try Self.writeAtomically(document, to: self.snapshotPath, directory: self.directory)
        try Self.writeAtomically([], to: self.journalPath, directory: self.directory)
    }

    /// Appends one signed delta to the journal and fsyncs it.
    public func appendDelta(_ document: [UInt8]) throws {
        let descriptor = open(self.journalPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SnapshotFileError.system("open \(self.journalPath)", errno) }
        defer { close(descriptor) }
        try Self.writeAll(document, to: descriptor, path: self.journalPath)
        guard fsync(descriptor) == 0 else { throw SnapshotFileError.system("fsync \(self.journalPath)", errno) }
    }

    static func writeAtomically(_ bytes: [UInt8], to path: String, directory: String) throws {
        let temporary = path + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SnapshotFileError.system("open \(temporary)", errno) }
        do {
            try Self.writeAll(bytes, to: descriptor, path: temporary)
            guard fsync(descriptor) == 0 else { throw SnapshotFileError.system("fsync \(temporary)", errno) }
            close(descriptor)
        } catch {
            close(descriptor)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else { throw SnapshotFileError.system("rename \(temporary)", errno) }
        // The rename itself is durable only once the directory is.
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            _ = fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }

    private static func writeAll(_ bytes: [UInt8], to descriptor: Int32, path: String) throws {
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                write(descriptor, buffer.baseAddress! + written, buffer.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw SnapshotFileError.system("write \(path)", errno)
            }
            written += result
        }
    }
}

public struct SnapshotFileError: Error, CustomStringConvertible {
    public let description: String

    static func system(_ operation: String, _ code: Int32) -> SnapshotFileError {
        SnapshotFileError(description: "\(operation): \(String(cString: strerror(code)))")
    }
}
