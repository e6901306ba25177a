import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// Applies Migrations/ to a PostgreSQL database: in order, each in its own transaction, recorded with its checksum
/// in `schema_migrations`. A session advisory lock makes concurrent migrators (two replicas starting at once, or
/// `fulcrum migrate` beside a running `serve`) take turns; the second finds nothing left to do.
public struct Migrator: Sendable {
    /// "FULCRUM\0" as a big-endian integer: one fixed key for every Fulcrum process sharing a database.
    static let advisoryLockKey: Int64 = 0x4655_4C43_5255_4D00

    public struct Status: Hashable, Sendable {
        public var applied: [Int]
        public var pending: [Migration]
        /// Applied by a newer Fulcrum. Migrations only add (expand, then contract in a later release), so an
        /// older build keeps serving during a rolling upgrade; these are reported, not refused.
        public var newer: [Int]
    }

    let client: PostgresClient
    let migrations: [Migration]
    let logger: Logger

    public init(client: PostgresClient, migrations: [Migration], logger: Logger) {
        self.client = client
        self.migrations = migrations
        self.logger = logger
    }

    /// Applies what is pending and returns it. Throws `MigrationError` on an edited applied migration.
    @discardableResult
    public func migrate() async throws -> [Migration] {
        try await client.withConnection { connection in
            try await lock(on: connection)
            do {
                let applied = try await apply(on: connection)
                try await connection.query("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: logger)
                return applied
            } catch {
                // The lock is per session; release it so the pooled connection does not keep it.
                _ = try? await connection.query(
                    "SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: logger)
                throw error
            }
        }
    }

    /// What is applied and what is pending, without changing anything.
    public func status() async throws -> Status {
        try await client.withConnection { connection in
            try check(recorded: try await recordedMigrations(on: connection))
        }
    }

    /// Takes the advisory lock, polling rather than blocking in PostgreSQL so that a process told to stop while
    /// another migrator holds the lock (a long migration, a stuck session) stops instead of waiting for SIGKILL.
    private func lock(on connection: PostgresConnection) async throws {
        var announced = false
        while true {
            let rows = try await connection.query(
                "SELECT pg_try_advisory_lock(\(Self.advisoryLockKey))", logger: logger
            ).collect()
            if try rows.first?.decode(Bool.self) == true { return }
            if !announced {
                logger.notice("another process is migrating this database; waiting for it")
                announced = true
            }
            if Task.isShuttingDownGracefully { throw CancellationError() }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    private func apply(on connection: PostgresConnection) async throws -> [Migration] {
        try await connection.query(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """, logger: logger)
        let status = try check(recorded: try await recordedMigrations(on: connection))
        if !status.newer.isEmpty {
            logger.warning(
                "the database has migrations from a newer Fulcrum; serving with the schema this build knows",
                metadata: ["migrations.newer": "\(status.newer)"])
        }
        let pending = status.pending
        for migration in pending {
            try await applyInTransaction(migration, on: connection)
            logger.notice(
                "applied migration",
                metadata: ["migration.version": "\(migration.version)", "migration.name": "\(migration.name)"])
        }
        return pending
    }

    private func applyInTransaction(_ migration: Migration, on connection: PostgresConnection) async throws {
        do {
            try await connection.withTransaction(logger: logger) { connection in
                for (index, statement) in SQLStatements.split(migration.sql).enumerated() {
                    do {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    } catch let error as PSQLError {
                        throw MigrationError.failed(
                            version: migration.version, name: migration.name, statement: index + 1,
                            reason: error.serverInfo?[.message] ?? String(reflecting: error))
                    }
                }
                try await connection.query(
                    """
                    INSERT INTO schema_migrations (version, name, checksum)
                    VALUES (\(migration.version), \(migration.name), \(migration.checksum))
                    """, logger: logger)
            }
        } catch {
            throw error.unwrappingTransaction
        }
    }

    private struct Recorded {
        var version: Int
        var name: String
        var checksum: String
    }

    private func recordedMigrations(on connection: PostgresConnection) async throws -> [Recorded] {
        let exists = try await connection.query(
            "SELECT to_regclass('schema_migrations') IS NOT NULL", logger: logger
        ).collect().first?.decode(Bool.self) ?? false
        guard exists else { return [] }
        var recorded: [Recorded] = []
        let rows = try await connection.query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version", logger: logger)
        for try await (version, name, checksum) in rows.decode((Int, String, String).self) {
            recorded.append(Recorded(version: version, name: name, checksum: checksum))
        }
        return recorded
    }

    /// Refuses edited applied migrations; sorts the rest into applied, pending and newer.
    private func check(recorded: [Recorded]) throws -> Status {
        let known = Dictionary(uniqueKeysWithValues: migrations.map { ($0.version, $0) })
        var newer: [Int] = []
        for entry in recorded {
            guard let migration = known[entry.version] else {
                newer.append(entry.version)
                continue
            }
            guard migration.checksum == entry.checksum else {
                throw MigrationError.checksumMismatch(
                    version: entry.version, name: migration.name, recorded: entry.checksum,
                    current: migration.checksum)
            }
        }
        let applied = Set(recorded.map(\.version))
        return Status(
            applied: recorded.map(\.version).filter { known[$0] != nil }.sorted(),
            pending: migrations.filter { !applied.contains($0.version) },
            newer: newer.sorted())
    }
}
