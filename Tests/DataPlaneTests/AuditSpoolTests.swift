import Foundation
import Testing

@testable import DataPlane

@Suite("the audit spool: append-only segments with a checksum per record")
struct AuditSpoolTests {
    static func directory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("zaas-spool-\(UUID())").path
    }

    static func record(_ n: Int) -> [UInt8] { Array("event \(n) \(String(repeating: "x", count: n % 50))".utf8) }

    @Test("records come back in order across segments and a reopening; shipped segments are removed")
    func roundTrip() throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let spool = try AuditSpool(directory: directory, settings: .init(segmentBytes: 512, maximumBytes: 1 << 20))
            for n in 0..<100 { try spool.append(Self.record(n)) }
            try spool.sync()
        }
        // A new process: the spool reopens and appends go on after what is there.
        let spool = try AuditSpool(directory: directory, settings: .init(segmentBytes: 512, maximumBytes: 1 << 20))
        for n in 100..<120 { try spool.append(Self.record(n)) }
        try spool.seal()
        let segments = try spool.sealed()
        #expect(segments.count > 5, "512-byte segments")
        var records: [[UInt8]] = []
        for segment in segments {
            let contents = try spool.contents(of: segment)
            #expect(contents.corrupt == 0 && !contents.torn)
            records += contents.records
        }
        #expect(records == (0..<120).map(Self.record))
        let before = spool.totalBytes
        try spool.remove(segments[0])
        #expect(spool.totalBytes < before)
        #expect(try spool.sealed().count == segments.count - 1)
    }

    @Test("a torn last record (a crash mid-write) is cut off on reopening; appends go on cleanly")
    func tornTail() throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let spool = try AuditSpool(directory: directory)
            for n in 0..<10 { try spool.append(Self.record(n)) }
        }
        let path = AuditSpool.path(directory, 1)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber).intValue
        #expect(truncate(path, off_t(size - 3)) == 0)
        #expect(AuditSpool.parse(try AuditSpool.read(path)).torn)

        let spool = try AuditSpool(directory: directory)
        try spool.append(Self.record(99))
        try spool.seal()
        let contents = try spool.contents(of: try #require(try spool.sealed().first))
        #expect(contents.records == (0..<9).map(Self.record) + [Self.record(99)])
        #expect(!contents.torn && contents.corrupt == 0)
    }

    @Test("a record whose bytes changed is skipped and counted; the records after it are read")
    func corruptRecord() throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try AuditSpool(directory: directory)
        for n in 0..<3 { try spool.append(Self.record(n)) }
        try spool.seal()
        let segment = try #require(try spool.sealed().first)
        var bytes = try AuditSpool.read(segment.path)
        let second = AuditSpool.headerBytes + Self.record(0).count + AuditSpool.headerBytes
        bytes[second] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: segment.path))
        let contents = try spool.contents(of: segment)
        #expect(contents.records == [Self.record(0), Self.record(2)])
        #expect(contents.corrupt == 1 && !contents.torn)
        // Garbage that is not a spool at all: nothing read, reported torn, no crash.
        #expect(
            AuditSpool.parse([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 1]) == .init(records: [], corrupt: 0, torn: true))
        #expect(AuditSpool.parse([]) == .init(records: [], corrupt: 0, torn: false))
    }

    @Test("full at its bound: appends are refused until shipped segments are removed; bad records refused")
    func bounded() throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try AuditSpool(directory: directory, settings: .init(segmentBytes: 256, maximumBytes: 1024))
        var appended = 0
        while true {
            do {
                try spool.append(Self.record(10))
                appended += 1
            } catch {
                #expect(error == .full)
                break
            }
        }
        #expect(appended > 10 && spool.totalBytes <= 1024)
        try spool.seal()
        for segment in try spool.sealed() { try spool.remove(segment) }
        #expect(spool.totalBytes == 0)
        try spool.append(Self.record(1))
        #expect(throws: AuditSpool.SpoolError.invalidRecord(0)) { try spool.append([]) }
        #expect(throws: AuditSpool.SpoolError.invalidRecord(300)) {
            try spool.append([UInt8](repeating: 1, count: 300))
        }
    }
}
