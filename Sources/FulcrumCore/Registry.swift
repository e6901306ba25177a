import Foundation

/// Why the registry refused a change. Each case maps to one HTTP status in the API.
public enum RegistryError: Error, Hashable, Sendable {
    case invalid(ValidationError)
    case unitExists(String)
    case unitNotFound(String)
    case unitHasLiveWorkers(unit: String, live: Int)
    case workerNotFound(String)
    case slotTaken(unit: String, node: Int, gpu: Int, heldBy: String)
}

extension RegistryError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .invalid(let error):
            "\(error)"
        case .unitExists(let id):
            "unit '\(id)' already exists"
        case .unitNotFound(let id):
            "unit '\(id)' does not exist"
        case .unitHasLiveWorkers(let unit, let live):
            "unit '\(unit)' still has \(live) live worker(s); drain them or let them die before deleting it"
        case .workerNotFound(let id):
            "worker '\(id)' does not exist"
        case .slotTaken(let unit, let node, let gpu, let holder):
            "node \(node) gpu \(gpu) of unit '\(unit)' is held by live worker '\(holder)'"
        }
    }
}

/// What a worker says about itself when it registers (`PUT /v1/workers/{id}`).
public struct WorkerRegistration: Hashable, Sendable {
    public var id: String
    public var unit: String
    public var node: Int
    public var gpu: Int
    public var capacity: WorkerCapacity

    public init(id: String, unit: String, node: Int, gpu: Int, capacity: WorkerCapacity) {
        self.id = id
        self.unit = unit
        self.node = node
        self.gpu = gpu
        self.capacity = capacity
    }

    /// Checks the fields that need no unit: the ids and the capacity.
    public func validate() throws(ValidationError) {
        try Identifier.validate(id, field: "id")
        try Identifier.validate(unit, field: "unit")
        try capacity.validate()
        // Upper bounds are the unit's shape, checked in `RegistryRules.register`.
        guard node >= 0 else { throw ValidationError(field: "node", "must not be negative, got \(node)") }
        guard gpu >= 0 else { throw ValidationError(field: "gpu", "must not be negative, got \(gpu)") }
    }
}

/// The result of a registration: the worker as stored, whether it is new, and the state change to record.
public struct RegistrationOutcome: Hashable, Sendable {
    public var worker: Worker
    public var created: Bool
    public var change: WorkerStateChange?

    public init(worker: Worker, created: Bool, change: WorkerStateChange?) {
        self.worker = worker
        self.created = created
        self.change = change
    }
}

/// The registry's decisions, shared by every store so that they cannot disagree. Stores supply what they read
/// (inside their transaction) and write what comes back.
public enum RegistryRules {
    /// Decides a (re-)registration. Registration is idempotent: a known worker keeps its `registeredAt` and an
    /// operator's cordon or drain, but a dead worker that registers again is active once more.
    ///
    /// - Parameters:
    ///   - existing: the stored worker with this id, if any.
    ///   - slotHolder: the id of another live worker on the same unit/node/gpu, if any.
    public static func register(
        _ registration: WorkerRegistration,
        unit: DeploymentUnit,
        existing: Worker?,
        slotHolder: String?,
        at now: Date
    ) throws(RegistryError) -> RegistrationOutcome {
        do {
            try registration.validate()
            try (0...(unit.nodes - 1)).check(registration.node, field: "node")
            try (0...(unit.gpusPerNode - 1)).check(registration.gpu, field: "gpu")
        } catch {
            throw .invalid(error)
        }
        if let slotHolder, slotHolder != registration.id {
            throw .slotTaken(unit: unit.id, node: registration.node, gpu: registration.gpu, heldBy: slotHolder)
        }
        let rank = registration.node * unit.gpusPerNode + registration.gpu
        guard let existing else {
            let worker = Worker(
                id: registration.id, unit: unit.id, node: registration.node, gpu: registration.gpu, rank: rank,
                capacity: registration.capacity, state: .active, registeredAt: now, lastSeen: now)
            let change = WorkerStateChange(
                worker: worker.id, unit: unit.id, from: nil, to: .active, reason: "registered", at: now)
            return RegistrationOutcome(worker: worker, created: true, change: change)
        }
        var worker = existing
        worker.unit = unit.id
        worker.node = registration.node
        worker.gpu = registration.gpu
        worker.rank = rank
        worker.capacity = registration.capacity
        worker.lastSeen = now
        var change: WorkerStateChange?
        if existing.state == .dead {
            worker.state = .active
            change = WorkerStateChange(
                worker: worker.id, unit: unit.id, from: .dead, to: .active, reason: "re-registered", at: now)
        }
        return RegistrationOutcome(worker: worker, created: false, change: change)
    }

    /// Decides a unit deletion: allowed only when none of its workers is live.
    public static func checkDeletable(unit: String, liveWorkers: Int) throws(RegistryError) {
        if liveWorkers > 0 {
            throw .unitHasLiveWorkers(unit: unit, live: liveWorkers)
        }
    }

    /// Decides a state change (liveness, cordon, drain). Returns nil when the worker is already in that state, so
    /// nothing is recorded twice. A dead worker may come back only while no other live worker holds its GPU.
    public static func transition(
        _ worker: Worker, to state: WorkerState, reason: String, slotHolder: String?, at now: Date
    ) throws(RegistryError) -> (worker: Worker, change: WorkerStateChange)? {
        guard worker.state != state else { return nil }
        if state.isLive, !worker.state.isLive, let slotHolder, slotHolder != worker.id {
            throw .slotTaken(unit: worker.unit, node: worker.node, gpu: worker.gpu, heldBy: slotHolder)
        }
        var updated = worker
        updated.state = state
        let change = WorkerStateChange(
            worker: worker.id, unit: worker.unit, from: worker.state, to: state, reason: reason, at: now)
        return (updated, change)
    }
}
