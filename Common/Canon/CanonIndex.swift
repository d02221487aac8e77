import CKernels
import Crypto
import Foundation

/// The searchable form of one canon version: its entries, their chunks, a BM25 inverted index
/// and one embedding per chunk (8-bit, one scale per chunk), read from an artifact.
///
/// Artifact layout (little-endian; every section starts at a multiple of 8):
///
/// ```
/// "ZCAN" u16 format=1  u16 dimensions  u32 entries  u32 chunks  u32 terms  u32 postings
/// u64 total terms in all chunks  u16+bytes version label
/// u64 × 7 section offsets: entries, chunks, terms, posting chunks, posting counts, vectors, scales
/// entries   : u16+id u16+title u8 kind u8 status u32 first chunk u32 chunk count
/// chunks    : u32 entry  u16 term count  u8 flags (format 2; bit 0: injected)  u32+text
/// terms     : u16+term (sorted, unique)  u32 first posting  u32 posting count
/// postings  : u32 chunk × postings, then u16 term frequency × postings
/// vectors   : i8 × dimensions × chunks, then f32 scale × chunks
/// ```
///
/// The bytes are kept as they are (memory-mapped when read from a file): the postings and vectors
/// are read in place; only entries, chunk texts and the term dictionary become Swift values. It is
/// immutable after `init`, hence `@unchecked Sendable` (the buffers point into `storage`).
public final class CanonIndex: @unchecked Sendable {
    public struct Entry: Sendable, Equatable {
        public var id: String
        public var title: String
        public var kind: CanonEntry.Kind
        public var status: CanonEntry.Status
        public var chunks: Range<Int>
    }

    /// Format 2 added the chunk flags. Format 1 is still read: its chunk texts are cleaned of
    /// injected sentences as they load (their vectors still hold them; a rebuild drops them).
    public static let formatVersion: UInt16 = 2

    public enum ChunkFlags {
        public static let injected: UInt8 = 1
    }

    public let label: String
    /// SHA-256 of the artifact's bytes, lower-case hex: its name.
    public let sha256: String
    public let dimensions: Int
    public let entries: [Entry]
    public let entryIndexByID: [String: Int]
    public let chunkEntry: [UInt32]
    public let chunkText: [String]
    public let chunkLength: [UInt16]
    /// The chunk holds sentences addressed to a model (`CanonChunk.injected`).
    public let chunkInjected: [Bool]
    public var injectedChunkCount: Int { self.chunkInjected.count { $0 } }

    /// An entry's chunks that answers may quote or give to a model: all but the injected ones.
    public func servedChunks(of entry: Entry) -> [Int] {
        entry.chunks.filter { !self.chunkInjected[$0] }
    }
    public let totalTerms: UInt64
    let termPostings: [String: (start: Int, count: Int)]
    let postingChunks: UnsafeBufferPointer<UInt32>
    let postingCounts: UnsafeBufferPointer<UInt16>
    let vectors: UnsafeBufferPointer<Int8>
    let scales: UnsafeBufferPointer<Float>
    /// Keeps the bytes alive.
    let storage: ArtifactBytes
    /// Sign bits of every chunk vector (`dimensions / 64` words each), made at load, for the
    /// coarse pass of large indexes; empty below `sketchThreshold` chunks.
    let sketches: [UInt64]
    /// From this many chunks on, vector search first ranks by sign-bit Hamming distance and
    /// rescores only the best candidates exactly.
    public static let sketchThreshold = 20_000

    public var chunkCount: Int { self.chunkEntry.count }
    public var byteCount: Int { self.storage.count }

    public init(bytes storage: ArtifactBytes) throws(CanonIndexError) {
        self.storage = storage
        self.sha256 = Self.sha256(UnsafeRawBufferPointer(start: storage.pointer, count: storage.count))
        var reader = ArtifactReader(base: storage.pointer, count: storage.count)
        guard try reader.bytes(4) == Array("ZCAN".utf8) else { throw .malformed("not a canon artifact") }
        let format = try reader.u16()
        guard format == 1 || format == Self.formatVersion else {
            throw .malformed("artifact format \(format); this build reads formats 1 and \(Self.formatVersion)")
        }
        let dimensions = Int(try reader.u16())
        let entryCount = Int(try reader.u32())
        let chunkCount = Int(try reader.u32())
        let termCount = Int(try reader.u32())
        let postingCount = Int(try reader.u32())
        self.totalTerms = try reader.u64()
        self.label = try reader.string16()
        self.dimensions = dimensions
        var offsets: [Int] = []
        for _ in 0..<7 { offsets.append(Int(clamping: try reader.u64())) }
        // Each record takes at least this many bytes: counts that could not fit are refused
        // before anything is allocated for them.
        let size = storage.count
        guard entryCount <= size / 14, chunkCount <= size / 10, termCount <= size / 10, postingCount <= size / 6,
            dimensions > 0, chunkCount <= size / (dimensions + 4)
        else { throw .malformed("counts do not fit in \(size) bytes") }

        reader.offset = offsets[0]
        var entries: [Entry] = []
        entries.reserveCapacity(entryCount)
        var byID: [String: Int] = [:]
        for index in 0..<entryCount {
            let id = try reader.string16()
            let title = try reader.string16()
            guard let kind = CanonEntry.Kind.allCases.dropFirst(Int(try reader.u8())).first,
                let status = CanonEntry.Status.allCases.dropFirst(Int(try reader.u8())).first
            else { throw .malformed("entry \(index): unknown kind or status") }
            let first = Int(try reader.u32())
            let count = Int(try reader.u32())
            guard first <= chunkCount, count <= chunkCount - first, byID[id] == nil else {
                throw .malformed("entry \(index): chunk range or duplicate id")
            }
            byID[id] = index
            entries.append(Entry(id: id, title: title, kind: kind, status: status, chunks: first..<(first + count)))
        }

        reader.offset = offsets[1]
        var chunkEntry: [UInt32] = []
        var chunkText: [String] = []
        var chunkLength: [UInt16] = []
        var chunkInjected: [Bool] = []
        chunkEntry.reserveCapacity(chunkCount)
        chunkInjected.reserveCapacity(chunkCount)
        chunkText.reserveCapacity(chunkCount)
        chunkLength.reserveCapacity(chunkCount)
        for index in 0..<chunkCount {
            let entry = try reader.u32()
            guard Int(entry) < entryCount else { throw .malformed("chunk \(index): entry out of range") }
            chunkEntry.append(entry)
            chunkLength.append(try reader.u16())
            if format == 1 {
                chunkInjected.append(false)
                chunkText.append(InjectionClassifier.standard.separate(try reader.string32()).kept)
            } else {
                chunkInjected.append(try reader.u8() & ChunkFlags.injected != 0)
                chunkText.append(try reader.string32())
            }
        }

        reader.offset = offsets[2]
        let postingChunks = try reader.buffer(at: offsets[3], count: postingCount, of: UInt32.self)
        let postingCounts = try reader.buffer(at: offsets[4], count: postingCount, of: UInt16.self)
        var terms: [String: (start: Int, count: Int)] = [:]
        terms.reserveCapacity(termCount)
        for _ in 0..<termCount {
            let term = try reader.string16()
            let start = Int(try reader.u32())
            let count = Int(try reader.u32())
            guard start <= postingCount, count <= postingCount - start else {
                throw .malformed("term \(term): postings out of range")
            }
            // BM25's walk (in C) writes to a chunk's accumulator by posting and counts a chunk
            // as new when its accumulator was 0: postings must name distinct chunks in range, in
            // ascending order, each with the term at least once.
            var previous = -1
            for position in start..<(start + count) {
                let chunk = Int(postingChunks[position])
                guard chunk > previous, chunk < chunkCount, postingCounts[position] > 0 else {
                    throw .malformed("term \(term): postings out of order or range at chunk \(chunk)")
                }
                previous = chunk
            }
            terms[term] = (start, count)
        }

        self.postingChunks = postingChunks
        self.postingCounts = postingCounts
        self.vectors = try reader.buffer(at: offsets[5], count: chunkCount * dimensions, of: Int8.self)
        self.scales = try reader.buffer(at: offsets[6], count: chunkCount, of: Float.self)
        self.sketches =
            chunkCount >= Self.sketchThreshold && dimensions % 64 == 0
            ? Self.signBits(self.vectors, count: chunkCount, dimensions: dimensions) : []
        self.entries = entries
        self.entryIndexByID = byID
        self.chunkEntry = chunkEntry
        self.chunkText = chunkText
        self.chunkLength = chunkLength
        self.chunkInjected = chunkInjected
        self.termPostings = terms
    }

    /// SHA-256 of bytes as lower-case hex: an artifact's name.
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for byte in SHA256.hash(data: bytes) {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Opens an artifact file, memory-mapped; refused unless its bytes hash to `sha256`.
    public convenience init(contentsOf path: String, sha256 expected: String) throws(CanonIndexError) {
        try self.init(bytes: try ArtifactBytes(mapping: path))
        guard self.sha256 == expected else {
            throw .malformed("\(path) hashes to \(self.sha256), not \(expected)")
        }
    }

    /// The postings of a term: chunk indexes (ascending) and how often the term occurs in each.
    public func postings(of term: String) -> (
        chunks: Slice<UnsafeBufferPointer<UInt32>>, counts: Slice<UnsafeBufferPointer<UInt16>>
    )? {
        guard let range = self.termPostings[term] else { return nil }
        let span = range.start..<(range.start + range.count)
        return (self.postingChunks[span], self.postingCounts[span])
    }

    public func documentFrequency(of term: String) -> Int {
        self.termPostings[term]?.count ?? 0
    }

    public static func signBits(_ vectors: UnsafeBufferPointer<Int8>, count: Int, dimensions: Int) -> [UInt64] {
        let words = dimensions / 64
        var bits = [UInt64](repeating: 0, count: count * words)
        for chunk in 0..<count {
            for word in 0..<words {
                var value: UInt64 = 0
                let base = chunk * dimensions + word * 64
                for bit in 0..<64 where vectors[base + bit] > 0 { value |= 1 << UInt64(bit) }
                bits[chunk * words + word] = value
            }
        }
        return bits
    }

    /// A vector quantised like the stored ones: 8-bit values and their scale (value × scale ≈
    /// component). The semantic cache uses the same.
    public static func quantise(_ query: some Collection<Float>) -> ([Int8], Float) {
        let largest = query.reduce(Float(0)) { max($0, abs($1)) }
        let scale = largest > 0 ? largest / 127 : 1
        return (query.map { Int8(($0 / scale).rounded().clamped(to: -127...127)) }, scale)
    }

    /// The `limit` chunks most similar to a unit-length query, with their cosine similarity, best
    /// first, skipping chunks `isHidden` names. Small indexes are scanned exactly (8-bit dot
    /// products); large ones first keep the `max(limit × 50, 2048)` chunks nearest by sign-bit
    /// Hamming distance and rescore those exactly.
    /// `exhaustive` skips the coarse pass (to measure what it loses).
    public func nearest(
        _ query: UnsafeBufferPointer<Float>, limit: Int, exhaustive: Bool = false,
        isHidden: (Int) -> Bool = { _ in false }
    ) -> [(chunk: Int, score: Float)] {
        guard query.count == self.dimensions, self.chunkCount > 0, limit > 0 else { return [] }
        let (quantised, queryScale) = Self.quantise(query)
        let coarse = !self.sketches.isEmpty && !exhaustive
        var candidates: [UInt32]
        if !coarse {
            candidates = Array(0..<UInt32(self.chunkCount))
        } else {
            let words = self.dimensions / 64
            var queryBits = [UInt64](repeating: 0, count: words)
            for index in 0..<self.dimensions where query[index] > 0 {
                queryBits[index / 64] |= 1 << UInt64(index % 64)
            }
            var distances = [UInt16](repeating: 0, count: self.chunkCount)
            self.sketches.withUnsafeBufferPointer { bits in
                queryBits.withUnsafeBufferPointer { queryBits in
                    distances.withUnsafeMutableBufferPointer { out in
                        zaas_hamming(bits.baseAddress, self.chunkCount, words, queryBits.baseAddress, out.baseAddress)
                    }
                }
            }
            // Counting selection: the distance below which at least `keep` chunks lie.
            let keep = min(self.chunkCount, max(limit * 50, 2048))
            var histogram = [Int](repeating: 0, count: self.dimensions + 1)
            for distance in distances { histogram[Int(distance)] += 1 }
            var cutoff = 0
            var total = 0
            while cutoff <= self.dimensions && total + histogram[cutoff] < keep {
                total += histogram[cutoff]
                cutoff += 1
            }
            candidates = []
            candidates.reserveCapacity(keep + histogram[min(cutoff, self.dimensions)])
            for (chunk, distance) in distances.enumerated() where Int(distance) <= cutoff {
                candidates.append(UInt32(chunk))
            }
        }
        var scores = [Float](repeating: 0, count: candidates.count)
        quantised.withUnsafeBufferPointer { quantised in
            candidates.withUnsafeBufferPointer { ids in
                scores.withUnsafeMutableBufferPointer { out in
                    if !coarse {
                        zaas_i8_scores(
                            self.vectors.baseAddress, self.scales.baseAddress, ids.count, self.dimensions,
                            quantised.baseAddress, queryScale, out.baseAddress)
                    } else {
                        zaas_i8_scores_of(
                            self.vectors.baseAddress, self.scales.baseAddress, ids.baseAddress, ids.count,
                            self.dimensions, quantised.baseAddress, queryScale, out.baseAddress)
                    }
                }
            }
        }
        var top = TopScores(capacity: limit)
        for (position, score) in scores.enumerated() where score > top.threshold {
            let chunk = Int(candidates[position])
            if !isHidden(chunk) { top.insert(ChunkReference(layer: 0, chunk: chunk), score) }
        }
        return top.sorted().map { ($0.0.chunk, $0.1) }
    }

    /// A chunk's stored vector, scaled back to floats.
    public func vector(chunk: Int) -> [Float] {
        let scale = self.scales[chunk]
        return (0..<self.dimensions).map { Float(self.vectors[chunk * self.dimensions + $0]) * scale }
    }

    /// Cosine similarity of a unit-length query with one chunk (its stored vector is unit length
    /// up to quantisation).
    public func similarity(_ query: UnsafeBufferPointer<Float>, chunk: Int) -> Float {
        let dimensions = self.dimensions
        let base = self.vectors.baseAddress! + chunk * dimensions
        var sum: Float = 0
        var lane = SIMD16<Float>()
        var index = 0
        let query = query.baseAddress!
        while index + 16 <= dimensions {
            let stored = UnsafeRawPointer(base + index).loadUnaligned(as: SIMD16<Int8>.self)
            let values = UnsafeRawPointer(query + index).loadUnaligned(as: SIMD16<Float>.self)
            lane.addProduct(SIMD16<Float>(truncatingIfNeeded: stored), values)
            index += 16
        }
        sum = lane.sum()
        while index < dimensions {
            sum += Float(base[index]) * query[index]
            index += 1
        }
        return sum * self.scales[chunk]
    }
}

extension SIMD16 where Scalar == Float {
    @inline(__always)
    init(truncatingIfNeeded other: SIMD16<Int8>) {
        self = SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: other))
    }
}

public enum CanonIndexError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case unreadable(String)

    public var description: String {
        switch self {
        case .malformed(let reason): "canon artifact is malformed: \(reason)"
        case .unreadable(let reason): "canon artifact cannot be read: \(reason)"
        }
    }
}

/// The bytes of an artifact: a read-only memory mapping of a file, or an owned copy.
public final class ArtifactBytes: @unchecked Sendable {
    let pointer: UnsafeRawPointer
    public let count: Int
    private let release: @Sendable (UnsafeRawPointer, Int) -> Void

    /// Copies the bytes (tests, and artifacts built in memory).
    public init(copying bytes: [UInt8]) {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        bytes.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        self.pointer = UnsafeRawPointer(memory)
        self.count = bytes.count
        self.release = { pointer, _ in UnsafeMutableRawPointer(mutating: pointer).deallocate() }
    }

    public init(mapping path: String) throws(CanonIndexError) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .unreadable("\(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        // The size from the end offset (struct stat's owning module differs between toolchains).
        let end = lseek(descriptor, 0, SEEK_END)
        guard end > 0 else { throw .unreadable("\(path): empty") }
        let size = Int(end)
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0), mapped != MAP_FAILED else {
            throw .unreadable("\(path): mmap: \(String(cString: strerror(errno)))")
        }
        self.pointer = UnsafeRawPointer(mapped)
        self.count = size
        self.release = { pointer, count in munmap(UnsafeMutableRawPointer(mutating: pointer), count) }
    }

    deinit { self.release(self.pointer, self.count) }
}

struct ArtifactReader {
    let base: UnsafeRawPointer
    let count: Int
    var offset = 0

    mutating func bytes(_ length: Int) throws(CanonIndexError) -> [UInt8] {
        guard length >= 0, self.offset <= self.count, length <= self.count - self.offset else {
            throw .malformed("truncated at byte \(self.offset)")
        }
        defer { self.offset += length }
        return Array(UnsafeRawBufferPointer(start: self.base + self.offset, count: length))
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(CanonIndexError) -> T {
        guard self.offset <= self.count, MemoryLayout<T>.size <= self.count - self.offset else {
            throw .malformed("truncated at byte \(self.offset)")
        }
        defer { self.offset += MemoryLayout<T>.size }
        return T(littleEndian: (self.base + self.offset).loadUnaligned(as: T.self))
    }

    mutating func u8() throws(CanonIndexError) -> UInt8 { try self.integer(UInt8.self) }
    mutating func u16() throws(CanonIndexError) -> UInt16 { try self.integer(UInt16.self) }
    mutating func u32() throws(CanonIndexError) -> UInt32 { try self.integer(UInt32.self) }
    mutating func u64() throws(CanonIndexError) -> UInt64 { try self.integer(UInt64.self) }

    mutating func string16() throws(CanonIndexError) -> String {
        try self.string(length: Int(try self.u16()))
    }

    mutating func string32() throws(CanonIndexError) -> String {
        try self.string(length: Int(try self.u32()))
    }

    private mutating func string(length: Int) throws(CanonIndexError) -> String {
        let bytes = try self.bytes(length)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .malformed("text at byte \(self.offset - length) is not UTF-8")
        }
        return text
    }

    func buffer<T>(at offset: Int, count: Int, of type: T.Type) throws(CanonIndexError) -> UnsafeBufferPointer<T> {
        let length = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard !length.overflow, offset >= 0, offset <= self.count, length.partialValue <= self.count - offset,
            (Int(bitPattern: self.base) + offset) % MemoryLayout<T>.alignment == 0
        else { throw .malformed("section at byte \(offset) out of range or misaligned") }
        return UnsafeBufferPointer(start: (self.base + offset).assumingMemoryBound(to: T.self), count: count)
    }
}

/// Something a canon build tells the version's owner (kept with the version, shown by the API).
public struct CanonBuildWarning: Sendable, Codable, Equatable {
    /// `injected-instructions`: the entry holds sentences addressed to a model; no answer serves them.
    public var type: String
    public var entryID: String
    public var sentences: Int
    /// The start of the first such sentence.
    public var excerpt: String

    enum CodingKeys: String, CodingKey {
        case type
        case entryID = "entry_id"
        case sentences
        case excerpt
    }
}

extension CanonIndex {
    /// At most this many warnings are kept per version.
    public static let warningLimit = 200

    /// One warning per entry with injected sentences, in entry order.
    public var warnings: [CanonBuildWarning] {
        var warnings: [CanonBuildWarning] = []
        for entry in self.entries {
            let injected = entry.chunks.filter { self.chunkInjected[$0] }
            guard let first = injected.first else { continue }
            let sentences = injected.reduce(0) { $0 + self.chunkText[$1].split(separator: "\n").count }
            let text = self.chunkText[first].prefix { $0 != "\n" }
            warnings.append(
                CanonBuildWarning(
                    type: "injected-instructions", entryID: entry.id, sentences: sentences,
                    excerpt: text.count > 160 ? String(text.prefix(159)) + "…" : String(text)))
        }
        return Array(warnings.prefix(Self.warningLimit))
    }
}
