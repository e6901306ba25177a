import FulcrumCore
import FulcrumStore
import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle

/// Builds the whole service: the store (PostgreSQL, or memory in dev mode), the routes, and every long-running
/// part as a Service of one ServiceGroup. `fulcrum serve` and the tests both call this.
///
/// Shutdown runs in reverse: the HTTP server stops taking requests and finishes those in flight, then the
/// background services stop, then the PostgreSQL pool closes.
public func buildApplication(
    _ configuration: FulcrumConfiguration, logger baseLogger: Logger = Logger(label: "fulcrum")
) async throws -> some ApplicationProtocol {
    var logger = baseLogger
    logger.logLevel = configuration.logLevel
    let migrations = try Migration.bundled()

    let store: any Store
    var services: [any Service] = []
    var migrator: Migrator?
    if let database = configuration.database {
        var poolLogger = logger
        poolLogger[metadataKey: "component"] = "postgres"
        let client = PostgresClient(
            configuration: database.clientConfiguration(maxConnections: configuration.databaseMaxConnections),
            backgroundLogger: poolLogger)
        services.append(client)
        store = PostgresStore(client: client, migrations: migrations, logger: poolLogger)
        migrator = Migrator(client: client, migrations: migrations, logger: poolLogger)
        logger.info("state is stored in PostgreSQL", metadata: ["database": "\(database)"])
    } else {
        store = MemoryStore()
        logger.warning(
            """
            DEV MODE: no DATABASE_URL, so state lives in memory only and is LOST when this process exits. \
            Set DATABASE_URL (or --database-url) to a PostgreSQL database for anything but trying Fulcrum out.
            """)
    }

    let registry = RegistryService(store: store, logger: logger)
    let router = buildRouter(registry: registry, store: store, configuration: configuration, logger: logger)
    var app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "fulcrum"),
        services: services,
        logger: logger)
    if let migrator {
        let logger = logger
        app.beforeServerStarts {
            do {
                let applied = try await migrator.migrate()
                logger.info("schema is current", metadata: ["applied": "\(applied.count)", "known": "\(migrations.count)"])
            } catch {
                logger.critical("cannot start: database migration failed", metadata: ["error": "\(error)"])
                throw error
            }
        }
    }
    return app
}

func buildRouter(registry: RegistryService, store: any Store, configuration: FulcrumConfiguration, logger: Logger)
    -> Router<FulcrumRequestContext>
{
    let router = Router(context: FulcrumRequestContext.self)
    router.add(middleware: ErrorMiddleware())
    router.add(middleware: LogRequestsMiddleware(.debug))
    HealthController(store: store).addRoutes(to: router)
    let v1 = router.group("v1")
    UnitsController(registry: registry, maxBodyBytes: configuration.maxBodyBytes).addRoutes(to: v1.group("units"))
    WorkersController(registry: registry, maxBodyBytes: configuration.maxBodyBytes).addRoutes(to: v1.group("workers"))
    return router
}
