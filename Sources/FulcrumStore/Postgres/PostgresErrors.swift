import FulcrumCore
import PostgresNIO

/// An error the caller's own code threw inside a transaction (a change it refused), carried out unclassified.
struct CallerError: Error {
    let underlying: any Error
}

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

    /// The database could not be reached or refused to serve (connection failures, a tripped pool, SQLSTATE
    /// classes 08, 53 and 57). Refusals of the store's own rules and SQL errors are not unavailability.
    public var isUnavailability: Bool {
        switch unwrappingTransaction {
        case is RegistryError, is AdminError, is StoreCorruption, is MigrationError, is CancellationError,
            is DecodingError, is PostgresDecodingError, is CallerError, is NotLeader, is ReplicaIDInUse, is LeaseMissing:
            // Rows that do not decode are corrupt, not a database away: retrying cannot help.
            return false
        case let psql as PSQLError:
            guard psql.code == .server else { return true }
            let state = psql.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("08") || state.hasPrefix("53") || state.hasPrefix("57")
        default:
            // The pool's own errors (ConnectionPoolError: circuit breaker tripped, pool shut down).
            return true
        }
    }

    /// One line for operators: the server's message when there is one. PSQLError's own description hides
    /// everything on purpose, so a readiness reason would otherwise say nothing.
    public var postgresSummary: String {
        let error = unwrappingTransaction
        guard let psql = error as? PSQLError else { return "\(error)" }
        if let message = psql.serverInfo?[.message] { return message }
        if let underlying = psql.underlying { return "\(psql.code): \(underlying)" }
        return "\(psql.code)"
    }
}
