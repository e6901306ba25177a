import FulcrumCore
import Foundation
import Synchronization

extension MemoryStore: RegistryStore {
    public func createUnit(_ unit: DeploymentUnit) async throws {
        try state.withLock { (state: inout State) throws(RegistryError) in
            guard state.units[unit.id] == nil else { throw .unitExists(unit.id) }
            state.units[unit.id] = unit
        }
    }

    public func units() async throws -> [DeploymentUnit] {
        state.withLock { $0.units.values.sorted { $0.id < $1.id } }
    }

    public func unit(_ id: String) async throws -> DeploymentUnit? {
        state.withLock { $0.units[id] }
    }

    public func deleteUnit(_ id: String) async throws {
        try state.withLock { (state: inout State) throws(RegistryError) in
            guard state.units[id] != nil else { throw .unitNotFound(id) }
            let members = state.workers.values.filter { $0.unit == id }
            try RegistryRules.checkDeletable(unit: id, liveWorkers: members.count { $0.state.isLive })
            for worker in members { state.workers[worker.id] = nil }
            state.units[id] = nil
            state.placements[id] = nil
            state.windows.removeAll { $0.unit == id }
            state.controls[id] = nil
        }
    }

    public func registerWorker(_ registration: WorkerRegistration, at now: Date) async throws -> RegistrationOutcome {
        try state.withLock { (state: inout State) throws(RegistryError) in
            guard let unit = state.units[registration.unit] else { throw .unitNotFound(registration.unit) }
            let outcome = try RegistryRules.register(
                registration, unit: unit, existing: state.workers[registration.id],
                slotHolder: state.slotHolder(
                    unit: unit.id, node: registration.node, gpu: registration.gpu, except: registration.id),
                at: now)
            state.workers[registration.id] = outcome.worker
            state.record(outcome.change)
            return outcome
        }
    }

    public func workers(unit: String?, state wanted: WorkerState?) async throws -> [Worker] {
        state.withLock { state in
            state.workers.values
                .filter { (unit == nil || $0.unit == unit) && (wanted == nil || $0.state == wanted) }
                .sorted { ($0.unit, $0.rank, $0.id) < ($1.unit, $1.rank, $1.id) }
        }
    }

    public func worker(_ id: String) async throws -> Worker? {
        state.withLock { $0.workers[id] }
    }

    @discardableResult
    public func setWorkerState(_ id: String, to target: WorkerState, reason: String, at now: Date) async throws
        -> WorkerStateChange?
    {
        try state.withLock { (state: inout State) throws(RegistryError) -> WorkerStateChange? in
            guard let worker = state.workers[id] else { throw .workerNotFound(id) }
            let holder = state.slotHolder(unit: worker.unit, node: worker.node, gpu: worker.gpu, except: id)
            guard
                let (updated, change) = try RegistryRules.transition(
                    worker, to: target, reason: reason, slotHolder: holder, at: now)
            else { return nil }
            state.workers[id] = updated
            state.record(change)
            return change
        }
    }

    public func workerHistory(_ id: String) async throws -> [WorkerStateChange] {
        try state.withLock { (state: inout State) throws(RegistryError) in
            guard let history = state.history[id] else {
                throw .workerNotFound(id)
            }
            return history
        }
    }

    public func workerRevision(_ id: String) async throws -> Int {
        try state.withLock { (state: inout State) throws(RegistryError) -> Int in
            guard state.workers[id] != nil else { throw .workerNotFound(id) }
            return state.history[id]?.count ?? 0
        }
    }
}
