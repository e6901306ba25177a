import FulcrumCore
import FulcrumStore
import Foundation
import Logging

/// The registry of units and workers: validates what operators and workers send, then asks the store.
public struct RegistryService: Sendable {
    public let store: any Store
    let now: @Sendable () -> Date
    let logger: Logger
    /// How long a request waits for the store. PostgresNIO's pool queues requests while it cannot connect (for up
    /// to a minute), so without a bound a database outage would hang every caller instead of answering 503.
    let storeTimeout: Duration

    public init(
        store: any Store, logger: Logger, storeTimeout: Duration = .seconds(5),
        now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.store = store
        self.logger = logger
        self.storeTimeout = storeTimeout
        self.now = now
    }

    /// Runs a store call within `storeTimeout`. A write that times out may still land; every write here is safe
    /// to retry (registration is idempotent, a repeated create answers 409).
    private func bounded<Result: Sendable>(_ call: @escaping @Sendable () async throws -> Result) async throws -> Result {
        do {
            return try await withDeadline(storeTimeout, call)
        } catch is DeadlineExceeded {
            throw StoreUnavailable(reason: "no answer within \(storeTimeout)")
        }
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
        logger.notice(
            "unit created",
            metadata: ["unit": "\(unit.id)", "role": "\(unit.role)", "gpus": "\(unit.gpus)", "slotsPerGpu": "\(unit.slotsPerGpu)"])
        return unit
    }

    public func units() async throws -> [DeploymentUnit] {
        try await bounded { [store] in try await store.units() }
    }

    public func unit(_ id: String) async throws -> DeploymentUnit {
        try Identifier.validate(id, field: "unit")
        guard let unit = try await bounded({ [store] in try await store.unit(id) }) else {
            throw RegistryError.unitNotFound(id)
        }
        return unit
    }

    public func deleteUnit(_ id: String) async throws {
        try Identifier.validate(id, field: "unit")
        try await bounded { [store] in try await store.deleteUnit(id) }
        logger.notice("unit deleted", metadata: ["unit": "\(id)"])
    }

    public func register(_ registration: WorkerRegistration) async throws -> RegistrationOutcome {
        try registration.validate()
        let at = now()
        let outcome = try await bounded { [store] in try await store.registerWorker(registration, at: at) }
        if let change = outcome.change {
            logger.notice(
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
        return try await bounded { [store] in try await store.workers(unit: unit, state: state) }
    }

    public func worker(_ id: String) async throws -> Worker {
        try Identifier.validate(id, field: "worker")
        guard let worker = try await bounded({ [store] in try await store.worker(id) }) else {
            throw RegistryError.workerNotFound(id)
        }
        return worker
    }

    public func workerHistory(_ id: String) async throws -> [WorkerStateChange] {
        try Identifier.validate(id, field: "worker")
        return try await bounded { [store] in try await store.workerHistory(id) }
    }
}
