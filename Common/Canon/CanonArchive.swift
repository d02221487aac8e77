import CZlib
import Foundation
import Shared

/// A `.tar.gz` canon upload: a folder tree of `definitions/`, `equations/`, `claims/` and
/// `experiments/` holding Markdown files (the folder gives the kind), and an optional
/// `status.yaml` mapping entry ids to statuses. A single wrapping folder (`canon/…`) is allowed.
///
/// Only regular files and folders are read; links, devices, absolute paths and paths with `..`
/// are refused, and the decompressed size is bounded so a small archive cannot expand without
/// limit.
public struct CanonArchive: Sendable {
    public static let kindFolders: [String: CanonEntry.Kind] = [
        "definitions": .definition, "equations": .equation, "claims": .claim, "experiments": .experiment,
    ]

    /// Largest `status.yaml` accepted, and the most entries it may name.
    static let maximumStatusBytes = 2 << 20
    static let maximumStatusEntries = 50_000
    /// Most files an archive may hold (each costs a parse and a problem list entry).
    static let maximumMembers = 20_000

    public let parser: CanonParser
    /// Largest decompressed archive accepted.
    public let maximumExpandedBytes: Int

    public init(parser: CanonParser = CanonParser(), maximumExpandedBytes: Int = 256 << 20) {
        self.parser = parser
        self.maximumExpandedBytes = maximumExpandedBytes
    }

    public func parse(file: String, bytes: [UInt8]) -> (entries: [LocatedEntry], problems: [CanonProblem]) {
        let tar: [UInt8]
        switch Self.gunzip(bytes, limit: self.maximumExpandedBytes) {
        case .success(let expanded): tar = expanded
        case .failure(let problem): return ([], [CanonProblem(file: file, line: nil, message: problem.message)])
        }
        var problems: [CanonProblem] = []
        let members = Self.untar(tar, archive: file, problems: &problems)
        let (entries, more) = self.parse(members: members, archive: file)
        return (entries, problems + more)
    }

    /// The same layout read from a folder on disk (the demo canon, an operator's checkout).
    public func parse(folder: String) -> (entries: [LocatedEntry], problems: [CanonProblem]) {
        var members: [Member] = []
        var problems: [CanonProblem] = []
        let root = URL(fileURLWithPath: folder).standardizedFileURL
        let enumerator = FileManager.default.enumerator(
            at: root, includingPropertiesForKeys: [.isRegularFileKey, .isSymbolicLinkKey])
        while let url = enumerator?.nextObject() as? URL {
            let values = try? url.resourceValues(forKeys: [.isRegularFileKey, .isSymbolicLinkKey])
            let path = String(url.standardizedFileURL.path.dropFirst(root.path.count + 1))
            if values?.isSymbolicLink == true {
                problems.append(
                    CanonProblem(file: path, line: nil, message: "only regular files and folders are allowed"))
            } else if values?.isRegularFile == true, let data = FileManager.default.contents(atPath: url.path) {
                members.append(Member(path: path, bytes: Array(data)))
            }
        }
        let (entries, more) = self.parse(members: members.sorted { $0.path < $1.path }, archive: nil)
        return (entries, problems + more)
    }

    func parse(members: [Member], archive file: String?) -> (entries: [LocatedEntry], problems: [CanonProblem]) {
        var problems: [CanonProblem] = []
        // Strip one wrapping folder when everything sits in it.
        let roots = Set(members.map { $0.path.split(separator: "/").first.map(String.init) ?? "" })
        let wrapper =
            roots.count == 1 && Self.kindFolders[roots.first!] == nil && roots.first != "status.yaml"
            ? roots.first! + "/" : ""
        var statusByID: [String: String] = [:]
        var markdown: [(display: String, kind: CanonEntry.Kind, bytes: [UInt8])] = []
        for member in members {
            let path = String(member.path.dropFirst(wrapper.count))
            let display = file.map { "\($0)!\(member.path)" } ?? member.path
            if path == "status.yaml" {
                guard member.bytes.count <= Self.maximumStatusBytes else {
                    problems.append(
                        CanonProblem(
                            file: display, line: nil,
                            message: "is \(member.bytes.count) bytes; the limit is \(Self.maximumStatusBytes)"))
                    continue
                }
                statusByID = Self.statuses(member.bytes, file: display, problems: &problems)
                continue
            }
            let components = path.split(separator: "/").map(String.init)
            guard components.count >= 2, let kind = Self.kindFolders[components[0]],
                CanonParser.Format(fileName: path) == .markdown
            else {
                problems.append(
                    CanonProblem(
                        file: display, line: nil,
                        message:
                            "unexpected file: Markdown files go under definitions/, equations/, claims/ or experiments/"
                    ))
                continue
            }
            guard member.bytes.count <= self.parser.limits.maximumFileBytes else {
                problems.append(
                    CanonProblem(
                        file: display, line: nil,
                        message: "is \(member.bytes.count) bytes; the limit is \(self.parser.limits.maximumFileBytes)"))
                continue
            }
            markdown.append((display, kind, member.bytes))
        }
        var entries: [LocatedEntry] = []
        for file in markdown {
            let display = file.display
            guard let text = String(validating: file.bytes, as: UTF8.self) else {
                problems.append(
                    CanonProblem(
                        file: display, line: CanonParser.firstInvalidUTF8Line(file.bytes), message: "is not valid UTF-8"
                    ))
                continue
            }
            entries += self.parser.parseMarkdown(
                file: display, text: text, defaults: ["kind": file.kind.rawValue], statusByID: statusByID,
                problems: &problems)
        }
        for id in statusByID.keys.sorted() where !entries.contains(where: { $0.entry.id == id }) {
            problems.append(
                CanonProblem(
                    file: file.map { "\($0)!status.yaml" } ?? "status.yaml", line: nil,
                    message: "names \(id), which no file defines"))
        }
        return (entries, problems)
    }

    static func statuses(_ bytes: [UInt8], file: String, problems: inout [CanonProblem]) -> [String: String] {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            problems.append(CanonProblem(file: file, line: nil, message: "is not valid UTF-8"))
            return [:]
        }
        let mapping: [String: Any]
        do {
            // Two values (id, status) per entry of the largest canon a file may hold.
            guard
                let value = try CanonYAML.load(
                    text, maximumBytes: Self.maximumStatusBytes, maximumNodes: 2 * Self.maximumStatusEntries + 1)
                    as? [String: Any]
            else {
                problems.append(
                    CanonProblem(file: file, line: nil, message: "must be a YAML mapping of entry ids to statuses"))
                return [:]
            }
            mapping = value
        } catch {
            problems.append(CanonProblem(file: file, line: nil, message: "\(error)"))
            return [:]
        }
        var statuses: [String: String] = [:]
        for (id, value) in mapping {
            guard let name = value as? String, CanonEntry.Status(name: name) != nil else {
                problems.append(
                    CanonProblem(
                        file: file, line: nil,
                        message:
                            "status of \(id) must be one of \(CanonEntry.Status.allCases.map(\.rawValue).joined(separator: ", "))"
                    ))
                continue
            }
            statuses[id] = name
        }
        return statuses
    }

    // MARK: gzip

    struct Failure: Error {
        let message: String
    }

    static func gunzip(_ bytes: [UInt8], limit: Int) -> Result<[UInt8], Failure> {
        guard bytes.count >= 2, bytes[0] == 0x1F, bytes[1] == 0x8B else {
            return .failure(Failure(message: "is not a gzip file"))
        }
        var stream = z_stream()
        // 15 + 32: a window of 2^15 with automatic gzip/zlib header detection.
        guard inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            return .failure(Failure(message: "cannot start decompressing"))
        }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        var input = bytes
        let status: Int32 = input.withUnsafeMutableBufferPointer { inputBuffer in
            stream.next_in = inputBuffer.baseAddress
            stream.avail_in = uInt(inputBuffer.count)
            while true {
                let result = chunk.withUnsafeMutableBufferPointer { chunkBuffer -> Int32 in
                    stream.next_out = chunkBuffer.baseAddress
                    stream.avail_out = uInt(chunkBuffer.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                output += chunk[0..<produced]
                if output.count > limit { return Z_BUF_ERROR }
                if result == Z_STREAM_END { return Z_STREAM_END }
                if result != Z_OK { return result }
                if stream.avail_in == 0 && produced == 0 { return Z_DATA_ERROR }
            }
        }
        switch status {
        case Z_STREAM_END: return .success(output)
        case Z_BUF_ERROR where output.count > limit:
            return .failure(Failure(message: "expands beyond \(limit) bytes"))
        default: return .failure(Failure(message: "is corrupt or truncated gzip data"))
        }
    }

    // MARK: tar

    struct Member {
        let path: String
        let bytes: [UInt8]
    }

    /// Regular files of a ustar/GNU/pax tar stream, with their normalised paths.
    static func untar(_ tar: [UInt8], archive: String, problems: inout [CanonProblem]) -> [Member] {
        var members: [Member] = []
        var offset = 0
        var longName: String?
        func field(_ start: Int, _ length: Int) -> [UInt8] {
            Array(tar[(offset + start)..<(offset + start + length)].prefix { $0 != 0 })
        }
        while offset + 512 <= tar.count {
            let header = tar[offset..<(offset + 512)]
            if header.allSatisfy({ $0 == 0 }) { break }
            let sizeText = String(decoding: field(124, 12), as: UTF8.self).trimmingCharacters(in: .whitespaces)
            guard let size = Int(sizeText.isEmpty ? "0" : sizeText, radix: 8), size >= 0,
                offset + 512 + size <= tar.count
            else {
                problems.append(
                    CanonProblem(file: archive, line: nil, message: "is a truncated or corrupt tar archive"))
                return members
            }
            let type = tar[offset + 156]
            let name = String(decoding: field(0, 100), as: UTF8.self)
            let prefix = String(decoding: field(345, 155), as: UTF8.self)
            var path = longName ?? (prefix.isEmpty ? name : prefix + "/" + name)
            longName = nil
            let data = Array(tar[(offset + 512)..<(offset + 512 + size)])
            offset += 512 + (size + 511) / 512 * 512
            switch type {
            case UInt8(ascii: "L"):  // GNU long name for the next member
                longName = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
                continue
            case UInt8(ascii: "x"):  // pax header: only `path` matters here
                for record in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                    if let range = record.range(of: " path=") { longName = String(record[range.upperBound...]) }
                }
                continue
            case UInt8(ascii: "g"), UInt8(ascii: "5"):
                continue
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
                break
            default:
                problems.append(
                    CanonProblem(
                        file: "\(archive)!\(path)", line: nil, message: "only regular files and folders are allowed"))
                continue
            }
            while path.hasPrefix("./") { path.removeFirst(2) }
            if TextRules.containsControlCharacters(path, multiline: false) || path.utf8.count > 1024 {
                let shown = String(
                    path.unicodeScalars.prefix(200).map {
                        TextRules.isControl($0, multiline: false) ? "\u{FFFD}" : Character($0)
                    })
                problems.append(
                    CanonProblem(
                        file: "\(archive)!\(shown)", line: nil,
                        message: "path must be at most 1024 bytes without control characters"))
                continue
            }
            let components = path.split(separator: "/", omittingEmptySubsequences: true)
            if path.hasPrefix("/") || components.contains("..") || components.isEmpty {
                problems.append(
                    CanonProblem(file: "\(archive)!\(path)", line: nil, message: "path escapes the archive"))
                continue
            }
            guard members.count < Self.maximumMembers else {
                problems.append(
                    CanonProblem(
                        file: archive, line: nil,
                        message: "holds more than \(Self.maximumMembers) files; split the canon"))
                return members
            }
            members.append(Member(path: components.joined(separator: "/"), bytes: data))
        }
        return members
    }
}
