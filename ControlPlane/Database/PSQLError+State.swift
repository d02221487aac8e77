import PostgresNIO

extension PSQLError {
    /// The server's SQLSTATE, nil when the error did not come from the server.
    var sqlState: String? { self.serverInfo?[.sqlState] }

    /// The server refused the data itself (SQLSTATE classes 22, data exception, and 23,
    /// integrity constraint violation): sending the same again fails again.
    var isDataRefusal: Bool {
        guard let state = self.sqlState else { return false }
        return state.hasPrefix("22") || state.hasPrefix("23")
    }

    /// A conflict between concurrent transactions (deadlock, serialization failure): the same
    /// statement may succeed when run again.
    var isTransientConflict: Bool {
        ["40P01", "40001"].contains(self.sqlState ?? "")
    }
}
