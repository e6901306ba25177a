import FulcrumStore
import HTTPTypes
import FulcrumTestSupport
import Hummingbird
import HummingbirdTesting
import Testing

@testable import FulcrumServer

@Suite("Health probes")
struct HealthTests {
    @Test(arguments: StoreKind.available)
    func aliveAndReady(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            let health = try await client.request(.get, "/healthz")
            #expect(health.status == .ok && health["status"] as? String == "ok")
            let ready = try await client.request(.get, "/readyz")
            #expect(ready.status == .ok && ready["status"] as? String == "ready")
        }
    }

    /// The routes over a PostgreSQL store, without the start-up service (whose migration would refuse to start).
    func withRoutes(
        on url: DatabaseURL, storeTimeout: Duration = .seconds(5),
        _ body: @Sendable @escaping (any TestClientProtocol) async throws -> Void
    ) async throws {
        let logger = TestDatabases.logger
        try await withPostgresClient(url, logger: logger) { client in
            let store = PostgresStore(client: client, migrations: try Migration.bundled(), logger: logger)
            let parts = Services(
                stores: Stores(store), configuration: FulcrumConfiguration(), logger: logger, storeTimeout: storeTimeout)
            // As after a start-up that went through: what is tested is the store failing later.
            parts.startup.opened()
            let router = buildRouter(parts, configuration: FulcrumConfiguration())
            try await Application(router: router, logger: logger).test(.router, body)
        }
    }

    @Test(.enabled(if: TestDatabases.serverURL != nil, "needs PostgreSQL: DATABASE_URL, which scripts/test sets"))
    func notReadyWhileTheDatabaseIsUnreachable() async throws {
        try await withRoutes(on: try DatabaseURL("postgres://nobody@127.0.0.1:1/none?sslmode=disable")) { client in
            #expect(try await client.request(.get, "/healthz").status == .ok)
            let ready = try await client.request(.get, "/readyz")
            expectError(ready, .serviceUnavailable, "not_ready")
        }
    }

    @Test(.enabled(if: TestDatabases.serverURL != nil, "needs PostgreSQL: DATABASE_URL, which scripts/test sets"))
    func requestsGet503WhileTheDatabaseIsUnreachable() async throws {
        let url = try DatabaseURL("postgres://nobody@127.0.0.1:1/none?sslmode=disable")
        try await withRoutes(on: url, storeTimeout: .milliseconds(300)) { client in
            let started = ContinuousClock.now
            expectError(try await client.createUnit(), .serviceUnavailable, "store_unavailable")
            expectError(try await client.registerWorker("w0"), .serviceUnavailable, "store_unavailable")
            // 0.6 s on an idle machine; the bound says "the deadline, not the pool's minute", with room for a
            // loaded one.
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }

    @Test(.enabled(if: TestDatabases.serverURL != nil, "needs PostgreSQL: DATABASE_URL, which scripts/test sets"))
    func notReadyWhileTheSchemaIsBehind() async throws {
        try await withTestDatabase(migrated: false) { url in
            try await withRoutes(on: url) { client in
                let ready = try await client.request(.get, "/readyz")
                expectError(ready, .serviceUnavailable, "not_ready")
                #expect(ready.error?.message.contains("pending migrations") == true)
            }
        }
    }
}
