import PostgresNIO

extension Error {
    /// `withTransaction` wraps what its closure threw; callers want the original (a `RegistryError`, say).
    var unwrappingTransaction: any Error {
        if let wrapped = self as? PostgresTransactionError {
            return wrapped.closureError ?? wrapped.commitError ?? wrapped.beginError ?? self
        }
        return self
    }

    /// SQLSTATE 23505: a unique constraint refused the write (a concurrent writer got there first).
    var isUniqueViolation: Bool {
        (unwrappingTransaction as? PSQLError)?.serverInfo?[.sqlState] == PostgresError.Code.uniqueViolation.raw
    }

    /// One line for operators: the server's message when there is one. PSQLError's own description hides
    /// everything on purpose, so a readiness reason would otherwise say nothing.
    var postgresSummary: String {
        let error = unwrappingTransaction
        guard let psql = error as? PSQLError else { return "\(error)" }
        if let message = psql.serverInfo?[.message] { return message }
        if let underlying = psql.underlying { return "\(psql.code): \(underlying)" }
        return "\(psql.code)"
    }
}
