import FulcrumCore
import FulcrumStore
import Foundation
import Logging

/// The registry of units and workers: validates what operators and workers send, writes to the store, then to
/// the in-memory fleet that every read and hot path uses.
public struct RegistryService: Sendable {
    public let store: any Store
    let fleet: Fleet
    let hub: PlacementHub
    let writer: TelemetryWriter
    let estimator: ExpertLoadEstimator
    let controls: UnitControlsBook
    let now: @Sendable () -> Date
    let logger: Logger
    /// How long a request waits for the store. PostgresNIO's pool queues requests while it cannot connect (for up
    /// to a minute), so without a bound a database outage would hang every caller instead of answering 503.
    let storeTimeout: Duration

    public init(
        store: any Store, fleet: Fleet, hub: PlacementHub, writer: TelemetryWriter, estimator: ExpertLoadEstimator,
        controls: UnitControlsBook, logger: Logger,
        storeTimeout: Duration = .seconds(5),
        now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.store = store
        self.fleet = fleet
        self.hub = hub
        self.writer = writer
        self.estimator = estimator
        self.controls = controls
        self.logger = logger
        self.storeTimeout = storeTimeout
        self.now = now
    }

    /// Runs a store call within `storeTimeout`. A write that times out may still land; every write here is safe
    /// to retry (registration is idempotent, a repeated create answers 409).
    func bounded<Result: Sendable>(_ call: @escaping @Sendable () async throws -> Result) async throws -> Result {
        do {
            return try await withDeadline(storeTimeout, call)
        } catch is DeadlineExceeded {
            throw StoreUnavailable(reason: "no answer within \(storeTimeout)")
        }
    }

    /// Fills the fleet, the placement hub and the expert-load windows from the store, at start-up. Everything is
    /// read before anything is applied: start-up retries after a database failure, and a half-applied load would
    /// count restored windows twice.
    public func loadFromStore() async throws {
        let units = try await store.units()
        let workers = try await store.workers(unit: nil, state: nil)
        let acks = try await store.latestAcks()
        let placementsNow = try await store.latestPlacements()
        // The stored expert-load windows of the last retention, with the tables they were counted under.
        var restoring: [(unit: DeploymentUnit, windows: [ExpertLoadWindow], placements: [Int: Placement])] = []
        let since = now().addingTimeInterval(-estimator.retention.seconds)
        for unit in units {
            let windows = try await store.expertLoadWindows(unit: unit.id, since: since)
            guard !windows.isEmpty else { continue }
            var placements: [Int: Placement] = [:]
            for version in Set(windows.map(\.placementVersion)) {
                if version == 1 {
                    placements[1] = Placement.initial(for: unit, at: unit.createdAt)
                } else if let record = try await store.placement(unit: unit.id, version: version) {
                    placements[version] = record.placement
                }
            }
            restoring.append((unit, windows, placements))
        }
        fleet.load(units: units, workers: workers, acks: acks)
        hub.load(placementsNow)
        for (unit, windows, placements) in restoring {
            estimator.restore(windows, unit: unit, placements: placements, now: now())
        }
        let restored = restoring.reduce(0) { $0 + $1.windows.count }
        logger.info(
            "registry loaded; every worker is of unknown age until it reports",
            metadata: ["units": "\(units.count)", "workers": "\(workers.count)", "expert_load_windows": "\(restored)"])
    }

    public struct UnitDraft: Codable, Sendable {
        public var id: String
        public var role: Role
        public var nodes: Int
        public var gpusPerNode: Int
        public var model: ModelShape
        public var redundantExperts: Int
    }

    public func createUnit(_ draft: UnitDraft) async throws -> DeploymentUnit {
        let unit = DeploymentUnit(
            id: draft.id, role: draft.role, nodes: draft.nodes, gpusPerNode: draft.gpusPerNode, model: draft.model,
            redundantExperts: draft.redundantExperts, createdAt: now())
        try unit.validate()
        try await bounded { [store] in try await store.createUnit(unit) }
        fleet.put(unit: unit)
        logger.notice(
            "unit created",
            metadata: ["unit": "\(unit.id)", "role": "\(unit.role)", "gpus": "\(unit.gpus)", "slotsPerGpu": "\(unit.slotsPerGpu)"])
        return unit
    }

    public func units() async throws -> [DeploymentUnit] {
        fleet.units()
    }

    public func unit(_ id: String) async throws -> DeploymentUnit {
        try Identifier.validate(id, field: "unit")
        guard let unit = fleet.unit(id) else {
            throw RegistryError.unitNotFound(id)
        }
        return unit
    }

    public func deleteUnit(_ id: String) async throws {
        try Identifier.validate(id, field: "unit")
        try await bounded { [store] in try await store.deleteUnit(id) }
        fleet.remove(unit: id)
        hub.forget(unit: id)
        estimator.forget(unit: id)
        controls.forget(unit: id)
        logger.notice("unit deleted", metadata: ["unit": "\(id)"])
    }

    public func register(_ registration: WorkerRegistration) async throws -> RegistrationOutcome {
        try registration.validate()
        let at = now()
        let outcome = try await bounded { [store] in try await store.registerWorker(registration, at: at) }
        fleet.registered(outcome.worker)
        if let change = outcome.change {
            // A first registration is routine (a cluster coming up registers hundreds of workers); a dead worker's
            // return is for operators to see.
            logger.log(
                level: change.from == nil ? .debug : .notice,
                "worker state changed",
                metadata: [
                    "worker": "\(change.worker)", "unit": "\(change.unit)", "from": "\(change.from?.rawValue ?? "none")",
                    "to": "\(change.to)", "reason": "\(change.reason)",
                ])
        }
        return outcome
    }

    public func workers(unit: String?, state: WorkerState?) async throws -> [Worker] {
        if let unit { _ = try await self.unit(unit) }
        return fleet.workers(unit: unit, state: state)
    }

    public func worker(_ id: String) async throws -> Worker {
        try Identifier.validate(id, field: "worker")
        guard let worker = fleet.member(id)?.member.worker else {
            throw RegistryError.workerNotFound(id)
        }
        return worker
    }

    public func workerHistory(_ id: String) async throws -> [WorkerStateChange] {
        try Identifier.validate(id, field: "worker")
        return try await bounded { [store] in try await store.workerHistory(id) }
    }
}
