import FulcrumCore
import FulcrumStore
import Foundation
import Logging

/// The registry of units and workers: validates what operators and workers send, writes to the store, then to
/// the in-memory fleet that every read and hot path uses.
public struct RegistryService: Sendable {
    let store: any RegistryStore
    let deadline: StoreDeadline
    let fleet: Fleet
    let hub: PlacementHub
    let estimator: ExpertLoadEstimator
    let controls: UnitControlsBook
    let clock: any ServiceClock
    let logger: Logger

    init(
        store: any RegistryStore, deadline: StoreDeadline, fleet: Fleet, hub: PlacementHub,
        estimator: ExpertLoadEstimator, controls: UnitControlsBook, clock: any ServiceClock, logger: Logger
    ) {
        self.store = store
        self.deadline = deadline
        self.fleet = fleet
        self.hub = hub
        self.estimator = estimator
        self.controls = controls
        self.clock = clock
        self.logger = logger
    }

    public struct UnitDraft: Sendable {
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
            redundantExperts: draft.redundantExperts, createdAt: clock.date)
        try unit.validate()
        try await deadline.run { [store] in try await store.createUnit(unit) }
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
        try await deadline.run { [store] in try await store.deleteUnit(id) }
        fleet.remove(unit: id)
        hub.forget(unit: id)
        estimator.forget(unit: id)
        controls.forget(unit: id)
        logger.notice("unit deleted", metadata: ["unit": "\(id)"])
    }

    public func register(_ registration: WorkerRegistration) async throws -> RegistrationOutcome {
        try registration.validate()
        let at = clock.date
        let outcome = try await deadline.run { [store] in try await store.registerWorker(registration, at: at) }
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
        return try await deadline.run { [store] in try await store.workerHistory(id) }
    }

    /// How many state changes are recorded for the worker: its version for `If-Match`.
    func workerRevision(_ id: String) async throws -> Int {
        try await deadline.run { [store] in try await store.workerRevision(id) }
    }
}
