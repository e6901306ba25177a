import Logging
import PostgresNIO

/// Runs `body` with a running connection pool and closes the pool afterwards: for one-shot commands
/// (`fulcrum migrate`) and tests, where no ServiceGroup owns the pool.
@discardableResult
public func withPostgresClient<Result: Sendable>(
    _ url: DatabaseURL, maxConnections: Int = 4, logger: Logger,
    _ body: @Sendable (PostgresClient) async throws -> Result
) async throws -> Result {
    let client = PostgresClient(configuration: url.clientConfiguration(maxConnections: maxConnections), backgroundLogger: logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await client.run() }
        defer { group.cancelAll() }
        return try await body(client)
    }
}
