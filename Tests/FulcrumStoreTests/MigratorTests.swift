@testable import FulcrumStore
import FulcrumTestSupport
import Foundation
import PostgresNIO
import Testing

@Suite("Migrations on PostgreSQL", .enabled(if: TestDatabases.serverURL != nil, "needs PostgreSQL: DATABASE_URL, which scripts/test sets"))
struct MigratorTests {
    let logger = TestDatabases.logger

    @Test func freshDatabaseGetsEveryMigrationOnceAndIsThenReady() async throws {
        let migrations = try Migration.bundled()
        try await withTestDatabase(migrated: false) { url in
            try await withPostgresClient(url, logger: logger) { client in
                let store = PostgresStore(client: client, migrations: migrations, logger: logger)
                let before = await store.readiness()
                #expect(!before.ready)
                #expect(before.reason?.contains("pending migrations 1_registry") == true)

                let migrator = Migrator(client: client, migrations: migrations, logger: logger)
                #expect(try await migrator.migrate().map(\.version) == migrations.map(\.version))
                #expect(try await migrator.migrate().isEmpty)
                let status = try await migrator.status()
                #expect(status.applied == migrations.map(\.version) && status.pending.isEmpty)
                let checksums = try await client.query("SELECT checksum FROM schema_migrations ORDER BY version")
                    .collect().map { try $0.decode(String.self) }
                #expect(checksums == migrations.map(\.checksum))
                #expect(await store.readiness() == .ready)
            }
        }
    }

    @Test func concurrentMigratorsApplyEachMigrationExactlyOnce() async throws {
        let migrations = try Migration.bundled()
        try await withTestDatabase(migrated: false) { url in
            let applied = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await withPostgresClient(url, logger: logger) { client in
                            try await Migrator(client: client, migrations: migrations, logger: logger).migrate().count
                        }
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(applied == migrations.count)
            try await withPostgresClient(url, logger: logger) { client in
                let rows = try await client.query("SELECT count(*) FROM schema_migrations").collect()
                #expect(try rows.first?.decode(Int.self) == migrations.count)
            }
        }
    }

    @Test func anEditedAppliedMigrationStopsStartUpAndReadiness() async throws {
        let migrations = try Migration.bundled()
        try await withTestDatabase { url in
            try await withPostgresClient(url, logger: logger) { client in
                var edited = migrations
                edited[0].sql += "\n-- a harmless-looking edit\n"
                let migrator = Migrator(client: client, migrations: edited, logger: logger)
                await #expect(throws: MigrationError.checksumMismatch(
                    version: 1, name: "registry", recorded: migrations[0].checksum, current: edited[0].checksum)
                ) {
                    try await migrator.migrate()
                }
                let readiness = await PostgresStore(client: client, migrations: edited, logger: logger).readiness()
                #expect(readiness.reason?.contains("was changed after it was applied") == true)
            }
        }
    }

    @Test func aDatabaseFromANewerBuildKeepsAnOlderBuildServing() async throws {
        let migrations = try Migration.bundled()
        try await withTestDatabase { url in
            try await withPostgresClient(url, logger: logger) { client in
                try await client.query(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')")
                let migrator = Migrator(client: client, migrations: migrations, logger: logger)
                #expect(try await migrator.migrate().isEmpty)
                let status = try await migrator.status()
                #expect(status.newer == [999] && status.pending.isEmpty)
                #expect(status.applied == migrations.map(\.version))
                #expect(await PostgresStore(client: client, migrations: migrations, logger: logger).readiness() == .ready)
            }
        }
    }

    @Test func aMigratorWaitsForTheOneHoldingTheLock() async throws {
        let migrations = try Migration.bundled()
        try await withTestDatabase(migrated: false) { url in
            try await withPostgresClient(url, logger: logger) { client in
                try await client.withConnection { holder in
                    try await holder.query("SELECT pg_advisory_lock(\(Migrator.advisoryLockKey))", logger: logger)
                    let waiting = Task {
                        try await Migrator(client: client, migrations: migrations, logger: logger).migrate().count
                    }
                    // The other migrator has asked for the lock (its session's last query says so) and was refused.
                    let asked = try await waitUntil(within: .seconds(10)) {
                        let sessions = try await client.query(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_try_advisory_lock%'"
                        ).collect()
                        return try (sessions.first?.decode(Int.self) ?? 0) > 0
                    }
                    #expect(asked, "the waiting migrator never asked for the lock")
                    let applied = try await client.query("SELECT to_regclass('units') IS NULL").collect()
                    #expect(try applied.first?.decode(Bool.self) == true, "migrated while another held the lock")
                    try await holder.query("SELECT pg_advisory_unlock(\(Migrator.advisoryLockKey))", logger: logger)
                    #expect(try await waiting.value == migrations.count)
                }
            }
        }
    }

    @Test func aFailingMigrationLeavesNoTrace() async throws {
        let bundled = try Migration.bundled()
        let migrations =
            bundled + [
                Migration(
                    version: bundled.count + 1, name: "broken",
                    sql: "CREATE TABLE half_done (id int);\nSELECT no_such_column FROM half_done;")
            ]
        try await withTestDatabase { url in
            try await withPostgresClient(url, logger: logger) { client in
                await #expect(throws: MigrationError.self) {
                    try await Migrator(client: client, migrations: migrations, logger: logger).migrate()
                }
                let table = try await client.query("SELECT to_regclass('half_done') IS NULL").collect()
                #expect(try table.first?.decode(Bool.self) == true)
                let recorded = try await client.query("SELECT max(version) FROM schema_migrations").collect()
                #expect(try recorded.first?.decode(Int.self) == migrations.count - 1)
                // The advisory lock was released: another run gets through (and fails the same way).
                await #expect(throws: MigrationError.self) {
                    try await withDeadline(.seconds(10)) {
                        try await Migrator(client: client, migrations: migrations, logger: logger).migrate()
                    }
                }
            }
        }
    }

    @Test func anUnreachableDatabaseIsNotReadyWithinTheDeadline() async throws {
        let url = try DatabaseURL("postgres://nobody@127.0.0.1:1/none?sslmode=disable")
        try await withPostgresClient(url, logger: logger) { client in
            let store = PostgresStore(client: client, migrations: try Migration.bundled(), logger: logger)
            let started = ContinuousClock.now
            let readiness = await store.readiness()
            #expect(!readiness.ready)
            // Within the 2 s check, not the pool's minute; room for a loaded machine.
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }
}

@Suite("Migration files")
struct MigrationFileTests {
    @Test func bundledMigrationsAreNumberedFromOne() throws {
        let migrations = try Migration.bundled()
        #expect(!migrations.isEmpty)
        #expect(migrations.map(\.version) == Array(1...migrations.count))
        #expect(migrations.allSatisfy { $0.checksum.count == 64 })
    }

    @Test func gapsAndBadNamesAreRefused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "SELECT 1;".write(to: directory.appendingPathComponent("0001_first.sql"), atomically: true, encoding: .utf8)
        try "SELECT 3;".write(to: directory.appendingPathComponent("0003_third.sql"), atomically: true, encoding: .utf8)
        #expect(throws: MigrationError.notContiguous(expected: 2, found: "0003_third.sql")) {
            try Migration.load(from: directory)
        }
        try FileManager.default.removeItem(at: directory.appendingPathComponent("0003_third.sql"))
        try "SELECT 2;".write(to: directory.appendingPathComponent("2_second.sql"), atomically: true, encoding: .utf8)
        #expect(throws: MigrationError.self) { try Migration.load(from: directory) }
    }
}
