import ArgumentParser
import Foundation
import NIOHTTP1
import Shared

struct Usage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Usage metered from the audit trail (docs/billing.md).",
        subcommands: [Show.self, Verify.self, Rebuild.self],
        defaultSubcommand: Show.self
    )

    struct Period: ParsableArguments {
        @Option(help: "A calendar month (UTC), YYYY-MM (default: the current month).") var period: String?
        @Option(help: "From this hour (ISO 8601, a whole hour UTC), with --to.") var from: String?
        @Option(help: "Until this hour (exclusive), with --from.") var to: String?

        var parameters: [(String, String?)] { [("period", period), ("from", from), ("to", to)] }
    }

    static func query(_ parameters: [(String, String?)]) -> String {
        let query = parameters.compactMap { name, value in
            value.map { "\(name)=\($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0)" }
        }
        return query.isEmpty ? "" : "?" + query.joined(separator: "&")
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A tenant's usage for a period: your tenant's, or (operators) the one named.")
        @OptionGroup var connection: Connection
        @OptionGroup var period: Period
        @Option(help: "Operators: the tenant (its id).") var tenant: String?

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let path = "/admin/v1/usage" + Usage.query([("tenant_id", tenant)] + period.parameters)
                let value = try await connection.client.send(.GET, path)
                try connection.output(value) { Usage.text($0) }
            }
        }
    }

    /// The report as a few lines of text: totals, latency, then one line per day.
    static func text(_ value: Any) -> String {
        let report = value as? [String: Any] ?? [:]
        let totals = report["totals"] as? [String: Any] ?? [:]
        func counts(_ counters: [String: Any]) -> String {
            [
                "queries", "answered", "cache_exact", "cache_semantic", "cache_persistent", "refused_by_limit",
                "refused_other", "invalid", "failed", "abandoned", "input_tokens", "output_tokens",
            ].map { "\($0)=\(counters[$0] ?? 0)" }.joined(separator: " ")
        }
        var lines = [
            "tenant \(field(report, "tenant_id"))  \(field(report, "from")) – \(field(report, "to"))",
            "totals  \(counts(totals))",
            "cost    \(String(format: "%.6f", Double(totals["cost_nanodollars"] as? Int ?? 0) / 1e9)) USD"
                + "  cache hit rate \((totals["cache_hit_rate"] as? Double).map { String(format: "%.1f %%", $0 * 100) } ?? "-")",
            "latency p50 \(field(report["latency"] ?? [:], "p50_ms")) ms  p95 \(field(report["latency"] ?? [:], "p95_ms")) ms"
                + "  (\(field(report["latency"] ?? [:], "samples")) queries)",
        ]
        for day in report["by_day"] as? [[String: Any]] ?? [] {
            lines.append("\(field(day, "day"))  \(counts(day["counters"] as? [String: Any] ?? [:]))")
        }
        return lines.joined(separator: "\n")
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Operators: recompute the rollups of a range from the audit events; exit 1 if any differ.")
        @OptionGroup var connection: Connection
        @Option(help: "From this hour (ISO 8601, whole hour UTC).") var from: String
        @Option(help: "Until this hour (exclusive).") var to: String

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let value = try await connection.client.send(
                    .POST, "/admin/v1/usage/verify", body: ["from": from, "to": to])
                try connection.output(value) { value in
                    let differences = (value as? [String: Any])?["differences"] as? [[String: Any]] ?? []
                    return differences.isEmpty
                        ? "the rollups agree with the events"
                        : differences.map {
                            "\(field($0, "rollup")) \(field($0, "tenant_id")) \(field($0, "period")) \(field($0, "outcome")) \(field($0, "model")): stored \(field($0, "stored")), events \(field($0, "recomputed"))"
                        }.joined(separator: "\n")
                }
                if (value as? [String: Any])?["agree"] as? Bool != true { throw ExitCode(1) }
            }
        }
    }

    struct Rebuild: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Operators: replace a tenant's rollups of a range with a recomputation from its events.")
        @OptionGroup var connection: Connection
        @Option(help: "The tenant (its id).") var tenant: String
        @Option(help: "From this hour (ISO 8601, whole hour UTC).") var from: String
        @Option(help: "Until this hour (exclusive).") var to: String

        func run() async throws {
            try connection.requireToken()
            guard UUID(uuidString: tenant) != nil else { throw ValidationError("--tenant must be a tenant id") }
            try await zaasctl.run {
                let value = try await connection.client.send(
                    .POST, "/admin/v1/tenants/\(tenant)/usage/rebuild", body: ["from": from, "to": to])
                try connection.output(value) { "rebuilt: \(field($0, "hourly_rows")) hourly rows" }
            }
        }
    }
}
