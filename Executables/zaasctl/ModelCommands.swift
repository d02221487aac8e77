import ArgumentParser
import Foundation
import NIOHTTP1

struct Models: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The model catalog: the backends nodes route questions to (operators).",
        discussion: """
            Backends speak OpenAI's chat completions (llama.cpp's llama-server, Ollama, vLLM, cloud providers). \
            A credential is never stored: --credential-name names the environment variable (or the file in \
            the node's models.credentials_dir) each node reads it from.
            """,
        subcommands: [List.self, Add.self, Update.self, Remove.self],
        defaultSubcommand: List.self
    )

    static func line(_ model: Any) -> String {
        "\(field(model, "name"))  \(field(model, "model_class"))  \(field(model, "base_url"))"
            + "  \(field(model, "enabled") == "1" || field(model, "enabled") == "true" ? "enabled" : "disabled")"
            + "  timeout \(field(model, "timeout_ms")) ms  concurrency \(field(model, "max_concurrency"))"
            + "  context \(field(model, "context_window"))"
            + "  $\(field(model, "input_usd_per_1k_tokens"))/$\(field(model, "output_usd_per_1k_tokens")) per 1k in/out"
    }

    /// The options `add` and `update` share; each given one is a field of the body.
    struct Fields: ParsableArguments {
        @Option(name: .customLong("class"), help: "local, cloud or large-local.") var modelClass: String?
        @Option(help: "The API root, e.g. http://127.0.0.1:8090/v1 (requests go to …/chat/completions).")
        var baseUrl: String?
        @Option(help: "The model id sent to the backend (default: the name).") var upstreamModel: String?
        @Option(help: "The credential's name, e.g. ZAAS_MODEL_OPENAI (read by each node; never stored).")
        var credentialName: String?
        @Flag(help: "The backend needs no credential (clears --credential-name).") var noCredential = false
        @Option(help: "How long one call may take, in milliseconds (default 30000).") var timeoutMs: Int?
        @Option(help: "Calls one node keeps open at once (default 4).") var maxConcurrency: Int?
        @Option(help: "Tokens of prompt plus answer the model takes (default 8192).") var contextWindow: Int?
        @Option(help: "US dollars per 1 000 input tokens.") var inputUsdPer1k: String?
        @Option(help: "US dollars per 1 000 output tokens.") var outputUsdPer1k: String?
        @Option(help: "true or false.") var enabled: Bool?

        func apply(to body: inout [String: Any]) throws {
            if let modelClass { body["model_class"] = modelClass }
            if let baseUrl { body["base_url"] = baseUrl }
            if let upstreamModel { body["upstream_model"] = upstreamModel }
            if let credentialName { body["credential_name"] = credentialName }
            if noCredential { body["credential_name"] = nil }
            if let timeoutMs { body["timeout_ms"] = timeoutMs }
            if let maxConcurrency { body["max_concurrency"] = maxConcurrency }
            if let contextWindow { body["context_window"] = contextWindow }
            for (option, key) in [
                (inputUsdPer1k, "input_usd_per_1k_tokens"), (outputUsdPer1k, "output_usd_per_1k_tokens"),
            ] {
                guard let option else { continue }
                guard let price = Decimal(string: option, locale: Locale(identifier: "en_US_POSIX")) else {
                    throw ValidationError("\(option) is not a number")
                }
                body[key] = NSDecimalNumber(decimal: price)
            }
            if let enabled { body["enabled"] = enabled }
        }
    }

    struct List: AsyncParsableCommand {
        @OptionGroup var connection: Connection

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let listed = try await connection.client.send(.GET, "/admin/v1/models")
                try connection.output(listed) { items($0).map(Models.line).joined(separator: "\n") }
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a backend to the catalog.")
        @OptionGroup var connection: Connection
        @Argument(help: "What answers report as model_used, e.g. gpt-oss-120b.") var name: String
        @OptionGroup var fields: Fields

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                var body: [String: Any] = ["name": name]
                try fields.apply(to: &body)
                let added = try await connection.client.send(.POST, "/admin/v1/models", body: body)
                try connection.output(added, text: Models.line)
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a backend: the options given replace its fields, the others stay.")
        @OptionGroup var connection: Connection
        @Argument(help: "The model's name.") var name: String
        @Option(help: "A new name.") var rename: String?
        @OptionGroup var fields: Fields

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let current = try await Models.find(name, connection: connection)
                var body = current.filter { Models.writable.contains($0.key) }
                if let rename { body["name"] = rename }
                try fields.apply(to: &body)
                let changed = try await connection.client.send(
                    .PUT, "/admin/v1/models/\(field(current, "id"))", body: body)
                try connection.output(changed, text: Models.line)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a backend from the catalog.")
        @OptionGroup var connection: Connection
        @Argument(help: "The model's name.") var name: String

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let current = try await Models.find(name, connection: connection)
                _ = try await connection.client.send(.DELETE, "/admin/v1/models/\(field(current, "id"))")
                if !connection.json { print("removed \(name)") }
            }
        }
    }

    static let writable: Set<String> = [
        "name", "model_class", "protocol", "base_url", "upstream_model", "credential_name", "timeout_ms",
        "max_concurrency", "context_window", "input_usd_per_1k_tokens", "output_usd_per_1k_tokens", "enabled",
    ]

    static func find(_ name: String, connection: Connection) async throws -> [String: Any] {
        let listed = try await connection.client.send(.GET, "/admin/v1/models")
        guard let model = items(listed as Any).first(where: { field($0, "name") == name }) as? [String: Any] else {
            throw AdminClient.Failure(status: 404, title: "Not Found", detail: "No model named \(name).", errors: [])
        }
        return model.filter { !($0.value is NSNull) }
    }
}
