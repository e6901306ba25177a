import FulcrumStore
import FulcrumTestSupport
import Logging
import PostgresNIO
import Synchronization
import Testing

/// No log level may carry authentication material: at trace PostgresNIO logs every wire-protocol message, the SCRAM
/// exchange included, so Fulcrum never lets it log below debug.
@Suite("PostgreSQL logging")
struct PostgresLoggingTests {
    /// Keeps every record it is handed, whatever its level.
    final class Records: Sendable {
        let lines = Mutex<[(level: Logger.Level, message: String)]>([])

        func handler(_ label: String) -> any LogHandler { Handler(records: self) }

        struct Handler: LogHandler {
            let records: Records
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .trace

            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }

            func log(event: LogEvent) {
                records.lines.withLock { $0.append((event.level, "\(event.message) \(event.metadata ?? [:])")) }
            }
        }
    }

    @Test func theLevelPostgresNIOGetsIsNeverTrace() {
        #expect(postgresLogLevel(.trace) == .debug)
        #expect(postgresLogLevel(.debug) == .debug)
        #expect(postgresLogLevel(.warning) == .warning)
        var logger = Logger(label: "t")
        logger.logLevel = .trace
        #expect(postgresPoolLogger(logger).logLevel == .debug)
    }

    @Test(.enabled(if: TestDatabases.serverURL != nil, "needs PostgreSQL: DATABASE_URL, which scripts/test sets"))
    func aConnectionAtTraceLogsNoWireMessages() async throws {
        let records = Records()
        var traced = Logger(label: "fulcrum.tests.postgres", factory: records.handler)
        traced.logLevel = .trace
        let logger = traced
        try await withTestDatabase { url in
            try await withPostgresClient(url, maxConnections: 1, logger: logger) { client in
                try await client.query("SELECT 1", logger: postgresPoolLogger(logger))
            }
        }
        let lines = records.lines.withLock { $0 }
        #expect(!lines.contains { $0.level == .trace }, "\(lines.filter { $0.level == .trace }.prefix(3))")
        #expect(!lines.contains { $0.message.contains("Backend message") || $0.message.lowercased().contains("sasl") })
    }
}
