import FulcrumCore
import Foundation

/// Whether a store can serve: reachable, and its schema is the one this build expects.
public struct Readiness: Hashable, Sendable {
    public var ready: Bool
    public var reason: String?

    public static let ready = Readiness(ready: true, reason: nil)

    public static func notReady(_ reason: String) -> Readiness {
        Readiness(ready: false, reason: reason)
    }
}

/// The store could not be reached or failed for reasons outside the request; it may succeed when retried.
public struct StoreUnavailable: Error, Hashable, Sendable, CustomStringConvertible {
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String { "store unavailable: \(reason)" }
}

/// Fulcrum's durable state. Two implementations, `PostgresStore` and `MemoryStore`, pass one contract suite.
///
/// Every mutating call is all-or-nothing: it throws a `RegistryError` for a refused change and leaves the store as
/// it was. Other errors mean the store itself failed (for example Postgres is unreachable).
public protocol Store: Sendable {
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

    func readiness() async -> Readiness

    // MARK: Worker protocol

    /// Stores a published placement; throws `PlacementStoreError.versionExists` when that version is taken and
    /// `RegistryError.unitNotFound` for an unknown unit.
    func savePlacement(_ placement: Placement, details: PlacementDetails) async throws
    /// The newest placement of every unit that has one.
    func latestPlacements() async throws -> [Placement]
    /// A unit's stored placements below version `before` (all when nil), newest first, at most `limit`.
    func placementHistory(unit: String, before: Int?, limit: Int) async throws -> [PlacementSummary]
    /// One stored placement version with its table; nil when that version was never stored.
    func placement(unit: String, version: Int) async throws -> PlacementRecord?
    /// The newest acknowledged version of every worker.
    func latestAcks() async throws -> [PlacementAck]
    /// Writes one batch from the telemetry writer: all of it or nothing.
    func append(_ batch: TelemetryBatch) async throws
    /// Deletes telemetry samples, expert-load windows and ledger rows older than `cutoff`; returns how many rows went.
    @discardableResult
    func pruneTelemetry(before cutoff: Date) async throws -> Int
    /// A worker's samples, oldest first, for operators and tests.
    func telemetrySamples(worker: String, limit: Int) async throws -> [TelemetrySample]
    /// A unit's expert-load windows, oldest first.
    func expertLoadWindows(unit: String, since: Date) async throws -> [ExpertLoadWindow]
    /// The ledger's newest record of a request in each phase (prefill first).
    func assignments(requestID: String) async throws -> [AssignmentRecord]

    // MARK: Operations

    /// An operator's change of a worker's state, recorded with its audit entry in one transaction. Refuses a dead
    /// worker (`AdminError.workerDead`) and, when `expectedRevision` is given and is not the worker's revision (the
    /// number of state changes recorded for it), throws `AdminError.preconditionFailed`. A worker already where the
    /// action leads is left alone and nothing is recorded.
    func changeWorkerState(_ id: String, action: WorkerAction, audit: AuditEntry, expectedRevision: Int?)
        async throws -> WorkerChangeOutcome
    /// How many state changes are recorded for a worker: the version operators send back in `If-Match`.
    func workerRevision(_ id: String) async throws -> Int
    /// A unit's controls; version 0 with nothing set when no operator has changed them.
    func unitControls(_ unit: String) async throws -> UnitControls
    /// The controls of every unit an operator has changed.
    func allUnitControls() async throws -> [UnitControls]
    /// Applies `change` to a unit's controls, raising its version by one, and appends `audit` with the controls
    /// before and after, in one transaction. `expectedVersion` as in `changeWorkerState`. A `change` that throws
    /// leaves everything as it was.
    func updateUnitControls(
        _ unit: String, expectedVersion: Int?, audit: AuditEntry,
        _ change: @Sendable (inout UnitControls) throws -> Void
    ) async throws -> (before: UnitControls, after: UnitControls)
    /// Appends one entry to the audit trail.
    func appendAudit(_ entry: AuditEntry) async throws
    /// The audit trail, newest first.
    func audit(_ query: AuditQuery) async throws -> [AuditEntry]
}

/// How the stores write the audit's before and after: ISO 8601 dates, keys sorted, so entries read the same from
/// either store.
public enum AuditCoding {
    public static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    public static func value(_ value: some Encodable) -> JSONValue? {
        try? JSONValue.encoding(value, encoder: encoder)
    }
}
