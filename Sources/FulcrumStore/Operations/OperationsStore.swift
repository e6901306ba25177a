import FulcrumCore
import Foundation

/// Operators' changes and the audit trail. Each change is written with its audit entry in one transaction, so a
/// refused change is audited as nothing.
public protocol OperationsStore: Sendable {
    /// An operator's change of a worker's state. Refuses a dead worker (`AdminError.workerDead`) and, when
    /// `expectedRevision` is given and is not the worker's revision (the number of state changes recorded for it),
    /// throws `AdminError.preconditionFailed`. A worker already where the action leads is left alone and nothing is
    /// recorded.
    func changeWorkerState(_ id: String, action: WorkerAction, audit: AuditEntry, expectedRevision: Int?)
        async throws -> WorkerChangeOutcome
    /// A unit's controls; version 0 with nothing set when no operator has changed them.
    func unitControls(_ unit: String) async throws -> UnitControls
    /// The controls of every unit an operator has changed.
    func allUnitControls() async throws -> [UnitControls]
    /// Applies `change` to a unit's controls, raising its version by one, and appends `audit` with the controls
    /// before and after. `expectedVersion` as in `changeWorkerState`. A `change` that throws leaves everything as it
    /// was.
    func updateUnitControls(
        _ unit: String, expectedVersion: Int?, audit: AuditEntry,
        _ change: @Sendable (inout UnitControls) throws -> Void
    ) async throws -> (before: UnitControls, after: UnitControls)
    /// Appends one entry to the audit trail.
    func appendAudit(_ entry: AuditEntry) async throws
    /// The audit trail, newest first.
    func audit(_ query: AuditQuery) async throws -> [AuditEntry]
}
