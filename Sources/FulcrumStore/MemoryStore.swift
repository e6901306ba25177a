import FulcrumCore
import Foundation
import Synchronization

/// The dev-mode store: everything in memory, lost when the process ends.
public final class MemoryStore: Store {
    private struct State {
        var units: [String: DeploymentUnit] = [:]
        var workers: [String: Worker] = [:]
        var history: [String: [WorkerStateChange]] = [:]
        var placements: [String: [PlacementRecord]] = [:]
        /// The ledger: the newest record of each request id, per phase.
        var ledger: [String: [Role: AssignmentRecord]] = [:]
        var acks: [String: PlacementAck] = [:]
        var samples: [TelemetrySample] = []
        var windows: [ExpertLoadWindow] = []
        var controls: [String: UnitControls] = [:]
        var audit: [AuditEntry] = []

        mutating func append(_ entry: AuditEntry) {
            var entry = entry
            entry.id = (audit.last?.id ?? 0) + 1
            audit.append(entry)
        }

        func slotHolder(unit: String, node: Int, gpu: Int, except id: String) -> String? {
            workers.values.first {
                $0.unit == unit && $0.node == node && $0.gpu == gpu && $0.state.isLive && $0.id != id
            }?.id
        }

        mutating func record(_ change: WorkerStateChange?) {
            if let change { history[change.worker, default: []].append(change) }
        }
    }

    private let state = Mutex(State())

    public init() {}

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

    public func readiness() async -> Readiness { .ready }

    // MARK: Worker protocol

    public func savePlacement(_ placement: Placement, details: PlacementDetails) async throws {
        try state.withLock { (state: inout State) throws in
            guard state.units[placement.unit] != nil else { throw RegistryError.unitNotFound(placement.unit) }
            if state.placements[placement.unit, default: []].contains(where: { $0.placement.version == placement.version }) {
                throw PlacementStoreError.versionExists(unit: placement.unit, version: placement.version)
            }
            var stored = details
            stored.audit = nil
            state.placements[placement.unit, default: []].append(PlacementRecord(placement: placement, details: stored))
            if let audit = details.audit { state.append(audit) }
        }
    }

    public func latestPlacements() async throws -> [Placement] {
        state.withLock { state in
            state.placements.values.compactMap { $0.max { $0.placement.version < $1.placement.version }?.placement }
                .sorted { $0.unit < $1.unit }
        }
    }

    public func placementHistory(unit: String, before: Int?, limit: Int) async throws -> [PlacementSummary] {
        state.withLock { state in
            let records = state.placements[unit, default: []].filter { record in
                before.map { record.placement.version < $0 } ?? true
            }
            return records.sorted { $0.placement.version > $1.placement.version }.prefix(max(0, limit)).map(\.summary)
        }
    }

    public func placement(unit: String, version: Int) async throws -> PlacementRecord? {
        state.withLock { $0.placements[unit]?.first { $0.placement.version == version } }
    }

    public func latestAcks() async throws -> [PlacementAck] {
        state.withLock { $0.acks.values.sorted { ($0.unit, $0.worker) < ($1.unit, $1.worker) } }
    }

    public func append(_ batch: TelemetryBatch) async throws {
        state.withLock { state in
            state.samples.append(contentsOf: batch.samples)
            state.windows.append(contentsOf: batch.windows)
            for ack in batch.acks where ack.version > state.acks[ack.worker]?.version ?? 0 {
                state.acks[ack.worker] = ack
            }
            for (id, seen) in batch.lastSeen {
                guard let previous = state.workers[id] else { continue }
                state.workers[id]?.lastSeen = max(seen, previous.lastSeen ?? seen)
            }
            for record in batch.assignments { state.ledger[record.requestID, default: [:]][record.phase] = record }
            for finish in batch.finishes {
                guard let record = state.ledger[finish.requestID]?[finish.phase], record.finishedAt == nil,
                    record.assignedAt <= finish.at
                else { continue }
                state.ledger[finish.requestID]?[finish.phase]?.finishedAt = finish.at
            }
        }
    }

    @discardableResult
    public func pruneTelemetry(before cutoff: Date) async throws -> Int {
        state.withLock { state in
            let before = state.samples.count + state.windows.count
            state.samples.removeAll { $0.receivedAt < cutoff }
            state.windows.removeAll { $0.windowEnd < cutoff }
            var removed = before - state.samples.count - state.windows.count
            for (id, phases) in state.ledger {
                let kept = phases.filter { $0.value.assignedAt >= cutoff }
                removed += phases.count - kept.count
                state.ledger[id] = kept.isEmpty ? nil : kept
            }
            return removed
        }
    }

    public func telemetrySamples(worker: String, limit: Int) async throws -> [TelemetrySample] {
        state.withLock { Array($0.samples.filter { $0.worker == worker }.sorted { ($0.receivedAt, $0.seq) < ($1.receivedAt, $1.seq) }.suffix(limit)) }
    }

    public func assignments(requestID: String) async throws -> [AssignmentRecord] {
        state.withLock { state in Role.allCases.compactMap { state.ledger[requestID]?[$0] } }
    }

    public func expertLoadWindows(unit: String, since: Date) async throws -> [ExpertLoadWindow] {
        state.withLock { $0.windows.filter { $0.unit == unit && $0.windowEnd >= since }.sorted { $0.windowEnd < $1.windowEnd } }
    }

    // MARK: Operations

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

    public func workerRevision(_ id: String) async throws -> Int {
        try state.withLock { (state: inout State) throws(RegistryError) -> Int in
            guard state.workers[id] != nil else { throw .workerNotFound(id) }
            return state.history[id]?.count ?? 0
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
