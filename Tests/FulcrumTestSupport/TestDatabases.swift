import Foundation
import FulcrumStore
import Logging
import PostgresNIO

/// Real PostgreSQL databases for tests. The schema is migrated once into a template database; every test gets a
/// fresh copy (`CREATE DATABASE … TEMPLATE …`), which is fast and keeps tests independent of each other.
///
/// The server comes from DATABASE_URL (`scripts/test` starts a throwaway one). Only local servers are used: a
/// test run must never create and drop databases on a shared or production server.
public actor TestDatabases {
    public static let shared = TestDatabases()

    public static let serverURL: DatabaseURL? = {
        guard let text = ProcessInfo.processInfo.environment["DATABASE_URL"], !text.isEmpty,
            let url = try? DatabaseURL(text)
        else { return nil }
        guard url.socketDirectory != nil || ["127.0.0.1", "localhost", "::1"].contains(url.host) else {
            return nil
        }
        return url
    }()

    /// `scripts/test` sets FULCRUM_REQUIRE_POSTGRES so that a missing server fails the run instead of skipping.
    public static let required = ProcessInfo.processInfo.environment["FULCRUM_REQUIRE_POSTGRES"] == "1"

    /// Quiet unless something is wrong: the pool logs every refused connection of the unreachable-server tests.
    public static let logger: Logger = {
        var logger = Logger(label: "fulcrum.tests")
        logger.logLevel = .warning
        return logger
    }()

    private var template: Task<String, any Error>?

    /// A new, migrated, empty database; dropped by `drop`.
    public func create(migrated: Bool = true) async throws -> DatabaseURL {
        guard let server = Self.serverURL else { throw TestDatabaseError.noServer }
        let name = "fulcrum_test_\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: ""))"
        let source = migrated ? "TEMPLATE \(try await templateName())" : ""
        try await Self.admin(server) { client in
            // Another session may still be leaving the template; PostgreSQL refuses to copy it until it has.
            var refusal: (any Error)?
            let created = try await waitUntil(within: .seconds(5), every: .milliseconds(100)) {
                do {
                    try await client.query("CREATE DATABASE \(unescaped: name) \(unescaped: source)")
                    return true
                } catch {
                    refusal = error
                    return false
                }
            }
            if !created, let refusal { throw refusal }
        }
        return server.with(database: name)
    }

    public func drop(_ url: DatabaseURL) async throws {
        guard let server = Self.serverURL else { return }
        try await Self.admin(server) { client in
            try await client.query("DROP DATABASE IF EXISTS \(unescaped: url.database) WITH (FORCE)")
        }
    }

    private func templateName() async throws -> String {
        if let template { return try await template.value }
        let task = Task { try await Self.makeTemplate() }
        template = task
        return try await task.value
    }

    /// One template per set of migrations, shared by concurrent test processes under an advisory lock.
    private static func makeTemplate() async throws -> String {
        guard let server = serverURL else { throw TestDatabaseError.noServer }
        let migrations = try Migration.bundled()
        let fingerprint = migrations.map(\.checksum).joined().prefix(12)
        let name = "fulcrum_template_\(fingerprint)"
        try await admin(server) { client in
            try await client.withConnection { connection in
                try await connection.query("SELECT pg_advisory_lock(4711)", logger: logger)
                let exists = try await connection.query(
                    "SELECT 1 FROM pg_database WHERE datname = \(name)", logger: logger
                ).collect().isEmpty == false
                if !exists {
                    try await connection.query("CREATE DATABASE \(unescaped: name)", logger: logger)
                }
                try await withPostgresClient(server.with(database: name), maxConnections: 1, logger: logger) {
                    try await Migrator(client: $0, migrations: migrations, logger: logger).migrate()
                }
                try await connection.query("SELECT pg_advisory_unlock(4711)", logger: logger)
            }
        }
        return name
    }

    private static func admin(_ server: DatabaseURL, _ body: @Sendable (PostgresClient) async throws -> Void)
        async throws
    {
        try await withPostgresClient(server, maxConnections: 1, logger: logger, body)
    }
}

public enum TestDatabaseError: Error, CustomStringConvertible {
    case noServer
    public var description: String {
        "no local PostgreSQL: set DATABASE_URL to a server on localhost, or run scripts/test which starts one"
    }
}

/// Runs `body` with a fresh migrated database and drops it afterwards, whether `body` failed or not.
public func withTestDatabase<Result: Sendable>(
    migrated: Bool = true, _ body: @Sendable (DatabaseURL) async throws -> Result
) async throws -> Result {
    let url = try await TestDatabases.shared.create(migrated: migrated)
    do {
        let result = try await body(url)
        try await TestDatabases.shared.drop(url)
        return result
    } catch {
        try? await TestDatabases.shared.drop(url)
        throw error
    }
}
