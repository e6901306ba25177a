import FulcrumCore
import Foundation

/// Units, workers and workers' recorded state changes.
///
/// Every mutating call is all-or-nothing: it throws a `RegistryError` for a refused change and leaves the store as
/// it was. Other errors mean the store itself failed (for example PostgreSQL is unreachable).
public protocol RegistryStore: Sendable {
    func createUnit(_ unit: DeploymentUnit) async throws
    func units() async throws -> [DeploymentUnit]
    func unit(_ id: String) async throws -> DeploymentUnit?
    /// Deletes a unit with no live workers, and its dead workers; their state history is kept.
    func deleteUnit(_ id: String) async throws

    func registerWorker(_ registration: WorkerRegistration, at now: Date) async throws -> RegistrationOutcome
    /// Workers ordered by unit, then rank; both filters optional.
    func workers(unit: String?, state: WorkerState?) async throws -> [Worker]
    func worker(_ id: String) async throws -> Worker?
    /// Changes a worker's state and records why; returns nil when it already was in that state.
    @discardableResult
    func setWorkerState(_ id: String, to state: WorkerState, reason: String, at now: Date) async throws
        -> WorkerStateChange?
    /// A worker's recorded state changes, oldest first.
    func workerHistory(_ id: String) async throws -> [WorkerStateChange]
    /// How many state changes are recorded for a worker: the version operators send back in `If-Match`.
    func workerRevision(_ id: String) async throws -> Int
}
