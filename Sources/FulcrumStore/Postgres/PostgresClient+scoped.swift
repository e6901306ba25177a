import Logging
import PostgresNIO

/// Runs `body` with a running connection pool and closes the pool afterwards: for one-shot commands
/// (`fulcrum migrate`) and tests, where no ServiceGroup owns the pool.
@discardableResult
public func withPostgresClient<Result: Sendable>(
    _ url: DatabaseURL, maxConnections: Int = 4, logger: Logger,
    _ body: @Sendable (PostgresClient) async throws -> Result
) async throws -> Result {
    let client = PostgresClient(
        configuration: url.clientConfiguration(maxConnections: maxConnections), backgroundLogger: postgresPoolLogger(logger))
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await client.run() }
        defer { group.cancelAll() }
        return try await body(client)
    }
}

/// The logger a `PostgresClient` gets as its background logger. PostgresNIO warns when a connection is leased before
/// `run()` has flipped its running flag; a pool whose `run()` is started in the same task group or ServiceGroup as
/// its first query (every pool here) races that flag harmlessly, and the warning would fill logs and test output. It
/// is logged at debug instead (still there for a pool that never runs, which hangs); everything else passes through.
/// Never below debug (`postgresLogLevel`).
public func postgresPoolLogger(_ logger: Logger) -> Logger {
    var base = logger
    base.logLevel = postgresLogLevel(logger.logLevel)
    var pool = Logger(label: logger.label) { _ in RunNotCalledDemotion(base: base) }
    pool.logLevel = base.logLevel
    return pool
}

/// The level PostgresNIO may log at: the one asked for, but never trace. At trace it logs every message of the wire
/// protocol, the SCRAM exchange included (salt, iteration count, client proof: enough to test password guesses
/// offline), and no log level may carry authentication material.
public func postgresLogLevel(_ level: Logger.Level) -> Logger.Level {
    max(level, .debug)
}

struct RunNotCalledDemotion: LogHandler {
    var base: Logger

    var logLevel: Logger.Level {
        get { base.logLevel }
        set { base.logLevel = newValue }
    }

    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
        function: String, line: UInt
    ) {
        let raced = level == .warning && message.description.contains("PostgresClient.run()` hasn't been called yet")
        base.log(
            level: raced ? .debug : level, message, metadata: self.metadata.merging(metadata ?? [:]) { $1 },
            source: source, file: file, function: function, line: line)
    }
}
