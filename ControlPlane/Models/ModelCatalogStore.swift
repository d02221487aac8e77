import Foundation
import HTTPTypes
import Logging
import PostgresNIO
import Shared

/// The model catalog in PostgreSQL (migration 16). SQL only; `ModelController` is its HTTP and
/// `ConfigSource` sends the whole catalog to nodes with every config document.
struct ModelCatalogStore: Sendable {
    /// A catalog entry as the admin API shows it.
    struct Entry: Sendable, Encodable {
        let backend: ModelBackend
        let createdAt: Date
        let updatedAt: Date

        enum CodingKeys: String, CodingKey {
            case id, name, modelClass, `protocol`, baseUrl, upstreamModel, credentialName, timeoutMs, maxConcurrency
            case contextWindow, enabled, createdAt, updatedAt
            // Already snake case: `convertToSnakeCase` would write `per1k`.
            case inputUsdPer1kTokens = "input_usd_per_1k_tokens"
            case outputUsdPer1kTokens = "output_usd_per_1k_tokens"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(self.backend.id.uuidString.lowercased(), forKey: .id)
            try container.encode(self.backend.name, forKey: .name)
            try container.encode(self.backend.modelClass, forKey: .modelClass)
            try container.encode(self.backend.api, forKey: .protocol)
            try container.encode(self.backend.baseURL, forKey: .baseUrl)
            try container.encode(self.backend.upstreamModel, forKey: .upstreamModel)
            try container.encode(self.backend.credentialName, forKey: .credentialName)
            try container.encode(self.backend.timeoutMilliseconds, forKey: .timeoutMs)
            try container.encode(self.backend.maxConcurrency, forKey: .maxConcurrency)
            try container.encode(self.backend.contextWindow, forKey: .contextWindow)
            try container.encode(Price.dollars(self.backend.inputNanoDollarsPer1K), forKey: .inputUsdPer1kTokens)
            try container.encode(Price.dollars(self.backend.outputNanoDollarsPer1K), forKey: .outputUsdPer1kTokens)
            try container.encode(self.backend.enabled, forKey: .enabled)
            try container.encode(self.createdAt, forKey: .createdAt)
            try container.encode(self.updatedAt, forKey: .updatedAt)
        }
    }

    let database: ScopedDatabase

    func list(logger: Logger) async throws -> [Entry] {
        try await self.database.client.withOpenConnection { connection in
            try await Self.entries(connection: connection, logger: logger)
        }
    }

    func fetch(_ id: UUID, logger: Logger) async throws -> Entry? {
        try await self.database.client.withOpenConnection { connection in
            try await Self.entries(id: id, connection: connection, logger: logger).first
        }
    }

    /// Adds an entry; 409 when the name is taken or the catalog is full.
    func create(_ backend: ModelBackend, operatorID: UUID, logger: Logger) async throws -> Entry {
        try await self.database.withOperator(operatorID, logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext('model_backends'))", logger: logger)
            var count = 0
            for try await value in try await connection.query(
                "SELECT count(*)::int8 FROM model_backends", logger: logger
            ).decode(Int.self) { count = value }
            guard count < ModelCatalogRules.maximumEntries else { throw Problem.modelCatalogFull }
            do {
                try await connection.query(
                    """
                    INSERT INTO model_backends (id, name, model_class, protocol, base_url, upstream_model,
                        credential_name, timeout_ms, max_concurrency, context_window, input_nano_usd_per_1k,
                        output_nano_usd_per_1k, enabled)
                    VALUES (\(backend.id), \(backend.name), \(backend.modelClass.rawValue), \(backend.api.rawValue),
                        \(backend.baseURL), \(backend.upstreamModel), \(backend.credentialName),
                        \(Int32(backend.timeoutMilliseconds)), \(Int32(backend.maxConcurrency)),
                        \(Int32(backend.contextWindow)), \(Int64(backend.inputNanoDollarsPer1K)),
                        \(Int64(backend.outputNanoDollarsPer1K)), \(backend.enabled))
                    """,
                    logger: logger)
            } catch let error as PSQLError where error.sqlState == "23505" {
                throw Problem.modelNameTaken(backend.name)
            }
            guard
                let entry = try await Self.entries(id: backend.id, connection: connection, logger: logger).first
            else { throw ModelCatalogError.missingRow }
            return entry
        }
    }

    /// Replaces an entry (its id stays); nil when there is none.
    func replace(_ backend: ModelBackend, operatorID: UUID, logger: Logger) async throws -> Entry? {
        try await self.database.withOperator(operatorID, logger: logger) { connection in
            do {
                try await connection.query(
                    """
                    UPDATE model_backends SET name = \(backend.name), model_class = \(backend.modelClass.rawValue),
                        protocol = \(backend.api.rawValue), base_url = \(backend.baseURL),
                        upstream_model = \(backend.upstreamModel), credential_name = \(backend.credentialName),
                        timeout_ms = \(Int32(backend.timeoutMilliseconds)),
                        max_concurrency = \(Int32(backend.maxConcurrency)),
                        context_window = \(Int32(backend.contextWindow)),
                        input_nano_usd_per_1k = \(Int64(backend.inputNanoDollarsPer1K)),
                        output_nano_usd_per_1k = \(Int64(backend.outputNanoDollarsPer1K)),
                        enabled = \(backend.enabled), updated_at = now()
                    WHERE id = \(backend.id)
                    """,
                    logger: logger)
            } catch let error as PSQLError where error.sqlState == "23505" {
                throw Problem.modelNameTaken(backend.name)
            }
            return try await Self.entries(id: backend.id, connection: connection, logger: logger)
                .first
        }
    }

    /// Removes an entry; false when there was none.
    func delete(_ id: UUID, operatorID: UUID, logger: Logger) async throws -> Bool {
        try await self.database.withOperator(operatorID, logger: logger) { connection in
            var deleted = false
            for try await _ in try await connection.query(
                "DELETE FROM model_backends WHERE id = \(id) RETURNING id", logger: logger
            ).decode(UUID.self) { deleted = true }
            return deleted
        }
    }

    /// Every entry, by name: what nodes receive.
    static func all(connection: PostgresConnection, logger: Logger) async throws -> [ModelBackend] {
        try await Self.entries(connection: connection, logger: logger).map(\.backend)
    }

    /// Every entry by name, or the one with `id`.
    private static func entries(id: UUID? = nil, connection: PostgresConnection, logger: Logger) async throws
        -> [Entry]
    {
        var bindings = PostgresBindings()
        if let id { bindings.append(id) }
        let clause = id == nil ? "" : "WHERE id = $1"
        let rows = try await connection.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT id, name, model_class, protocol, base_url, upstream_model, credential_name, timeout_ms,
                        max_concurrency, context_window, input_nano_usd_per_1k, output_nano_usd_per_1k, enabled,
                        created_at, updated_at
                    FROM model_backends \(clause) ORDER BY name
                    """, binds: bindings),
            logger: logger)
        var entries: [Entry] = []
        for try await row in rows {
            let columns = try row.decode(
                (
                    UUID, String, String, String, String, String, String?, Int32, Int32, Int32, Int64, Int64, Bool,
                    Date, Date
                ).self)
            guard let modelClass = ModelClass(rawValue: columns.2), let api = ModelProtocol(rawValue: columns.3) else {
                throw ModelCatalogError.unknownValue(columns.1)
            }
            let backend = ModelBackend(
                id: columns.0, name: columns.1, modelClass: modelClass, api: api, baseURL: columns.4,
                upstreamModel: columns.5, credentialName: columns.6, timeoutMilliseconds: UInt32(columns.7),
                maxConcurrency: UInt16(columns.8), contextWindow: UInt32(columns.9),
                inputNanoDollarsPer1K: UInt64(columns.10), outputNanoDollarsPer1K: UInt64(columns.11),
                enabled: columns.12)
            entries.append(Entry(backend: backend, createdAt: columns.13, updatedAt: columns.14))
        }
        return entries
    }
}

enum ModelCatalogError: Error {
    case missingRow
    case unknownValue(String)
}

/// Prices in the API are US dollars per 1 000 tokens as JSON numbers (`0.00015`); stored and sent
/// to nodes as whole nano-dollars.
enum Price {
    static func dollars(_ nanoDollars: UInt64) -> Decimal {
        Decimal(nanoDollars) / Decimal(1_000_000_000)
    }

    /// nil when the amount is negative, finer than a nano-dollar, or above the maximum.
    static func nanoDollars(_ dollars: Decimal) -> UInt64? {
        guard dollars >= 0 else { return nil }
        var scaled = dollars * Decimal(1_000_000_000)
        var rounded = Decimal()
        NSDecimalRound(&rounded, &scaled, 0, .plain)
        guard rounded == scaled, rounded <= Decimal(ModelCatalogRules.maximumNanoDollarsPer1K) else { return nil }
        return UInt64(truncating: rounded as NSDecimalNumber)
    }
}

extension Problem {
    static func modelNameTaken(_ name: String) -> Problem {
        Problem(
            slug: "model-name-taken", title: "Conflict", status: .conflict,
            detail: "The catalog already has a model named \(name).")
    }

    static var modelCatalogFull: Problem {
        Problem(
            slug: "model-catalog-full", title: "Conflict", status: .conflict,
            detail: "The catalog holds at most \(ModelCatalogRules.maximumEntries) models; remove one first.")
    }
}
