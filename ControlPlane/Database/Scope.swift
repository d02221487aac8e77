import Foundation
import Logging
import PostgresNIO

/// The only ways the control plane touches tenant data: inside one transaction whose scope is set
/// with transaction-local `set_config(…, true)`, so a pooled connection never carries a scope into
/// the next request. Row-level security does the rest.
public struct ScopedDatabase: Sendable {
    public let client: PostgresClient

    public init(client: PostgresClient) {
        self.client = client
    }

    /// Runs `body` as tenant `tenantID`: every tenant table shows only that tenant's rows.
    public func withTenant<Result: Sendable>(
        _ tenantID: UUID,
        logger: Logger,
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await self.scoped("app.tenant_id", tenantID, logger: logger, body)
    }

    /// Runs `body` on the operator path: every tenant's rows, and each change recorded in
    /// `operator_audit` under `operatorID` by trigger.
    public func withOperator<Result: Sendable>(
        _ operatorID: UUID,
        logger: Logger,
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        var logger = logger
        logger[metadataKey: "operator"] = .string(operatorID.uuidString.lowercased())
        return try await self.scoped("app.operator_id", operatorID, logger: logger, body)
    }

    /// Runs `body` in a signed-in admin's scope: an operator's (every tenant) or a tenant admin's
    /// own tenant.
    public func within<Result: Sendable>(
        _ principal: Principal,
        logger: Logger,
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        switch principal {
        case .platformOperator(let id): try await self.withOperator(id, logger: logger, body)
        case .tenantAdmin(_, let tenantID, _): try await self.withTenant(tenantID, logger: logger, body)
        }
    }

    /// One transaction whose first statement sets `setting` for that transaction only.
    private func scoped<Result: Sendable>(
        _ setting: String,
        _ id: UUID,
        logger: Logger,
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await Self.unwrapping {
            try await self.client.withOpenTransaction(logger: logger) { connection in
                try await connection.query(
                    "SELECT set_config(\(setting), \(id.uuidString.lowercased()), true)",
                    logger: logger
                )
                return try await body(connection)
            }
        }
    }

    /// Runs `body` with no scope at all: tenant tables read empty. For platform-wide reads (tiers).
    public func unscoped<Result: Sendable>(
        logger: Logger,
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await Self.unwrapping {
            try await self.client.withOpenTransaction(logger: logger) { connection in
                try await body(connection)
            }
        }
    }

    /// When the body failed and the rollback went through, callers see the body's own error
    /// (a `Problem`, a `PSQLError` with its SQLSTATE), not PostgresNIO's wrapper.
    private static func unwrapping<Result>(
        _ transaction: () async throws -> sending Result
    ) async throws -> sending Result {
        do {
            return try await transaction()
        } catch let error as PostgresTransactionError {
            if error.rollbackError == nil, error.beginError == nil, error.commitError == nil,
                let cause = error.closureError
            {
                throw cause
            }
            throw error
        }
    }
}
