import CZlib
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The node's local, append-only store of audit events, written before a query's response is
/// sent and shipped to the control plane from there (issue 16; docs/audit.md).
///
/// Segments are files `<sequence>.seg` (20 decimal digits) in one folder. A record is
/// `length:u32 crc32:u32 payload` (big-endian; CRC-32 of the payload). `append` writes with one
/// `write(2)` on a file opened `O_APPEND`, so once it returns the record is in the kernel and a
/// `kill -9` of the node loses nothing; `sync` (run on a short interval) makes it durable against
/// a machine's crash. A segment is sealed when it reaches `segmentBytes` or when the shipper asks
/// (`seal`); sealed segments are read whole (`records`) and removed once the control plane has
/// acknowledged them. On opening, a torn last record (a crash mid-write) is cut off.
final class AuditSpool: Sendable {
    struct Settings: Sendable {
        /// A segment is sealed once it holds this many bytes.
        var segmentBytes: Int = 4 << 20
        /// `append` refuses once the spool holds this many bytes (the control plane long away).
        var maximumBytes: Int = 1 << 30
    }

    enum SpoolError: Error, Equatable, CustomStringConvertible {
        /// The spool holds `maximumBytes`: nothing more is accepted until segments are shipped.
        case full
        /// A record larger than a segment may hold, or empty.
        case invalidRecord(Int)
        case io(String, Int32)

        var description: String {
            switch self {
            case .full: "the audit spool is full"
            case .invalidRecord(let size): "an audit record of \(size) bytes"
            case .io(let what, let code): "\(what): \(String(cString: strerror(code)))"
            }
        }
    }

    /// A sealed segment and what reading it found.
    struct Segment: Sendable, Equatable {
        let sequence: UInt64
        let path: String
    }

    struct Contents: Sendable, Equatable {
        var records: [[UInt8]]
        /// Records whose checksum did not match (skipped).
        var corrupt: Int
        /// The segment ended inside a record (cut off).
        var torn: Bool
    }

    static let headerBytes = 8

    let directory: String
    let settings: Settings
    private struct State {
        var descriptor: Int32
        var sequence: UInt64
        var currentBytes: Int
        /// Every segment's bytes, the current one included.
        var totalBytes: Int
        var dirty = false
        /// Descriptors of segments sealed since the last `sync`: fsynced and closed there, outside
        /// the lock appends take.
        var sealing: [Int32] = []
    }
    private let state: Mutex<State>

    /// Opens the spool in `directory` (made if missing): the newest segment is checked and a torn
    /// tail cut off, and appends go on in it.
    init(directory: String, settings: Settings = Settings()) throws {
        self.directory = directory
        self.settings = settings
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let sequences = try Self.sequences(in: directory)
        var total = 0
        for sequence in sequences.dropLast() {
            total += Int(
                (try? FileManager.default.attributesOfItem(
                    atPath: Self.path(directory, sequence))[.size] as? NSNumber)?.intValue ?? 0)
        }
        let sequence = sequences.last ?? 1
        let path = Self.path(directory, sequence)
        if FileManager.default.fileExists(atPath: path) {
            let valid = Self.validLength(try Self.read(path))
            guard truncate(path, off_t(valid)) == 0 else { throw SpoolError.io("truncate \(path)", errno) }
        }
        let descriptor = try Self.open(path)
        let size = Int(lseek(descriptor, 0, SEEK_END))
        self.state = Mutex(
            State(descriptor: descriptor, sequence: sequence, currentBytes: size, totalBytes: total + size))
    }

    deinit {
        self.state.withLock { state in
            for descriptor in state.sealing + [state.descriptor] {
                _ = fsync(descriptor)
                _ = close(descriptor)
            }
        }
    }

    /// The bytes the spool holds.
    var totalBytes: Int { self.state.withLock { $0.totalBytes } }

    /// Appends one record; once this returns, a crash of the process does not lose it.
    func append(_ payload: [UInt8]) throws(SpoolError) {
        guard !payload.isEmpty, payload.count + Self.headerBytes <= self.settings.segmentBytes else {
            throw .invalidRecord(payload.count)
        }
        var record = [UInt8]()
        record.reserveCapacity(payload.count + Self.headerBytes)
        Self.appendBigEndian(UInt32(payload.count), to: &record)
        Self.appendBigEndian(Self.crc32(payload), to: &record)
        record += payload
        try self.state.withLock { (state: inout State) throws(SpoolError) in
            guard state.totalBytes + record.count <= self.settings.maximumBytes else { throw .full }
            if state.currentBytes > 0, state.currentBytes + record.count > self.settings.segmentBytes {
                try self.rotate(&state)
            }
            let written = record.withUnsafeBytes { write(state.descriptor, $0.baseAddress, $0.count) }
            guard written == record.count else {
                let code = errno
                // A short write leaves a torn record: cut it off so the segment stays readable.
                if written > 0 { _ = ftruncate(state.descriptor, off_t(state.currentBytes)) }
                throw .io("write to the audit spool", written < 0 ? code : ENOSPC)
            }
            state.currentBytes += record.count
            state.totalBytes += record.count
            state.dirty = true
        }
    }

    /// Makes what was appended durable (fsync), when anything was; segments sealed since the
    /// last call are fsynced and closed here, so an append never waits for a disk flush.
    func sync() throws(SpoolError) {
        let (current, sealing) = self.state.withLock { state in
            defer {
                state.sealing = []
                state.dirty = false
            }
            return (state.dirty ? state.descriptor : -1, state.sealing)
        }
        var failure: SpoolError?
        for descriptor in sealing {
            if fsync(descriptor) != 0 { failure = .io("fsync of the audit spool", errno) }
            _ = close(descriptor)
        }
        if current >= 0, fsync(current) != 0 {
            failure = .io("fsync of the audit spool", errno)
            self.state.withLock { $0.dirty = true }
        }
        if let failure { throw failure }
    }

    /// Seals the current segment when it holds anything, so it can be shipped.
    func seal() throws(SpoolError) {
        try self.state.withLock { (state: inout State) throws(SpoolError) in
            if state.currentBytes > 0 { try self.rotate(&state) }
        }
    }

    /// The sealed segments, oldest first.
    func sealed() throws -> [Segment] {
        let current = self.state.withLock { $0.sequence }
        return try Self.sequences(in: self.directory).filter { $0 < current }.map {
            Segment(sequence: $0, path: Self.path(self.directory, $0))
        }
    }

    /// A sealed segment's records: a record whose checksum fails is skipped and counted; a
    /// record cut off by the end of the file ends the reading.
    func contents(of segment: Segment) throws -> Contents {
        Self.parse(try Self.read(segment.path))
    }

    /// Removes a shipped segment.
    func remove(_ segment: Segment) throws {
        let size = (try? FileManager.default.attributesOfItem(atPath: segment.path)[.size] as? NSNumber)?.intValue ?? 0
        try FileManager.default.removeItem(atPath: segment.path)
        self.state.withLock { $0.totalBytes -= size }
    }

    // MARK: Files

    /// Starts the next segment; the sealed one is made durable and closed by the next `sync`.
    private func rotate(_ state: inout State) throws(SpoolError) {
        let next = try Self.open(Self.path(self.directory, state.sequence + 1))
        state.sealing.append(state.descriptor)
        state.sequence += 1
        state.descriptor = next
        state.currentBytes = 0
        state.dirty = false
    }

    private static func open(_ path: String) throws(SpoolError) -> Int32 {
        let descriptor = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .io("open \(path)", errno) }
        return descriptor
    }

    static func path(_ directory: String, _ sequence: UInt64) -> String {
        let digits = String(sequence)
        return directory + "/" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg"
    }

    static func sequences(in directory: String) throws -> [UInt64] {
        try FileManager.default.contentsOfDirectory(atPath: directory).compactMap { name in
            guard name.hasSuffix(".seg"), name.count == 24 else { return nil }
            return UInt64(name.dropLast(4))
        }.sorted()
    }

    static func read(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    // MARK: Records

    static func parse(_ bytes: [UInt8]) -> Contents {
        var contents = Contents(records: [], corrupt: 0, torn: false)
        var offset = 0
        while offset < bytes.count {
            guard let (length, checksum) = Self.header(bytes, at: offset),
                length > 0, offset + Self.headerBytes + length <= bytes.count
            else {
                contents.torn = true
                break
            }
            let payload = Array(bytes[(offset + Self.headerBytes)..<(offset + Self.headerBytes + length)])
            if Self.crc32(payload) == checksum {
                contents.records.append(payload)
            } else {
                contents.corrupt += 1
            }
            offset += Self.headerBytes + length
        }
        return contents
    }

    /// The length of the prefix of whole records (a torn tail is what follows it).
    static func validLength(_ bytes: [UInt8]) -> Int {
        var offset = 0
        while let (length, _) = Self.header(bytes, at: offset), length > 0,
            offset + Self.headerBytes + length <= bytes.count
        {
            offset += Self.headerBytes + length
        }
        return offset
    }

    private static func header(_ bytes: [UInt8], at offset: Int) -> (Int, UInt32)? {
        guard offset + Self.headerBytes <= bytes.count else { return nil }
        func word(_ start: Int) -> UInt32 {
            bytes[start..<(start + 4)].reduce(0) { $0 << 8 | UInt32($1) }
        }
        return (Int(word(offset)), word(offset + 4))
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { buffer in
            UInt32(CZlib.crc32(0, buffer.baseAddress, uInt(buffer.count)))
        }
    }

    private static func appendBigEndian(_ value: UInt32, to bytes: inout [UInt8]) {
        bytes += [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }
}
