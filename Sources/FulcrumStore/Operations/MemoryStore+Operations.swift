import FulcrumCore
import Foundation
import Synchronization

extension MemoryStore: OperationsStore {
    public func changeWorkerState(_ id: String, action: WorkerAction, audit: AuditEntry, expectedRevision: Int?)
        async throws -> WorkerChangeOutcome
    {
        try state.withLock { (state: inout State) throws -> WorkerChangeOutcome in
            guard let worker = state.workers[id] else { throw RegistryError.workerNotFound(id) }
            let outcome = try action.decide(
                worker, revision: state.history[id]?.count ?? 0, expectedRevision: expectedRevision, audit: audit)
            guard let change = outcome.change else { return outcome }
            state.workers[id] = outcome.worker
            state.record(change)
            state.append(audit)
            return outcome
        }
    }

    public func unitControls(_ unit: String) async throws -> UnitControls {
        try state.withLock { (state: inout State) throws(RegistryError) -> UnitControls in
            guard state.units[unit] != nil else { throw .unitNotFound(unit) }
            return state.controls[unit] ?? UnitControls(unit: unit)
        }
    }

    public func allUnitControls() async throws -> [UnitControls] {
        state.withLock { $0.controls.values.sorted { $0.unit < $1.unit } }
    }

    public func updateUnitControls(
        _ unit: String, expectedVersion: Int?, audit: AuditEntry,
        _ change: @Sendable (inout UnitControls) throws -> Void
    ) async throws -> (before: UnitControls, after: UnitControls) {
        try state.withLock { (state: inout State) throws -> (before: UnitControls, after: UnitControls) in
            guard state.units[unit] != nil else { throw RegistryError.unitNotFound(unit) }
            let before = state.controls[unit] ?? UnitControls(unit: unit)
            if let expectedVersion, expectedVersion != before.version {
                throw AdminError.preconditionFailed(target: AuditEntry.unit(unit), current: "\(before.version)")
            }
            var after = before
            try change(&after)
            after.version = before.version + 1
            after.updatedAt = audit.at
            after.updatedBy = audit.actor
            var entry = audit
            entry.before = AuditCoding.value(before)
            entry.after = AuditCoding.value(after)
            state.controls[unit] = after
            state.append(entry)
            return (before, after)
        }
    }

    public func appendAudit(_ entry: AuditEntry) async throws {
        state.withLock { $0.append(entry) }
    }

    public func audit(_ query: AuditQuery) async throws -> [AuditEntry] {
        state.withLock { state in
            Array(state.audit.reversed().lazy.filter { query.matches($0) }.prefix(query.limit))
        }
    }
}
