import FulcrumCore
import Foundation
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
///
/// `onListening` is given the port the server listens on, once it does (useful with port 0). `clock` is the time
/// every part reads and every loop sleeps on: tests pass a `ManualClock` and advance it.
public func buildApplication(
    _ configuration: FulcrumConfiguration, logger baseLogger: Logger = Logger(label: "fulcrum"),
    clock: any ServiceClock = RealClock(), onListening: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> some ApplicationProtocol {
    var logger = baseLogger
    logger.logLevel = configuration.logLevel
    let migrations = try Migration.bundled()

    let stores: Stores
    let leadership = Leadership(
        replica: configuration.replicaID, url: configuration.advertisedURL, alone: configuration.database == nil)
    var lifecycleServices: [any Service] = []
    var migrator: Migrator?
    var probe: @Sendable () async throws -> Void = {}
    if let database = configuration.database {
        var poolLogger = logger
        poolLogger[metadataKey: "component"] = "postgres"
        poolLogger.logLevel = postgresLogLevel(logger.logLevel)
        let client = PostgresClient(
            configuration: database.clientConfiguration(maxConnections: configuration.databaseMaxConnections),
            backgroundLogger: postgresPoolLogger(poolLogger))
        lifecycleServices.append(client)
        stores = Stores(PostgresStore(client: client, migrations: migrations, logger: poolLogger, fence: leadership.fence))
        migrator = Migrator(client: client, migrations: migrations, logger: poolLogger)
        probe = { [poolLogger] in try await database.probe(logger: poolLogger) }
        logger.info("state is stored in PostgreSQL", metadata: ["database": "\(database)"])
    } else {
        stores = Stores(MemoryStore())
        logger.warning(
            """
            DEV MODE: no DATABASE_URL, so state lives in memory only and is LOST when this process exits. \
            Set DATABASE_URL (or --database-url) to a PostgreSQL database for anything but trying Fulcrum out.
            """)
    }

    if let problem = configuration.accessProblem {
        logger.critical("cannot start: \(problem)")
        throw FulcrumConfiguration.Problems(messages: [problem])
    }
    if configuration.tokens.isEmpty {
        logger.warning(
            "NO ACCESS TOKENS: every caller is an admin. Allowed only for the in-memory dev store on a loopback address.")
    } else {
        logger.info(
            "access tokens loaded",
            metadata: [
                "admin": "\(configuration.tokens.count { $0.role == .admin })",
                "worker": "\(configuration.tokens.count { $0.role == .worker })",
                "gateway": "\(configuration.tokens.count { $0.role == .gateway })",
                "unscoped_worker": "\(configuration.tokens.count { $0.role == .worker && $0.scope == nil })",
                "unscoped_gateway": "\(configuration.tokens.count { $0.role == .gateway && $0.scope == nil })",
                "metrics": "\(configuration.metricsAccess.rawValue)",
            ])
    }
    let parts = Services(
        stores: stores, configuration: configuration, logger: logger, clock: clock, leadership: leadership)
    let startUp = StartupService(
        gate: parts.startup,
        probe: probe,
        start: { [migrator, loader = parts.loader, logger] in
            if let migrator {
                do {
                    let applied = try await migrator.migrate()
                    logger.info(
                        "schema is current", metadata: ["applied": "\(applied.count)", "known": "\(migrations.count)"])
                } catch let error where !error.isUnavailability {
                    logger.critical("cannot start: database migration failed", metadata: ["error": "\(error)"])
                    throw error
                }
            }
            // The loader reads everything before it applies anything: a retry after a failure must not apply twice.
            try await loader.load()
        },
        logger: logger)
    let router = buildRouter(parts, configuration: configuration)
    let app = Application(
        router: router,
        server: .http1(
            configuration: .init(
                additionalChannelHandlers: [MalformedRequestHandler()],
                idleTimeout: .milliseconds(Int64(configuration.idleTimeout.seconds * 1_000)))),
        configuration: .init(
            address: .hostname(configuration.host, port: configuration.port), serverName: "fulcrum",
            availableConnectionsDelegate: ConnectionCap(maximum: configuration.maxConnections, figures: parts.connections)),
        // Shutdown runs in reverse: the lease is handed over after the writer's last flush, under its epoch.
        services: lifecycleServices + [startUp]
            + (configuration.database == nil ? [] : [leaseService(parts, configuration: configuration, clock: clock, logger: logger)])
            + [parts.writer, parts.liveness, parts.rebalancer, parts.drains],
        onServerRunning: { [leadership] channel in
            let port = channel.localAddress?.port ?? configuration.port
            if configuration.port == 0, configuration.advertiseURL == nil {
                var listening = configuration
                listening.port = port
                leadership.advertise(listening.advertisedURL)
            }
            await onListening(port)
        },
        logger: logger)
    return app
}

/// With a database, replicas share it and one leads: this holds or waits for the lease.
func leaseService(_ parts: Services, configuration: FulcrumConfiguration, clock: any ServiceClock, logger: Logger)
    -> LeaseService
{
    var logger = logger
    logger[metadataKey: "component"] = "lease"
    return LeaseService(
        store: parts.stores.leases, leadership: parts.leadership, startup: parts.startup,
        settings: LeaseService.Settings(configuration),
        takeOver: { [loader = parts.loader] in try await loader.load() },
        steppedDown: { [hub = parts.hub] in hub.releaseAllPolls() },
        clock: clock, logger: logger)
}

/// The parts of the control plane, wired once: what the routes call and the background services they feed.
struct Services: Sendable {
    let stores: Stores
    let loader: StateLoader
    let fleet: Fleet
    let hub: PlacementHub
    let registry: RegistryService
    let writer: TelemetryWriter
    let telemetry: TelemetryService
    let placements: PlacementService
    let liveness: LivenessService
    let estimator: ExpertLoadEstimator
    let rebalancer: RebalanceService
    let assignments: AssignmentService
    let controls: UnitControlsBook
    let drains: DrainService
    let operations: OperationsService
    let ledger: RequestLedger
    let events: EventCounters
    let connections = ConnectionFigures()
    let startup = StartupGate()
    let startedAt = Date()
    let leadership: Leadership
    let deadline: StoreDeadline

    init(
        stores: Stores, configuration: FulcrumConfiguration, logger: Logger, storeTimeout: Duration = .seconds(5),
        clock: any ServiceClock = RealClock(), leadership: Leadership = .alone()
    ) {
        self.stores = stores
        self.leadership = leadership
        deadline = StoreDeadline(limit: storeTimeout)
        fleet = Fleet(clock: clock)
        hub = PlacementHub()
        events = EventCounters()
        controls = UnitControlsBook(
            defaults: EffectivePolicy(
                rebalanceIntervalSeconds: configuration.rebalanceInterval.seconds,
                minGain: configuration.rebalanceMinGain, maxMoves: configuration.rebalanceMaxMoves,
                stalePolicy: configuration.stalenessPolicy, windowSeconds: configuration.expertLoadWindow.seconds))
        var writerSettings = TelemetryWriter.Settings()
        writerSettings.capacity = configuration.telemetryBuffer
        writerSettings.retention = configuration.telemetryRetention
        estimator = ExpertLoadEstimator(retention: configuration.expertLoadWindow, clock: clock)
        writer = TelemetryWriter(store: stores.history, settings: writerSettings, windows: estimator, logger: logger, clock: clock)
        registry = RegistryService(
            store: stores.registry, deadline: deadline, fleet: fleet, hub: hub, estimator: estimator,
            controls: controls, clock: clock, logger: logger)
        ledger = RequestLedger(writer: writer, store: stores.ledger, deadline: deadline)
        var assignmentSettings = AssignmentService.Settings()
        assignmentSettings.staleAfter = configuration.telemetryStaleAfter
        assignmentSettings.policy = configuration.stalenessPolicy
        assignments = AssignmentService(
            fleet: fleet, writer: writer, settings: assignmentSettings, controls: controls, events: events, clock: clock)
        loader = StateLoader(
            stores: stores, fleet: fleet, hub: hub, estimator: estimator, controls: controls, assignments: assignments,
            clock: clock, logger: logger)
        telemetry = TelemetryService(
            fleet: fleet, writer: writer, hub: hub, estimator: estimator, assignments: assignments,
            sampleInterval: configuration.telemetrySampleInterval, events: events)
        placements = PlacementService(
            fleet: fleet, hub: hub, writer: writer, registry: registry, store: stores.placements, deadline: deadline,
            logger: logger, events: events, controls: controls)
        var rebalance = RebalanceService.Settings()
        rebalance.interval = configuration.rebalanceInterval
        rebalance.minGain = configuration.rebalanceMinGain
        rebalance.maxMoves = configuration.rebalanceMaxMoves
        rebalance.window = configuration.expertLoadWindow
        rebalancer = RebalanceService(
            settings: rebalance, fleet: fleet, hub: hub, estimator: estimator, placements: placements,
            controls: controls, events: events, logger: logger, clock: clock, leadership: leadership)
        drains = DrainService(fleet: fleet, store: stores.registry, logger: logger, clock: clock, leadership: leadership)
        operations = OperationsService(
            registry: registry, store: stores.operations, deadline: deadline, fleet: fleet, book: controls, drains: drains, placements: placements, hub: hub,
            staleAfter: configuration.telemetryStaleAfter, maxWindow: configuration.expertLoadWindow, logger: logger)
        liveness = LivenessService(
            fleet: fleet, store: stores.registry, timeout: configuration.workerTimeout,
            interval: min(.milliseconds(500), configuration.workerTimeout / 4), logger: logger, clock: clock,
            leadership: leadership)
    }
}

func buildRouter(_ services: Services, configuration: FulcrumConfiguration) -> Router<FulcrumRequestContext> {
    let router = Router(context: FulcrumRequestContext.self)
    router.add(middleware: ErrorMiddleware(leadership: services.leadership))
    router.add(middleware: RefuseNULMiddleware())
    router.add(middleware: LogRequestsMiddleware(.debug))
    HealthController(store: services.stores.health, startup: services.startup, leadership: services.leadership)
        .addRoutes(to: router)
    OpenAPIController().addRoutes(to: router)
    let authentication = AuthenticationMiddleware(tokens: TokenBook(configuration.tokens))
    let metrics = router.group()
    if configuration.metricsAccess == .token {
        metrics.add(middleware: authentication).add(middleware: RequireRole(.worker, .gateway))
    }
    MetricsController(services: services, staleAfter: configuration.telemetryStaleAfter).addRoutes(to: metrics)

    // Every /v1 route needs a token; each group lets through its role (and admins).
    // Any replica says who leads, to any role: a standby is how a client finds the leader.
    ClusterController(
        leadership: services.leadership, store: services.stores.leases, deadline: services.deadline,
        replicaLive: LeaseService.Settings(configuration).replicaLive
    ).addRoutes(to: router.group("v1/cluster").add(middleware: authentication).add(middleware: RequireRole(.worker, .gateway)))
    let v1 = router.group("v1").add(middleware: authentication)
        .add(middleware: RequireStarted(gate: services.startup, leadership: services.leadership))
    let admin = v1.group().add(middleware: RequireRole())
    let worker = v1.group().add(middleware: RequireRole(.worker))
    let gateway = v1.group().add(middleware: RequireRole(.gateway))
    let limit = configuration.maxBodyBytes
    let scopes = ScopeGuard(fleet: services.fleet, events: services.events)

    UnitsController(registry: services.registry, maxBodyBytes: limit).addRoutes(to: admin.group("units"))
    PlacementsController(
        placements: services.placements, rebalancer: services.rebalancer, registry: services.registry,
        estimator: services.estimator, controls: services.controls, staleAfter: configuration.telemetryStaleAfter,
        maxBodyBytes: limit
    ).addRoutes(to: admin.group("units"))
    let operations = OperationsController(operations: services.operations, maxBodyBytes: limit)
    operations.addUnitRoutes(to: admin.group("units"))
    operations.addWorkerRoutes(to: admin.group("workers"))
    operations.addAuditRoutes(to: admin)
    let workers = WorkersController(
        registry: services.registry, fleet: services.fleet, drains: services.drains,
        staleAfter: configuration.telemetryStaleAfter, scopes: scopes, maxBodyBytes: limit)
    workers.addAdminRoutes(to: admin.group("workers"))
    workers.addWorkerRoutes(to: worker.group("workers"))
    WorkerProtocolController(
        telemetry: services.telemetry, placements: services.placements, fleet: services.fleet, scopes: scopes,
        maxBodyBytes: limit
    ).addRoutes(to: worker.group("workers"))
    AssignmentsController(
        assignments: services.assignments, ledger: services.ledger, scopes: scopes, maxBodyBytes: limit
    ).addRoutes(to: gateway)
    return router
}
