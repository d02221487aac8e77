import ArgumentParser
import Foundation
import NIOHTTP1
import Shared

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The audit trail: every query's outcome (docs/audit.md).",
        subcommands: [List.self, Export.self, Verify.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List events, newest first: your tenant's, or (operators) any tenant's.",
            discussion: "With --json, one event per line (NDJSON), as the API returns them.")
        @OptionGroup var connection: Connection
        @Option(help: "Operators: one tenant's events (its id).") var tenant: String?
        @Option(help: "From this time (ISO 8601; default 7 days before --to).") var from: String?
        @Option(help: "Until this time (ISO 8601; default now).") var to: String?
        @Option(help: "answered, cache_exact, cache_persistent, cache_semantic, refused, invalid, failed, abandoned.")
        var outcome: String?
        @Option(help: "One API key's events (its record id).") var key: String?
        @Option(help: "Events answered by this model.") var model: String?
        @Option(help: "exact, persistent, semantic or miss.") var cache: String?
        @Option(help: "At most this many events (default 100).") var limit: Int = 100
        @Flag(help: "Every event of the range, page after page (ignores --limit).") var all = false

        var path: String {
            let parameters: [(String, String?)] = [
                ("tenant_id", tenant), ("from", from), ("to", to), ("outcome", outcome), ("key_id", key),
                ("model", model), ("cache", cache),
            ]
            let query = parameters.compactMap { name, value in
                value.map { "\(name)=\($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0)" }
            }
            return "/admin/v1/audit/events" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        }

        func run() async throws {
            try connection.requireToken()
            guard (1...500).contains(limit) else { throw ValidationError("--limit must be from 1 to 500") }
            try await zaasctl.run {
                let events: [Any]
                if all {
                    events = try await connection.client.all(path)
                } else {
                    let separator = path.contains("?") ? "&" : "?"
                    events = items(try await connection.client.send(.GET, path + separator + "limit=\(limit)") as Any)
                }
                for event in events {
                    if connection.json {
                        let data = try JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])
                        print(String(decoding: data, as: UTF8.self))
                    } else {
                        print(Self.line(event))
                    }
                }
            }
        }

        /// `time  outcome  status  model  "question"`.
        static func line(_ event: Any) -> String {
            let object = event as? [String: Any] ?? [:]
            let answer = object["answer"] as? [String: Any]
            let question = (object["question"] as? [String: Any])?["text"] as? String
            return [
                field(event, "time"), field(event, "outcome"), field(event, "status"),
                answer?["model_used"] as? String ?? "-", question.map { "\"\($0)\"" } ?? "-",
            ].joined(separator: "  ")
        }
    }
}

extension Audit {
    /// The key exports are checked with: --public-key, else ZAAS_CONFIG_PUBLIC_KEY, else (with a
    /// warning) the key the manifest names.
    static func verificationKey(_ option: String?, manifest: [UInt8]) throws -> ConfigVerificationKey {
        if let hex = option ?? ProcessInfo.processInfo.environment["ZAAS_CONFIG_PUBLIC_KEY"] {
            do {
                return try ConfigVerificationKey(hex: hex)
            } catch {
                throw ValidationError("--public-key: \(error)")
            }
        }
        let named =
            (try? JSONSerialization.jsonObject(with: Data(manifest)) as? [String: Any])?["signing_key"] as? String
        guard let named, let key = try? ConfigVerificationKey(hex: named) else {
            throw ValidationError("the manifest names no signing key; pass --public-key")
        }
        FileHandle.standardError.write(
            Data(
                "zaasctl: warning: checked against the key the manifest names (\(named)); pass --public-key (the control plane's config.public_key) to know it is the control plane's\n"
                    .utf8))
        return key
    }

    /// Checks a downloaded export folder: the manifest's signature, then each file.
    static func verify(folder: String, publicKey: String?) throws -> AuditExportManifest {
        let manifestBytes = Array(try Data(contentsOf: URL(fileURLWithPath: folder + "/manifest.json")))
        let signatureText = try String(contentsOfFile: folder + "/manifest.sig", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard let signature = Hex.decode(signatureText) else { throw ValidationError("manifest.sig is not hex") }
        let key = try Self.verificationKey(publicKey, manifest: manifestBytes)
        do {
            let manifest = try AuditExportManifest.verified(manifestBytes, signature: signature, key: key)
            for file in manifest.files {
                guard let contents = FileManager.default.contents(atPath: folder + "/" + file.name) else {
                    throw AuditExportManifest.VerificationError.missingFile(file.name)
                }
                try manifest.check(name: file.name, contents: Array(contents))
            }
            return manifest
        } catch let error as AuditExportManifest.VerificationError {
            FileHandle.standardError.write(Data("zaasctl: NOT VERIFIED: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Export a tenant's events for a period: NDJSON (gzip) and CSV with a signed manifest; verified after download."
        )
        @OptionGroup var connection: Connection
        @Option(help: "From this time (ISO 8601).") var from: String
        @Option(help: "Until this time (ISO 8601).") var to: String
        @Option(help: "Operators: the tenant (its id).") var tenant: String?
        @Option(help: "The folder to write (default ./audit-export-<id>).") var out: String?
        @Option(help: "The control plane's public key, hex (env ZAAS_CONFIG_PUBLIC_KEY).") var publicKey: String?

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                var body: [String: Any] = ["from": from, "to": to]
                if let tenant { body["tenant_id"] = tenant }
                let client = connection.client
                let created = try await client.send(.POST, "/admin/v1/audit/exports", body: body)
                let id = field(created as Any, "id")
                var export: Any? = created
                var shown = ""
                while true {
                    let status = field(export as Any, "status")
                    let progress = "export \(id): \(status), \(field(export as Any, "events")) events"
                    if progress != shown {
                        FileHandle.standardError.write(Data((progress + "\n").utf8))
                        shown = progress
                    }
                    if status == "done" { break }
                    if status == "failed" {
                        FileHandle.standardError.write(Data("zaasctl: \(field(export as Any, "error"))\n".utf8))
                        throw ExitCode(1)
                    }
                    try await Task.sleep(for: .milliseconds(500))
                    export = try await client.send(.GET, "/admin/v1/audit/exports/\(id)")
                }
                let folder = out ?? "audit-export-\(id)"
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try Data(field(export as Any, "manifest").utf8).write(
                    to: URL(fileURLWithPath: folder + "/manifest.json"))
                try Data((field(export as Any, "signature") + "\n").utf8).write(
                    to: URL(fileURLWithPath: folder + "/manifest.sig"))
                for name in ["events.ndjson.gz", "events.csv"] {
                    let bytes = try await client.download("/admin/v1/audit/exports/\(id)/files/\(name)")
                    try Data(bytes).write(to: URL(fileURLWithPath: folder + "/" + name))
                }
                let manifest = try Audit.verify(folder: folder, publicKey: publicKey)
                print("\(folder): verified, \(manifest.events) events of tenant \(manifest.tenantID.lowercased)")
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a downloaded export folder: the manifest's signature and every file's SHA-256.")
        @Argument(help: "The folder `zaasctl audit export` wrote.") var folder: String
        @Option(help: "The control plane's public key, hex (env ZAAS_CONFIG_PUBLIC_KEY).") var publicKey: String?

        func run() async throws {
            let manifest = try Audit.verify(folder: folder, publicKey: publicKey)
            print("\(folder): verified, \(manifest.events) events of tenant \(manifest.tenantID.lowercased)")
        }
    }
}
