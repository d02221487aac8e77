import ArgumentParser
import Embeddings
import Foundation
import NIOHTTP1

/// `zaasctl`: the admin API from the shell. Sign in once, then pass the token with `--token` or
/// `ZAAS_TOKEN`. `--json` prints the API's JSON as is, for scripts.
@main
struct Zaasctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zaasctl",
        abstract: "Administer ZaaS through its admin API.",
        subcommands: [
            Login.self, Logout.self, Me.self, Tenants.self, Admins.self, Keys.self, Canon.self, Nodes.self, Models.self,
            Audit.self, Usage.self, Billing.self, Embed.self,
        ]
    )
}

struct Connection: ParsableArguments {
    @Option(help: "The control plane's URL (env ZAAS_CONTROL_URL).")
    var url: String = ProcessInfo.processInfo.environment["ZAAS_CONTROL_URL"] ?? "http://127.0.0.1:8400"

    // Secrets from the environment are read when used, never as an option's default: a default
    // is printed by --help and in usage errors.
    @Option(name: .customLong("token"), help: "A session token from `zaasctl login` (env ZAAS_TOKEN).")
    var tokenOption: String?

    var token: String? { self.tokenOption ?? ProcessInfo.processInfo.environment["ZAAS_TOKEN"] }

    @Flag(help: "Print the API's JSON instead of text.")
    var json = false

    var client: AdminClient { AdminClient(baseURL: url.hasSuffix("/") ? String(url.dropLast()) : url, token: token) }

    func requireToken() throws {
        guard token != nil else {
            throw ValidationError("Sign in first: --token or ZAAS_TOKEN (from `zaasctl login`).")
        }
    }

    /// Prints a response: JSON as is with --json, else `text` of it.
    func output(_ value: Any?, text: (Any) -> String) throws {
        guard let value else { return }
        if json {
            let data = try JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(text(value))
        }
    }
}

/// Runs a command body, turning API problems into one message on standard error and exit 1.
func run(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let failure as AdminClient.Failure {
        FileHandle.standardError.write(Data("zaasctl: \(failure)\n".utf8))
        throw ExitCode(1)
    }
}

func field(_ value: Any, _ key: String) -> String {
    guard let object = value as? [String: Any], let field = object[key] else { return "" }
    if let list = field as? [Any] { return list.map { "\($0)" }.joined(separator: ",") }
    return "\(field)"
}

func items(_ value: Any) -> [Any] { (value as? [String: Any])?["items"] as? [Any] ?? [] }

struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sign in; prints the session token.")
    @OptionGroup var connection: Connection
    @Option(help: "Account email.") var email: String
    @Option(
        name: .customLong("password"),
        help: "Password (env ZAAS_PASSWORD; prefer that, it keeps the password out of `ps`).")
    var passwordOption: String?

    func run() async throws {
        guard let password = self.passwordOption ?? ProcessInfo.processInfo.environment["ZAAS_PASSWORD"] else {
            throw ValidationError("--password or ZAAS_PASSWORD is required")
        }
        try await zaasctl.run {
            let session = try await connection.client.send(
                .POST, "/admin/v1/sessions", body: ["email": email, "password": password]
            )
            try connection.output(session) { field($0, "token") }
        }
    }
}

struct Logout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "End the session of --token.")
    @OptionGroup var connection: Connection

    func run() async throws {
        try connection.requireToken()
        try await zaasctl.run { _ = try await connection.client.send(.DELETE, "/admin/v1/sessions/current") }
    }
}

struct Me: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Who the token belongs to.")
    @OptionGroup var connection: Connection

    func run() async throws {
        try connection.requireToken()
        try await zaasctl.run {
            try connection.output(try await connection.client.send(.GET, "/admin/v1/me")) {
                "\(field($0, "kind")) \(field($0, "id")) role=\(field($0, "role")) tenant=\(field($0, "tenant_id"))"
            }
        }
    }
}

struct Tenants: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tenants (operators).",
        subcommands: [Create.self, List.self, Update.self, SetPolicy.self]
    )

    struct SetPolicy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-policy",
            abstract: "Replace a tenant's quota policy; options left out follow the tier."
        )
        @OptionGroup var connection: Connection
        @Argument var id: String
        @Option var queriesPerHour: Int?
        @Option var tenantQueriesPerHour: Int?
        @Option(help: "local, cloud or large-local; repeat for several") var modelClass: [String] = []
        @Option var maxCitations: Int?
        @Option var cacheTtlSeconds: Int?
        @Option var auditRetentionDays: Int?
        @Option(help: "true or false") var canonUpdatesAllowed: Bool?

        func run() async throws {
            try connection.requireToken()
            var body: [String: Any] = [:]
            if let queriesPerHour { body["queries_per_hour"] = queriesPerHour }
            if let tenantQueriesPerHour { body["tenant_queries_per_hour"] = tenantQueriesPerHour }
            if !modelClass.isEmpty { body["model_classes"] = modelClass }
            if let maxCitations { body["max_citations"] = maxCitations }
            if let cacheTtlSeconds { body["cache_ttl_seconds"] = cacheTtlSeconds }
            if let auditRetentionDays { body["audit_retention_days"] = auditRetentionDays }
            if let canonUpdatesAllowed { body["canon_updates_allowed"] = canonUpdatesAllowed }
            try await zaasctl.run {
                let tenant = try await connection.client.send(.PUT, "/admin/v1/tenants/\(id)/quota-policy", body: body)
                try connection.output(tenant) { value in
                    let limits = (value as? [String: Any])?["limits"] ?? [:]
                    return Tenants.line(value) + "  queries/hour=\(field(limits, "queries_per_hour"))"
                }
            }
        }
    }

    static func line(_ tenant: Any) -> String {
        "\(field(tenant, "id"))  \(field(tenant, "slug"))  \(field(tenant, "status"))  \(field(tenant, "tier"))"
    }

    struct Create: AsyncParsableCommand {
        @OptionGroup var connection: Connection
        @Option var name: String
        @Option var slug: String
        @Option(help: "free, pro, team or enterprise") var tier: String

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let tenant = try await connection.client.send(
                    .POST, "/admin/v1/tenants", body: ["name": name, "slug": slug, "tier": tier]
                )
                try connection.output(tenant, text: Tenants.line)
            }
        }
    }

    struct List: AsyncParsableCommand {
        @OptionGroup var connection: Connection
        @Option(help: "active, suspended or deleted") var status: String?

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let all = try await connection.client.all("/admin/v1/tenants" + (status.map { "?status=\($0)" } ?? ""))
                try connection.output(["items": all]) { items($0).map(Tenants.line).joined(separator: "\n") }
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a tenant's name, status or tier.")
        @OptionGroup var connection: Connection
        @Argument var id: String
        @Option var name: String?
        @Option(help: "active, suspended or deleted") var status: String?
        @Option var tier: String?

        func run() async throws {
            try connection.requireToken()
            var body: [String: Any] = [:]
            if let name { body["name"] = name }
            if let status { body["status"] = status }
            if let tier { body["tier"] = tier }
            try await zaasctl.run {
                try connection.output(try await connection.client.send(.PATCH, "/admin/v1/tenants/\(id)", body: body)) {
                    Tenants.line($0)
                }
            }
        }
    }
}

struct Admins: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tenant admins: an operator creates a tenant's admin with --tenant; a tenant admin adds their own.",
        subcommands: [Create.self, List.self, Update.self]
    )

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change an admin's role or status.")
        @OptionGroup var connection: Connection
        @Argument var id: String
        @Option(help: "admin or viewer") var role: String?
        @Option(help: "active or disabled") var status: String?

        func run() async throws {
            try connection.requireToken()
            var body: [String: Any] = [:]
            if let role { body["role"] = role }
            if let status { body["status"] = status }
            try await zaasctl.run {
                let admin = try await connection.client.send(.PATCH, "/admin/v1/admins/\(id)", body: body)
                try connection.output(admin) {
                    "\(field($0, "id"))  \(field($0, "email"))  \(field($0, "role"))  \(field($0, "status"))"
                }
            }
        }
    }

    struct Create: AsyncParsableCommand {
        @OptionGroup var connection: Connection
        @Option(help: "Tenant id (operators only).") var tenant: String?
        @Option var email: String
        @Option(name: .customLong("password"), help: "Password (env ZAAS_NEW_PASSWORD).")
        var passwordOption: String?
        @Option(help: "admin or viewer") var role: String = "admin"

        func run() async throws {
            try connection.requireToken()
            guard let password = self.passwordOption ?? ProcessInfo.processInfo.environment["ZAAS_NEW_PASSWORD"] else {
                throw ValidationError("--password or ZAAS_NEW_PASSWORD is required")
            }
            let path = tenant.map { "/admin/v1/tenants/\($0)/admins" } ?? "/admin/v1/admins"
            try await zaasctl.run {
                let admin = try await connection.client.send(
                    .POST, path, body: ["email": email, "password": password, "role": role]
                )
                try connection.output(admin) { "\(field($0, "id"))  \(field($0, "email"))  \(field($0, "role"))" }
            }
        }
    }

    struct List: AsyncParsableCommand {
        @OptionGroup var connection: Connection

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                try connection.output(try await connection.client.send(.GET, "/admin/v1/admins")) {
                    items($0).map { "\(field($0, "id"))  \(field($0, "email"))  \(field($0, "role"))" }
                        .joined(separator: "\n")
                }
            }
        }
    }
}

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Your tenant's API keys.",
        subcommands: [Create.self, List.self, Rotate.self, Revoke.self]
    )

    static func line(_ key: Any) -> String {
        "\(field(key, "id"))  \(field(key, "key_id"))  \(field(key, "status"))  \(field(key, "scopes"))  \(field(key, "name"))"
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key; the key is printed once.")
        @OptionGroup var connection: Connection
        @Option var name: String
        @Option(help: "query, canon:write or stats:read; repeat for several") var scope: [String] = ["query"]
        @Option(help: "live or test") var environment: String = "live"

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let created = try await connection.client.send(
                    .POST, "/admin/v1/keys", body: ["name": name, "scopes": scope, "environment": environment]
                )
                try connection.output(created) { field($0, "key") }
            }
        }
    }

    struct List: AsyncParsableCommand {
        @OptionGroup var connection: Connection
        @Option(help: "all, active or revoked") var status: String = "all"

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let all = try await connection.client.all("/admin/v1/keys?status=\(status)")
                try connection.output(["items": all]) { items($0).map(Keys.line).joined(separator: "\n") }
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Replace a key; the old one lasts --grace seconds.")
        @OptionGroup var connection: Connection
        @Argument var id: String
        @Option var grace: Int = 3600

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let created = try await connection.client.send(
                    .POST, "/admin/v1/keys/\(id)/rotate", body: ["grace_seconds": grace]
                )
                try connection.output(created) { field($0, "key") }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key at once.")
        @OptionGroup var connection: Connection
        @Argument var id: String

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run { _ = try await connection.client.send(.DELETE, "/admin/v1/keys/\(id)") }
        }
    }
}

struct Nodes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Data-plane nodes, the configuration version each holds and its lag, and their credentials (operators).",
        subcommands: [List.self, Issue.self, Credentials.self, Revoke.self, AdvanceConfig.self],
        defaultSubcommand: List.self
    )

    static func line(_ node: Any) -> String {
        "\(field(node, "id"))  \(field(node, "status"))  version \(field(node, "config_version"))"
            + "  lag \(field(node, "lag"))  \(field(node, "address"))  last seen \(field(node, "last_seen_at"))"
    }

    struct List: AsyncParsableCommand {
        @OptionGroup var connection: Connection

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let listed = try await connection.client.send(.GET, "/admin/v1/nodes")
                try connection.output(listed) { value in
                    (["control plane at version \(field(value, "config_version"))"] + items(value).map(Nodes.line))
                        .joined(separator: "\n")
                }
            }
        }
    }
}

extension Nodes {
    struct Issue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a node its own credential for the internal API; the token is printed once.",
            discussion: "Give it to the node as nodes.token (ZAAS_NODES_TOKEN), with node.id set to the same id.")
        @OptionGroup var connection: Connection
        @Option(help: "The node's id (its node.id setting).") var nodeId: String
        @Flag(help: "Revoke the node's other credentials (rotation without overlap, or a fresh start).")
        var replace = false

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let issued = try await connection.client.send(
                    .POST, "/admin/v1/nodes/credentials", body: ["node_id": nodeId, "replace": replace])
                try connection.output(issued) { field($0, "token") }
            }
        }
    }

    struct Credentials: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List node credentials (never their tokens).")
        @OptionGroup var connection: Connection

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let listed = try await connection.client.send(.GET, "/admin/v1/nodes/credentials")
                try connection.output(listed) { value in
                    items(value).map {
                        "\(field($0, "id"))  \(field($0, "node_id"))  \(field($0, "status"))"
                            + "  issued \(field($0, "created_at"))  last used \(field($0, "last_used_at"))"
                    }.joined(separator: "\n")
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Revoke a node credential: the node is refused from its next call (within 10 s on other replicas).")
        @OptionGroup var connection: Connection
        @Argument(help: "The credential's id (`zaasctl nodes credentials`).") var id: String

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let revoked = try await connection.client.send(.DELETE, "/admin/v1/nodes/credentials/\(id)")
                try connection.output(revoked) { "\(field($0, "id"))  \(field($0, "node_id"))  \(field($0, "status"))" }
            }
        }
    }

    struct AdvanceConfig: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "advance-config",
            abstract: "Move the configuration version past what every node holds (after a database restore).")
        @OptionGroup var connection: Connection
        @Option(help: "Also past this version (default: the highest any registered node holds).") var past: Int?

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let body: [String: Any] = past.map { ["past": $0] } ?? [:]
                let advanced = try await connection.client.send(.POST, "/admin/v1/nodes/config-version", body: body)
                try connection.output(advanced) { "configuration now at version \(field($0, "config_version"))" }
            }
        }
    }
}

struct Embed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print sentence embeddings as JSON, to check a model copy against known vectors.",
        discussion: "Runs the in-process model (no server needed). Texts are arguments, or one per line with --file."
    )

    @Option(help: "The model folder (env ZAAS_EMBEDDINGS_MODEL_DIR; `bash infra/fetch-model.sh` makes it).")
    var modelDir: String =
        ProcessInfo.processInfo.environment["ZAAS_EMBEDDINGS_MODEL_DIR"] ?? ".zaas/models/all-MiniLM-L6-v2"

    @Option(help: "A UTF-8 file with one text per line.")
    var file: String?

    @Argument(help: "Texts to embed.")
    var texts: [String] = []

    func validate() throws {
        if self.texts.isEmpty && self.file == nil { throw ValidationError("Give texts, or --file with one per line.") }
        if !self.texts.isEmpty && self.file != nil { throw ValidationError("Give texts or --file, not both.") }
    }

    func run() async throws {
        var texts = self.texts
        if let file {
            guard let content = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("Cannot read \(file) as UTF-8 text.")
            }
            texts = content.split(separator: "\n", omittingEmptySubsequences: false).map {
                String($0.hasSuffix("\r") ? $0.dropLast() : $0)
            }
            if texts.last == "" { texts.removeLast() }
        }
        let model: SentenceModel
        do {
            model = try SentenceModel(directory: self.modelDir)
        } catch {
            throw ValidationError("\(error) (folder \(self.modelDir); fetch it with `bash infra/fetch-model.sh`)")
        }
        let vectors = model.embedNow(texts)
        let items: [[String: Any]] = zip(texts, vectors).map { text, vector in
            ["text": text, "tokens": model.tokenizer.tokenize(text), "embedding": vector.map(Double.init)]
        }
        let data = try JSONSerialization.data(
            withJSONObject: ["model": self.modelDir, "dimension": model.encoder.dimension, "items": items],
            options: [.sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: data, as: UTF8.self))
    }
}
