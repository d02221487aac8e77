import CZlib
import Canon
import Foundation
import Testing

/// Builds tar.gz archives in memory, including the hostile ones a real tool would not write.
enum TarBuilder {
    struct Member {
        var path: String
        var content: String = ""
        var type: UInt8 = UInt8(ascii: "0")
    }

    static func tar(_ members: [Member]) -> [UInt8] {
        var out: [UInt8] = []
        for member in members {
            var header = [UInt8](repeating: 0, count: 512)
            func put(_ text: String, at offset: Int) {
                for (index, byte) in text.utf8.enumerated() { header[offset + index] = byte }
            }
            put(member.path, at: 0)
            put("0000644", at: 100)
            let data = Array(member.content.utf8)
            put(String(format: "%011o", data.count), at: 124)
            put("00000000000", at: 136)
            header[156] = member.type
            put("ustar", at: 257)
            put("00", at: 263)
            for index in 148..<156 { header[index] = 0x20 }
            let checksum = header.reduce(0) { $0 + Int($1) }
            put(String(format: "%06o", checksum), at: 148)
            header[154] = 0
            out += header + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
        }
        return out + [UInt8](repeating: 0, count: 1024)
    }

    static func gzip(_ bytes: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        deflateInit2_(
            &stream, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        defer { deflateEnd(&stream) }
        var input = bytes
        var output = [UInt8](repeating: 0, count: bytes.count + 1024)
        let written = input.withUnsafeMutableBufferPointer { inputBuffer in
            output.withUnsafeMutableBufferPointer { outputBuffer -> Int in
                stream.next_in = inputBuffer.baseAddress
                stream.avail_in = uInt(inputBuffer.count)
                stream.next_out = outputBuffer.baseAddress
                stream.avail_out = uInt(outputBuffer.count)
                deflate(&stream, Z_FINISH)
                return outputBuffer.count - Int(stream.avail_out)
            }
        }
        return Array(output.prefix(written))
    }

    static func archive(_ members: [Member]) -> [UInt8] { gzip(tar(members)) }
}

@Suite("canon uploads: tar.gz folder trees")
struct CanonArchiveTests {
    let archive = CanonArchive()

    @Test("folders give the kind, status.yaml the statuses, a wrapping folder is allowed")
    func folderTree() {
        let bytes = TarBuilder.archive([
            .init(path: "canon/", type: UInt8(ascii: "5")),
            .init(path: "canon/definitions/action.md", content: "# Action {#def.action}\n$S = \\int L\\,dt$\n"),
            .init(
                path: "canon/claims/unification.md",
                content: "---\nstatus: Conjectural\n---\n# Field unification\nThe fields unify.\n"),
            .init(path: "canon/status.yaml", content: "def.action: Proven\n"),
        ])
        let (entries, problems) = archive.parse(file: "canon.tar.gz", bytes: bytes)
        #expect(problems.isEmpty, "\(problems)")
        let byID = Dictionary(uniqueKeysWithValues: entries.map { ($0.entry.id, $0.entry) })
        #expect(byID["def.action"]?.kind == .definition)
        #expect(byID["def.action"]?.status == .proven)
        #expect(byID["def.action"]?.body == "$S = \\int L\\,dt$")
        #expect(byID["unification-field-unification"]?.kind == .claim)
        #expect(byID["unification-field-unification"]?.status == .conjectural)
        #expect(entries.first { $0.entry.id == "def.action" }?.file == "canon.tar.gz!canon/definitions/action.md")
    }

    @Test("paths escaping the archive, links, stray files and unknown ids in status.yaml are each reported")
    func hostileArchive() {
        let bytes = TarBuilder.archive([
            .init(path: "../evil.md", content: "# X\ny\n"),
            .init(path: "/etc/passwd", content: "root"),
            .init(path: "definitions/link.md", type: UInt8(ascii: "2")),
            .init(path: "definitions/readme.txt", content: "hello"),
            .init(path: "claims/a.md", content: "# A {#a}\nbody\n"),
            .init(path: "status.yaml", content: "a: Proven\nghost: Derived\nb: Maybe\n"),
        ])
        let (_, problems) = archive.parse(file: "up.tar.gz", bytes: bytes)
        let messages = problems.map(\.description)
        #expect(messages.contains("up.tar.gz!../evil.md: path escapes the archive"), "\(messages)")
        #expect(messages.contains("up.tar.gz!/etc/passwd: path escapes the archive"))
        #expect(messages.contains("up.tar.gz!definitions/link.md: only regular files and folders are allowed"))
        #expect(messages.contains { $0.hasPrefix("up.tar.gz!definitions/readme.txt: unexpected file") })
        #expect(messages.contains("up.tar.gz!status.yaml: names ghost, which no file defines"))
        #expect(messages.contains { $0.hasPrefix("up.tar.gz!status.yaml: status of b must be one of") })
    }

    @Test(
        "status.yaml: the alias bomb is refused at once, an oversized one is refused by size; control characters in paths"
    )
    func hostileStatusAndPaths() {
        let definition = TarBuilder.Member(
            path: "definitions/a.md", content: "---\nstatus: Proven\ntitle: A\n---\nbody\n")
        let bomb = archive.parse(
            file: "c.tar.gz",
            bytes: TarBuilder.archive([definition, .init(path: "status.yaml", content: CanonParserTests.aliasBomb)]))
        #expect(
            bomb.problems.map(\.description) == [
                "c.tar.gz!status.yaml: uses YAML anchors or aliases (& and *), which canon files may not"
            ])
        let big = archive.parse(
            file: "c.tar.gz",
            bytes: TarBuilder.archive([
                definition, .init(path: "status.yaml", content: String(repeating: "# padding\n", count: 300_000)),
            ]))
        #expect(big.problems.map(\.description) == ["c.tar.gz!status.yaml: is 3000000 bytes; the limit is 2097152"])
        let control = archive.parse(
            file: "c.tar.gz",
            bytes: TarBuilder.archive([definition, .init(path: "definitions/b\u{01}.md", content: "x")]))
        #expect(
            control.problems.map(\.description) == [
                "c.tar.gz!definitions/b\u{FFFD}.md: path must be at most 1024 bytes without control characters"
            ])
        #expect(control.entries.map(\.entry.id) == ["a"])
    }

    @Test("not gzip, truncated gzip, and an archive that expands past the limit are refused")
    func badContainers() {
        #expect(
            archive.parse(file: "a.tar.gz", bytes: Array("plain text".utf8)).problems.map(\.description)
                == ["a.tar.gz: is not a gzip file"])
        let good = TarBuilder.archive([.init(path: "claims/a.md", content: "# A\nbody\n")])
        #expect(
            archive.parse(file: "b.tar.gz", bytes: Array(good.prefix(good.count / 2))).problems.map(\.description)
                == ["b.tar.gz: is corrupt or truncated gzip data"])
        let bomb = TarBuilder.archive([.init(path: "claims/a.md", content: String(repeating: "a", count: 200_000))])
        let small = CanonArchive(maximumExpandedBytes: 100_000)
        #expect(
            small.parse(file: "c.tar.gz", bytes: bomb).problems.map(\.description) == [
                "c.tar.gz: expands beyond 100000 bytes"
            ])
    }
}
