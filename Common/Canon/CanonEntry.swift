import Foundation

/// One entry of a canon: a definition, equation, claim, experiment or piece of narrative, with
/// the status of what it asserts.
public struct CanonEntry: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case definition, equation, claim, experiment, narrative
    }

    /// How well established the entry is. A conjecture must never read as a proven fact.
    public enum Status: String, Sendable, Codable, CaseIterable {
        case proven = "Proven"
        case derived = "Derived"
        case modeled = "Modeled"
        case conjectural = "Conjectural"
        case narrative = "Narrative"

        /// Accepts any letter case ("proven", "PROVEN").
        public init?(name: String) {
            guard let match = Self.allCases.first(where: { $0.rawValue.lowercased() == name.lowercased() }) else {
                return nil
            }
            self = match
        }
    }

    /// Stable across versions: lower-case letters, digits, `.`, `_`, `-`; 1 to 128 characters.
    public var id: String
    public var kind: Kind
    public var title: String
    /// Markdown; LaTeX is kept exactly as written.
    public var body: String
    public var status: Status
    public var tags: [String]
    /// Ids of other entries (in this upload, the tenant's overlay or the base canon).
    public var links: [String]
    /// Where it comes from (a paper, a file and line, a URL).
    public var source: String?

    public init(
        id: String, kind: Kind, title: String, body: String, status: Status, tags: [String] = [],
        links: [String] = [], source: String? = nil
    ) {
        self.id = id
        self.kind = kind
        self.title = title
        self.body = body
        self.status = status
        self.tags = tags
        self.links = links
        self.source = source
    }

    public static func isValidID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        guard (1...128).contains(bytes.count), let first = bytes.first,
            (0x61...0x7A).contains(first) || (0x30...0x39).contains(first)
        else { return false }
        return bytes.allSatisfy { byte in
            (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) || byte == 0x2E || byte == 0x5F
                || byte == 0x2D
        }
    }

    /// A title turned into an id fragment: lower case, runs of other characters as one `-`.
    public static func slug(_ text: String) -> String {
        var result = ""
        var pendingDash = false
        for scalar in text.lowercased().unicodeScalars {
            if (scalar.value >= 0x61 && scalar.value <= 0x7A) || (scalar.value >= 0x30 && scalar.value <= 0x39) {
                if pendingDash && !result.isEmpty { result.append("-") }
                result.unicodeScalars.append(scalar)
                pendingDash = false
            } else {
                pendingDash = true
            }
        }
        return String(result.prefix(96))
    }
}

/// An entry and where it was read, for messages that point at the file and line.
public struct LocatedEntry: Sendable, Equatable {
    public var entry: CanonEntry
    public var file: String
    public var line: Int

    public init(entry: CanonEntry, file: String, line: Int) {
        self.entry = entry
        self.file = file
        self.line = line
    }
}

/// One thing wrong with an upload, where it is.
public struct CanonProblem: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// 1-based; nil when the problem is the file as a whole.
    public var line: Int?
    public var message: String

    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String {
        line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)"
    }
}
