import ArgumentParser
import Foundation
import NIOHTTP1

/// `zaasctl canon …`: your tenant's overlay, or with `--base` the platform base canon (operators).
struct Canon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Canon versions: upload (with build progress), list, show, diff, publish, rollback.",
        subcommands: [Upload.self, List.self, Show.self, Diff.self, Publish.self, Rollback.self]
    )

    struct Owner: ParsableArguments {
        @Flag(help: "The platform base canon (operators) instead of your tenant's overlay.")
        var base = false

        var path: String { self.base ? "/admin/v1/base-canon" : "/admin/v1/canon" }
    }

    static func line(_ version: Any) -> String {
        let progress = (version as? [String: Any])?["progress"] as? [String: Any]
        let published = ((version as? [String: Any])?["published"] as? Bool) == true ? "  published" : ""
        return "\(field(version, "id"))  \(field(version, "label"))  \(field(version, "state"))"
            + "  \(field(version, "entry_count")) entries  \(progress?["done"] ?? 0)/\(progress?["total"] ?? 0) chunks"
            + published
    }

    struct Upload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a canon (.json, .ndjson, .md, .tar.gz, or a folder tree) and follow its build.",
            discussion: """
                A folder is sent as a tar.gz of its definitions/, equations/, claims/ and experiments/
                folders and status.yaml. The build's progress is drawn on standard error.
                """
        )
        @OptionGroup var connection: Connection
        @OptionGroup var owner: Owner
        @Argument(help: "A file or a folder.") var path: String
        @Flag(help: "Publish the version as soon as it is built.") var publish = false
        @Flag(help: "Return once uploaded, without following the build.") var noWait = false

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let (bytes, type, name) = try Self.read(path)
                let query =
                    "?publish=\(publish)&filename=\(name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "upload")"
                let created = try await connection.client.send(
                    .POST, owner.path + "/versions" + query, contentType: type, bytes: bytes)
                let id = field(created as Any, "id")
                guard !noWait else {
                    try connection.output(created) { Canon.line($0) }
                    return
                }
                let final = try await Self.follow(id: id, connection: connection, path: owner.path)
                try connection.output(final) { Canon.line($0) }
                if field(final as Any, "state") == "failed" {
                    FileHandle.standardError.write(
                        Data("zaasctl: build failed: \(field(final as Any, "error"))\n".utf8))
                    throw ExitCode(1)
                }
            }
        }

        /// Polls the version until its build ends, drawing a progress bar.
        static func follow(id: String, connection: Connection, path: String) async throws -> Any? {
            let interactive = isatty(STDERR_FILENO) == 1
            var lastDrawn = ""
            while true {
                let version = try await connection.client.send(.GET, "\(path)/versions/\(id)")
                let state = field(version as Any, "state")
                let progress = (version as? [String: Any])?["progress"] as? [String: Any]
                let done = progress?["done"] as? Int ?? 0
                let total = progress?["total"] as? Int ?? 0
                let bar = Self.bar(state: state, done: done, total: total)
                if bar != lastDrawn {
                    FileHandle.standardError.write(
                        Data(((interactive ? "\r" : "") + bar + (interactive ? "" : "\n")).utf8))
                    lastDrawn = bar
                }
                if state == "ready" || state == "failed" {
                    if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
                    return version
                }
                try await Task.sleep(for: .milliseconds(250))
            }
        }

        static func bar(state: String, done: Int, total: Int) -> String {
            let width = 30
            let filled = total > 0 ? min(width, done * width / total) : (state == "ready" ? width : 0)
            let percent = total > 0 ? done * 100 / total : 0
            return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                + "] \(percent)%  \(done)/\(total) chunks  \(state)"
        }

        /// The upload's bytes, media type and name; a folder becomes a tar.gz.
        static func read(_ path: String) throws -> ([UInt8], String, String) {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                throw ValidationError("\(path) does not exist")
            }
            let name = (path as NSString).lastPathComponent
            if isFolder.boolValue {
                let tar = Process()
                tar.executableURL = URL(fileURLWithPath: "/bin/tar")
                tar.arguments = ["-czf", "-", "-C", path, "."]
                let pipe = Pipe()
                tar.standardOutput = pipe
                try tar.run()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                tar.waitUntilExit()
                guard tar.terminationStatus == 0 else { throw ValidationError("tar of \(path) failed") }
                return (Array(data), "application/gzip", name + ".tar.gz")
            }
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
            let lower = name.lowercased()
            let type =
                if lower.hasSuffix(".tar.gz") || lower.hasSuffix(".tgz") {
                    "application/gzip"
                } else if lower.hasSuffix(".ndjson") || lower.hasSuffix(".jsonl") {
                    "application/x-ndjson"
                } else if lower.hasSuffix(".json") {
                    "application/json"
                } else if lower.hasSuffix(".md") || lower.hasSuffix(".markdown") {
                    "text/markdown"
                } else {
                    ""
                }
            guard !type.isEmpty else { throw ValidationError("\(name): use .json, .ndjson, .md, .tar.gz or a folder") }
            return (bytes, type, name)
        }
    }

    struct List: AsyncParsableCommand {
        @OptionGroup var connection: Connection
        @OptionGroup var owner: Owner

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let listed = try await connection.client.send(.GET, owner.path + "/versions")
                try connection.output(listed) { items($0).map(Canon.line).joined(separator: "\n") }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        @OptionGroup var connection: Connection
        @OptionGroup var owner: Owner
        @Argument var id: String

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                try connection.output(try await connection.client.send(.GET, owner.path + "/versions/\(id)")) {
                    Canon.line($0)
                }
            }
        }
    }

    struct Diff: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What changed since another version (default: its parent).")
        @OptionGroup var connection: Connection
        @OptionGroup var owner: Owner
        @Argument var id: String
        @Option var against: String?

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let query = against.map { "?against=\($0)" } ?? ""
                let diff = try await connection.client.send(.GET, owner.path + "/versions/\(id)/diff" + query)
                try connection.output(diff) { value in
                    let object = value as? [String: Any] ?? [:]
                    var lines = ["\(object["from"] ?? "?") → \(object["to"] ?? "?")"]
                    for (sign, key) in [("+", "added"), ("~", "changed"), ("-", "removed")] {
                        lines += ((object[key] as? [String]) ?? []).map { "\(sign) \($0)" }
                    }
                    return lines.joined(separator: "\n")
                }
            }
        }
    }

    struct Publish: AsyncParsableCommand {
        @OptionGroup var connection: Connection
        @OptionGroup var owner: Owner
        @Argument var id: String

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let published = try await connection.client.send(.POST, owner.path + "/versions/\(id)/publish")
                try connection.output(published) { Canon.line($0) }
            }
        }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish the version published before the current one.")
        @OptionGroup var connection: Connection
        @OptionGroup var owner: Owner

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let version = try await connection.client.send(.POST, owner.path + "/rollback")
                try connection.output(version) { Canon.line($0) }
            }
        }
    }
}
