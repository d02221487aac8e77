import Foundation
import Shared

/// Reads canon uploads — JSON (an array of entries), NDJSON (one entry per line) and Markdown
/// (YAML front matter, split at headings) — collecting every problem with its file and line
/// instead of stopping at the first. An upload with any problem stores nothing.
public struct CanonParser: Sendable {
    public struct Limits: Sendable {
        /// Largest file accepted, in bytes.
        public var maximumFileBytes: Int
        public var maximumTitleCharacters = 300
        public var maximumBodyCharacters = 200_000

        public init(maximumFileBytes: Int = 4 << 20) {
            self.maximumFileBytes = maximumFileBytes
        }
    }

    public enum Format: Sendable {
        case json, ndjson, markdown

        /// By file name: `.json`, `.ndjson`/`.jsonl`, `.md`/`.markdown`.
        public init?(fileName: String) {
            switch (fileName as NSString).pathExtension.lowercased() {
            case "json": self = .json
            case "ndjson", "jsonl": self = .ndjson
            case "md", "markdown": self = .markdown
            default: return nil
            }
        }
    }

    public let limits: Limits

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// The entries of one file, and what is wrong with it.
    public func parse(file: String, bytes: [UInt8], format: Format) -> (
        entries: [LocatedEntry], problems: [CanonProblem]
    ) {
        guard bytes.count <= self.limits.maximumFileBytes else {
            return (
                [],
                [
                    CanonProblem(
                        file: file, line: nil,
                        message: "is \(bytes.count) bytes; the limit is \(self.limits.maximumFileBytes)")
                ]
            )
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            let line = Self.firstInvalidUTF8Line(bytes)
            return ([], [CanonProblem(file: file, line: line, message: "is not valid UTF-8")])
        }
        var problems: [CanonProblem] = []
        let entries: [LocatedEntry]
        switch format {
        case .json: entries = self.parseJSON(file: file, text: text, bytes: bytes, problems: &problems)
        case .ndjson: entries = self.parseNDJSON(file: file, text: text, problems: &problems)
        case .markdown: entries = self.parseMarkdown(file: file, text: text, problems: &problems)
        }
        return (entries, problems)
    }

    /// Problems across a whole upload: duplicate ids, and links to entries that exist neither in
    /// the upload nor in `knownIDs` (the rest of the canon the upload lands in).
    public static func validate(_ entries: [LocatedEntry], knownIDs: Set<String>) -> [CanonProblem] {
        var problems: [CanonProblem] = []
        var firstSeen: [String: LocatedEntry] = [:]
        for located in entries {
            if let first = firstSeen[located.entry.id] {
                problems.append(
                    CanonProblem(
                        file: located.file, line: located.line,
                        message: "duplicate id \(located.entry.id) (first at \(first.file):\(first.line))"))
            } else {
                firstSeen[located.entry.id] = located
            }
        }
        for located in entries {
            for link in located.entry.links where firstSeen[link] == nil && !knownIDs.contains(link) {
                problems.append(
                    CanonProblem(
                        file: located.file, line: located.line,
                        message: "entry \(located.entry.id) links to \(link), which does not exist"))
            }
        }
        return problems
    }

    // MARK: JSON and NDJSON

    static let fields: Set<String> = ["id", "kind", "title", "body", "status", "tags", "links", "source"]

    func parseJSON(file: String, text: String, bytes: [UInt8], problems: inout [CanonProblem]) -> [LocatedEntry] {
        guard let value = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) else {
            problems.append(CanonProblem(file: file, line: nil, message: "is not valid JSON"))
            return []
        }
        guard let array = value as? [Any] else {
            problems.append(CanonProblem(file: file, line: 1, message: "must be a JSON array of entries"))
            return []
        }
        let lines = Self.topLevelElementLines(bytes)
        return array.enumerated().compactMap { index, element in
            let line = index < lines.count ? lines[index] : 1
            return self.entry(from: element, file: file, line: line, problems: &problems).map {
                LocatedEntry(entry: $0, file: file, line: line)
            }
        }
    }

    func parseNDJSON(file: String, text: String, problems: inout [CanonProblem]) -> [LocatedEntry] {
        var entries: [LocatedEntry] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            guard let value = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) else {
                problems.append(CanonProblem(file: file, line: index + 1, message: "is not a JSON object"))
                continue
            }
            if let entry = self.entry(from: value, file: file, line: index + 1, problems: &problems) {
                entries.append(LocatedEntry(entry: entry, file: file, line: index + 1))
            }
        }
        return entries
    }

    /// Checks one entry object field by field; every problem is recorded, nil if any.
    func entry(from value: Any, file: String, line: Int, problems: inout [CanonProblem]) -> CanonEntry? {
        guard let object = value as? [String: Any] else {
            problems.append(CanonProblem(file: file, line: line, message: "an entry must be a JSON object"))
            return nil
        }
        let before = problems.count
        func report(_ message: String) { problems.append(CanonProblem(file: file, line: line, message: message)) }
        for unknown in Set(object.keys).subtracting(Self.fields).sorted() { report("unknown field \(unknown)") }
        let id = object["id"] as? String
        if id == nil || !CanonEntry.isValidID(id!) {
            report("id must be 1 to 128 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
        }
        let kind = (object["kind"] as? String).flatMap(CanonEntry.Kind.init(rawValue:))
        if kind == nil {
            report("kind must be one of \(CanonEntry.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let status = (object["status"] as? String).flatMap(CanonEntry.Status.init(name:))
        if status == nil {
            report("status must be one of \(CanonEntry.Status.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        // Lengths in code points and no control characters (TextRules): what PostgreSQL stores.
        let title = (object["title"] as? String)?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        if let problem = TextRules.problem(title, length: 1...self.limits.maximumTitleCharacters) {
            report("title \(problem)")
        }
        let body = object["body"] as? String ?? ""
        if body.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            report("body must not be empty")
        } else if let problem = TextRules.problem(body, length: 1...self.limits.maximumBodyCharacters, multiline: true)
        {
            report("body \(problem)")
        }
        let tags = Self.strings(object["tags"], field: "tags", report: report)
        let links = Self.strings(object["links"], field: "links", report: report)
        for (field, values) in [("tags", tags), ("links", links)] {
            if let problem = values.lazy.compactMap({ TextRules.problem($0, length: 1...200) }).first {
                report("each of \(field) \(problem)")
            }
        }
        let source = object["source"]
        if source != nil, !(source is String), !(source is NSNull) { report("source must be a string") }
        if let source = source as? String, let problem = TextRules.problem(source, length: 0...2000) {
            report("source \(problem)")
        }
        guard problems.count == before, let id, let kind, let status else { return nil }
        return CanonEntry(
            id: id, kind: kind, title: title, body: body, status: status, tags: tags, links: links,
            source: source as? String)
    }

    static func strings(_ value: Any?, field: String, report: (String) -> Void) -> [String] {
        guard let value, !(value is NSNull) else { return [] }
        guard let array = value as? [Any], let strings = array as? [String] else {
            report("\(field) must be an array of strings")
            return []
        }
        return strings
    }

    /// The line on which each element of a top-level JSON array starts.
    static func topLevelElementLines(_ bytes: [UInt8]) -> [Int] {
        var lines: [Int] = []
        var line = 1
        var depth = 0
        var inString = false
        var escaped = false
        var expectingElement = false
        for byte in bytes {
            if byte == 0x0A { line += 1 }
            if inString {
                if escaped {
                    escaped = false
                } else if byte == 0x5C {
                    escaped = true
                } else if byte == 0x22 {
                    inString = false
                }
                continue
            }
            switch byte {
            case 0x22:
                if depth == 1 && expectingElement {
                    lines.append(line)
                    expectingElement = false
                }
                inString = true
            case 0x5B, 0x7B:
                if depth == 1 && expectingElement {
                    lines.append(line)
                    expectingElement = false
                }
                depth += 1
                if depth == 1 { expectingElement = true }
            case 0x5D, 0x7D:
                depth -= 1
            case 0x2C:
                if depth == 1 { expectingElement = true }
            case 0x20, 0x09, 0x0A, 0x0D:
                break
            default:
                if depth == 1 && expectingElement {
                    lines.append(line)
                    expectingElement = false
                }
            }
        }
        return lines
    }

    static func firstInvalidUTF8Line(_ bytes: [UInt8]) -> Int {
        var line = 1
        var start = 0
        for (index, byte) in bytes.enumerated() where byte == 0x0A {
            if String(validating: bytes[start..<index], as: UTF8.self) == nil { return line }
            line += 1
            start = index + 1
        }
        return line
    }

    // MARK: Markdown

    static let frontMatterFields: Set<String> = ["id", "kind", "status", "title", "tags", "source", "links"]

    /// YAML front matter (`kind`, `status`, and optionally `id`, `title`, `tags`, `links`,
    /// `source`) applies to the file; each `#` or `##` heading starts an entry whose title is the
    /// heading and whose id is `{#id}` at the heading's end, or the file's id (or name) joined to
    /// the heading's slug. Headings inside fenced code or `$$` display math do not split. A file
    /// without headings is one entry, titled by `title`.
    func parseMarkdown(
        file: String, text: String, defaults: [String: Any] = [:], statusByID: [String: String] = [:],
        problems: inout [CanonProblem]
    ) -> [LocatedEntry] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
        }
        var index = 0
        var meta: [String: Any] = [:]
        if lines.first == "---" {
            guard let end = lines.indices.dropFirst().first(where: { lines[$0] == "---" || lines[$0] == "..." }) else {
                problems.append(CanonProblem(file: file, line: 1, message: "front matter has no closing ---"))
                return []
            }
            let yaml = lines[1..<end].joined(separator: "\n")
            do {
                if let mapping = try CanonYAML.load(yaml) as? [String: Any] {
                    meta = mapping
                } else if !yaml.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                    problems.append(CanonProblem(file: file, line: 2, message: "front matter must be a YAML mapping"))
                }
            } catch {
                problems.append(CanonProblem(file: file, line: 2, message: "front matter \(error)"))
                return []
            }
            index = end + 1
        }
        let before = problems.count
        for unknown in Set(meta.keys).subtracting(Self.frontMatterFields).sorted() {
            problems.append(CanonProblem(file: file, line: 1, message: "unknown front matter field \(unknown)"))
        }
        let stem = CanonEntry.slug(((file as NSString).lastPathComponent as NSString).deletingPathExtension)
        let baseID = (meta["id"] as? String) ?? stem

        struct Section {
            var title: String
            var explicitID: String?
            var line: Int
            var body: [String] = []
        }
        var preamble: [String] = []
        var sections: [Section] = []
        var fence: String?
        var inMath = false
        for lineIndex in index..<lines.count {
            let line = lines[lineIndex]
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if let open = fence {
                if trimmed.hasPrefix(open) { fence = nil }
            } else if trimmed.hasPrefix("```") || trimmed.hasPrefix("~~~") {
                fence = String(trimmed.prefix(3))
            } else if trimmed == "$$" || (trimmed.hasPrefix("$$") && !trimmed.dropFirst(2).contains("$$")) {
                inMath.toggle()
            } else if !inMath, let heading = Self.heading(line) {
                sections.append(Section(title: heading.title, explicitID: heading.id, line: lineIndex + 1))
                continue
            }
            if sections.isEmpty { preamble.append(line) } else { sections[sections.count - 1].body.append(line) }
        }
        if fence != nil {
            problems.append(CanonProblem(file: file, line: nil, message: "a code fence is never closed"))
        }

        // What the front matter gives every entry of the file; the source defaults to the file.
        var common: [String: Any] = defaults
        common["source"] = meta["source"] ?? file
        for key in ["kind", "status", "tags", "links"] where meta[key] != nil { common[key] = meta[key] }

        var drafts: [(fields: [String: Any], line: Int)] = []
        let preambleText = preamble.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        if sections.isEmpty {
            var fields = common
            fields["id"] = baseID
            fields["title"] = meta["title"] as? String ?? ""
            fields["body"] = preambleText
            drafts.append((fields, index + 1))
        } else {
            if !preambleText.isEmpty {
                problems.append(
                    CanonProblem(
                        file: file, line: index + 1, message: "text before the first heading belongs to no entry"))
            }
            for section in sections {
                var fields = common
                fields["id"] =
                    section.explicitID
                    ?? (sections.count == 1 && meta["id"] != nil
                        ? baseID : baseID + "-" + CanonEntry.slug(section.title))
                fields["title"] = section.title
                fields["body"] = section.body.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
                drafts.append((fields, section.line))
            }
        }
        guard problems.count == before else { return [] }
        return drafts.compactMap { draft in
            var fields = draft.fields
            if let id = fields["id"] as? String, let status = statusByID[id] { fields["status"] = status }
            return self.entry(from: fields, file: file, line: draft.line, problems: &problems).map {
                LocatedEntry(entry: $0, file: file, line: draft.line)
            }
        }
    }

    /// `# Title` or `## Title {#id}`: the title and the explicit id, if any.
    static func heading(_ line: String) -> (title: String, id: String?)? {
        var rest = Substring(line)
        var level = 0
        while rest.first == "#" {
            level += 1
            rest = rest.dropFirst()
        }
        guard (1...2).contains(level), rest.first == " " || rest.first == "\t" else { return nil }
        var title = rest.trimmingCharacters(in: .whitespaces)
        var id: String?
        if title.hasSuffix("}"), let open = title.range(of: "{#", options: .backwards) {
            id = String(title[open.upperBound..<title.index(before: title.endIndex)])
            title = title[..<open.lowerBound].trimmingCharacters(in: .whitespaces)
        }
        return title.isEmpty ? nil : (title, id)
    }
}
