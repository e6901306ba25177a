import FulcrumCore
import Foundation
import Logging
import PostgresNIO

/// The durable store: PostgreSQL through a PostgresNIO connection pool. The pool must be running (it is a Service
/// in the application's ServiceGroup) before any call. Its concerns' conformances live beside their protocols.
public struct PostgresStore: StoreHealth {
    let client: PostgresClient
    let migrations: [Migration]
    let logger: Logger
    /// With replicas: every write transaction first checks that this process still holds the lease of this epoch.
    let fence: Fence?

    public init(client: PostgresClient, migrations: [Migration], logger: Logger, fence: Fence? = nil) {
        self.client = client
        self.migrations = migrations
        self.logger = logger
        self.fence = fence
    }

    public func readiness() async -> Readiness {
        do {
            let status = try await withDeadline(.seconds(2)) {
                try await Migrator(client: client, migrations: migrations, logger: logger).status()
            }
            guard status.pending.isEmpty else {
                let versions = status.pending.map { "\($0.version)_\($0.name)" }.joined(separator: ", ")
                return .notReady("schema is not current: pending migrations \(versions)")
            }
            return .ready
        } catch is DeadlineExceeded {
            return .notReady("database did not answer within 2 s")
        } catch {
            return .notReady("database check failed: \(error.postgresSummary)")
        }
    }

    /// Runs `body` in a transaction, fenced: refused with `NotLeader` when this process no longer holds the lease it
    /// writes under. Concurrent writers can race past each other's reads (two first
    /// registrations of one worker or one GPU); the unique constraints stop the loser, and one more pass sees the
    /// winner's row and answers as a re-registration or a conflict.
    func transaction<Result: Sendable>(
        _ body: (PostgresConnection) async throws -> sending Result
    ) async throws -> Result {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await guarded {
                    try await client.withTransaction(logger: logger) { connection in
                        if let fence { try await checkFence(fence, on: connection) }
                        return try await body(connection)
                    }
                }
            } catch where error.isUniqueViolation && attempt < 3 {
                continue
            }
        }
    }

    /// Unwraps transaction errors and reports a database that cannot be reached as `StoreUnavailable`, so the
    /// API answers 503 (try again) rather than 500 (a bug).
    func guarded<Result: Sendable>(_ body: () async throws -> sending Result) async throws -> Result {
        do {
            return try await body()
        } catch {
            let error = error.unwrappingTransaction
            if error.isUnavailability { throw StoreUnavailable(reason: error.postgresSummary) }
            throw error
        }
    }
}

/// A row holds a value this build cannot read: the database was written by something else.
public enum StoreCorruption: Error, Hashable, Sendable {
    case unknownValue(column: String, String)
}
