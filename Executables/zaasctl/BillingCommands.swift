import ArgumentParser
import Foundation
import NIOHTTP1
import Shared

struct Billing: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Billing: price lists, periods, lines and exports (docs/billing.md).",
        subcommands: [Periods.self, Close.self, Export.self, Prices.self, AddPrices.self],
        defaultSubcommand: Periods.self
    )

    struct Periods: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Billing periods and whether they are closed.")
        @OptionGroup var connection: Connection

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let value = try await connection.client.send(.GET, "/admin/v1/billing/periods")
                try connection.output(value) { value in
                    items(value).map {
                        [field($0, "period"), field($0, "state"), field($0, "closed_at"), field($0, "closed_by")]
                            .joined(separator: "  ")
                    }
                    .joined(separator: "\n")
                }
            }
        }
    }

    struct Close: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Operators: close a period (YYYY-MM); its lines are computed and frozen.")
        @OptionGroup var connection: Connection
        @Argument(help: "The month, YYYY-MM.") var period: String

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let value = try await connection.client.send(.POST, "/admin/v1/billing/periods/\(period)/close")
                try connection.output(value) {
                    "closed \(field($0, "period")): \(field($0, "charges")) charge lines, \(field($0, "adjustments")) adjustments"
                }
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A closed period's lines as JSON Lines or CSV: every tenant's (operators), or your own.")
        @OptionGroup var connection: Connection
        @Argument(help: "The month, YYYY-MM.") var period: String
        @Option(help: "jsonl or csv.") var format = "jsonl"
        @Option(help: "Operators: one tenant's lines (its id).") var tenant: String?
        @Option(help: "Write to this file instead of standard output.") var out: String?

        func run() async throws {
            try connection.requireToken()
            guard ["jsonl", "csv"].contains(format) else { throw ValidationError("--format must be jsonl or csv") }
            try await zaasctl.run {
                var path = "/admin/v1/billing/periods/\(period)/lines?format=\(format)"
                if let tenant { path += "&tenant_id=\(tenant)" }
                let bytes = try await connection.client.download(path)
                if let out {
                    try Data(bytes).write(to: URL(fileURLWithPath: out))
                } else {
                    FileHandle.standardOutput.write(Data(bytes))
                }
            }
        }
    }

    struct Prices: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The price lists you may see.")
        @OptionGroup var connection: Connection

        func run() async throws {
            try connection.requireToken()
            try await zaasctl.run {
                let value = try await connection.client.send(.GET, "/admin/v1/billing/price-lists")
                try connection.output(value) { value in
                    items(value).map { list in
                        let owner =
                            field(list, "tenant_id").isEmpty
                            ? "tier \(field(list, "tier_id"))" : "tenant \(field(list, "tenant_id"))"
                        let overage = ((list as? [String: Any])?["overage_per_thousand"] as? [String: String] ?? [:])
                            .sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                        return
                            "\(field(list, "effective_from"))  \(owner)  fee \(field(list, "monthly_fee")) \(field(list, "currency"))  included \(field(list, "included_queries"))  per 1k: \(overage)  margin \(field(list, "model_cost_margin_percent")) %"
                    }.joined(separator: "\n")
                }
            }
        }
    }

    struct AddPrices: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-prices",
            abstract: "Operators: add a price list version for a tier or one tenant.")
        @OptionGroup var connection: Connection
        @Option(help: "The tier (or give --tenant).") var tier: String?
        @Option(help: "One tenant's own prices (its id).") var tenant: String?
        @Option(help: "The month it takes effect, YYYY-MM.") var effectiveFrom: String
        @Option(help: "Monthly fee, e.g. 49.00.") var monthlyFee: String
        @Option(help: "Queries the fee includes each month.") var includedQueries: Int
        @Option(
            name: .customLong("overage"),
            help: "class=price per 1 000 queries beyond those included, e.g. cloud=4.00 (repeat; cache for cache hits)."
        )
        var overage: [String] = []
        @Option(help: "Margin on model cost, percent.") var margin: String = "0"

        func run() async throws {
            try connection.requireToken()
            var prices: [String: String] = [:]
            for entry in overage {
                let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw ValidationError("--overage takes class=price, not \(entry)") }
                prices[parts[0]] = parts[1]
            }
            var body: [String: Any] = [
                "effective_from": effectiveFrom, "monthly_fee": monthlyFee, "included_queries": includedQueries,
                "overage_per_thousand": prices, "model_cost_margin_percent": margin,
            ]
            if let tier { body["tier_id"] = tier }
            if let tenant { body["tenant_id"] = tenant }
            try await zaasctl.run {
                let value = try await connection.client.send(.POST, "/admin/v1/billing/price-lists", body: body)
                try connection.output(value) { "price list \(field($0, "id")) from \(field($0, "effective_from"))" }
            }
        }
    }
}
