import Logging
import PostgresNIO

/// PostgresNIO 1.33.2 can lease a connection that has just closed (the pool learns of the close a
/// moment after the channel does), and a statement written to a closed channel waits forever:
/// the write fails with no one told, and the wait ignores cancellation. After PostgreSQL restarts
/// or a network cut, a request, the health check or a background job would then hang for good,
/// holding its lease. So the control plane leases only through these, which check the connection
/// is still open before the first statement and lease again when it is not.
///
/// What is left is a close in the microseconds between that check and the write; the
/// availability probe abandons an attempt that never ends (`DatabaseProbe`).
extension PostgresClient {
    /// Leases an open connection for `body`; after `attempts` leases that all came back closed,
    /// fails with `DatabaseConnectionClosed` (answered as 503 `database-unavailable`).
    func withOpenConnection<Result>(
        attempts: Int = 3,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (PostgresConnection) async throws -> sending Result
    ) async throws -> sending Result {
        for attempt in 1...max(1, attempts) {
            let outcome: Result? = try await self.withConnection { connection -> sending Result? in
                guard !connection.isClosed else { return nil }
                return try await body(connection)
            }
            if let outcome { return outcome }
            // The pool hears of the close shortly: give it that moment before leasing again.
            if attempt < attempts { try await Task.sleep(for: .milliseconds(10 * attempt)) }
        }
        throw DatabaseConnectionClosed()
    }

    /// `query` on an open connection (`withOpenConnection`), its rows read in full before the
    /// lease ends: for the statements run outside a transaction, whose answers are a few rows.
    @discardableResult
    func queryRows(
        _ query: PostgresQuery, logger: Logger, file: String = #fileID, line: Int = #line
    ) async throws -> FetchedRows {
        try await self.withOpenConnection { connection in
            FetchedRows(try await connection.query(query, logger: logger, file: file, line: line).collect())
        }
    }

    /// `withTransaction` on an open connection (`withOpenConnection`).
    func withOpenTransaction<Result>(
        logger: Logger,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (PostgresConnection) async throws -> sending Result
    ) async throws -> sending Result {
        try await self.withOpenConnection { connection in
            try await connection.withTransaction(logger: logger, body)
        }
    }
}

/// Every connection the pool offered had closed: PostgreSQL went away or is restarting.
struct DatabaseConnectionClosed: Error, CustomStringConvertible {
    var description: String { "the database connections closed (PostgreSQL restarting or out of reach)" }
}

/// Rows read in full (`queryRows`), decoded as `PostgresRowSequence` decodes them.
struct FetchedRows: Sendable {
    let rows: [PostgresRow]

    init(_ rows: [PostgresRow]) { self.rows = rows }

    func decode<each Column: PostgresDecodable>(
        _ columns: (repeat each Column).Type, file: String = #fileID, line: Int = #line
    ) -> Decoded<(repeat each Column)> {
        Decoded(rows: self.rows) { row in try row.decode(columns, file: file, line: line) }
    }

    /// The rows decoded one at a time, as an asynchronous sequence (like `PostgresRowSequence`'s).
    struct Decoded<Element>: AsyncSequence {
        let rows: [PostgresRow]
        let decode: (PostgresRow) throws -> Element

        func makeAsyncIterator() -> Iterator { Iterator(rows: self.rows.makeIterator(), decode: self.decode) }

        struct Iterator: AsyncIteratorProtocol {
            var rows: IndexingIterator<[PostgresRow]>
            let decode: (PostgresRow) throws -> Element

            mutating func next() async throws -> Element? {
                guard let row = self.rows.next() else { return nil }
                return try self.decode(row)
            }
        }
    }
}
