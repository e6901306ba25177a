import FulcrumCore
import Foundation
import PostgresNIO

extension PostgresStore: RegistryStore {
    public func createUnit(_ unit: DeploymentUnit) async throws {
        let inserted = try await transaction { connection in
            try await connection.query(
                """
                INSERT INTO units (id, role, nodes, gpus_per_node, moe_layers, routed_experts, expert_groups,
                                   redundant_experts, created_at)
                VALUES (\(unit.id), \(unit.role.rawValue), \(unit.nodes), \(unit.gpusPerNode),
                        \(unit.model.moeLayers), \(unit.model.routedExperts), \(unit.model.expertGroups),
                        \(unit.redundantExperts), \(unit.createdAt))
                ON CONFLICT (id) DO NOTHING
                RETURNING id
                """, logger: logger
            ).collect()
        }
        if inserted.isEmpty { throw RegistryError.unitExists(unit.id) }
    }

    public func units() async throws -> [DeploymentUnit] {
        // COLLATE "C": byte order, the same in every database and in MemoryStore, whatever the server's locale.
        try await guarded {
            try await Self.decodeUnits(
                client.query(
                    "SELECT \(unescaped: Self.unitColumns) FROM units ORDER BY id COLLATE \"C\"", logger: logger))
        }
    }

    public func unit(_ id: String) async throws -> DeploymentUnit? {
        try await guarded {
            try await Self.decodeUnits(
                client.query("SELECT \(unescaped: Self.unitColumns) FROM units WHERE id = \(id)", logger: logger)
            ).first
        }
    }

    public func deleteUnit(_ id: String) async throws {
        try await transaction { connection in
            let found = try await connection.query(
                "SELECT id FROM units WHERE id = \(id) FOR UPDATE", logger: logger
            ).collect()
            guard !found.isEmpty else { throw RegistryError.unitNotFound(id) }
            // Lock the workers too: a dead worker revived between this count and the DELETE would otherwise be
            // deleted alive by the cascade.
            var live = 0
            let rows = try await connection.query(
                "SELECT state FROM workers WHERE unit_id = \(id) FOR UPDATE", logger: logger)
            for try await state in rows.decode(String.self) where try Self.state(state).isLive {
                live += 1
            }
            try RegistryRules.checkDeletable(unit: id, liveWorkers: live)
            try await connection.query("DELETE FROM units WHERE id = \(id)", logger: logger)
        }
    }

    public func registerWorker(_ registration: WorkerRegistration, at now: Date) async throws -> RegistrationOutcome {
        try await transaction { connection in
            guard
                let unit = try await Self.decodeUnits(
                    connection.query(
                        "SELECT \(unescaped: Self.unitColumns) FROM units WHERE id = \(registration.unit) FOR SHARE",
                        logger: logger)
                ).first
            else { throw RegistryError.unitNotFound(registration.unit) }
            let existing = try await lockedWorker(registration.id, on: connection)
            let holder = try await slotHolder(
                on: connection, unit: unit.id, node: registration.node, gpu: registration.gpu,
                except: registration.id)
            let outcome = try RegistryRules.register(
                registration, unit: unit, existing: existing, slotHolder: holder, at: now)
            let w = outcome.worker
            if outcome.created {
                try await connection.query(
                    """
                    INSERT INTO workers (id, unit_id, node, gpu, rank, kv_tokens, max_batch_tokens, state,
                                         registered_at, last_seen)
                    VALUES (\(w.id), \(w.unit), \(w.node), \(w.gpu), \(w.rank), \(w.capacity.kvTokens),
                            \(w.capacity.maxBatchTokens), \(w.state.rawValue), \(w.registeredAt), \(w.lastSeen))
                    """, logger: logger)
            } else {
                try await connection.query(
                    """
                    UPDATE workers SET unit_id = \(w.unit), node = \(w.node), gpu = \(w.gpu), rank = \(w.rank),
                        kv_tokens = \(w.capacity.kvTokens), max_batch_tokens = \(w.capacity.maxBatchTokens),
                        state = \(w.state.rawValue), last_seen = \(w.lastSeen)
                    WHERE id = \(w.id)
                    """, logger: logger)
            }
            try await record(outcome.change, on: connection)
            return outcome
        }
    }

    public func workers(unit: String?, state: WorkerState?) async throws -> [Worker] {
        try await guarded {
            try await Self.decodeWorkers(
            client.query(
                """
                SELECT \(unescaped: Self.workerColumns) FROM workers
                WHERE (\(unit)::text IS NULL OR unit_id = \(unit))
                  AND (\(state?.rawValue)::text IS NULL OR state = \(state?.rawValue))
                ORDER BY unit_id COLLATE "C", rank, id COLLATE "C"
                """, logger: logger))
        }
    }

    public func worker(_ id: String) async throws -> Worker? {
        try await guarded {
            try await Self.decodeWorkers(
                client.query("SELECT \(unescaped: Self.workerColumns) FROM workers WHERE id = \(id)", logger: logger)
            ).first
        }
    }

    @discardableResult
    public func setWorkerState(_ id: String, to state: WorkerState, reason: String, at now: Date) async throws
        -> WorkerStateChange?
    {
        try await transaction { connection in
            guard let worker = try await lockedWorker(id, on: connection) else {
                throw RegistryError.workerNotFound(id)
            }
            let holder = try await slotHolder(
                on: connection, unit: worker.unit, node: worker.node, gpu: worker.gpu, except: id)
            guard
                let (updated, change) = try RegistryRules.transition(
                    worker, to: state, reason: reason, slotHolder: holder, at: now)
            else { return nil }
            try await connection.query(
                "UPDATE workers SET state = \(updated.state.rawValue) WHERE id = \(id)", logger: logger)
            try await record(change, on: connection)
            return change
        }
    }

    public func workerHistory(_ id: String) async throws -> [WorkerStateChange] {
        try await guarded { try await history(of: id) }
    }

    private func history(of id: String) async throws -> [WorkerStateChange] {
        let rows = try await client.query(
            """
            SELECT worker_id, unit_id, from_state, to_state, reason, at FROM worker_events
            WHERE worker_id = \(id) ORDER BY id
            """, logger: logger)
        var history: [WorkerStateChange] = []
        for try await (worker, unit, from, to, reason, at) in rows.decode(
            (String, String, String?, String, String, Date).self)
        {
            history.append(
                WorkerStateChange(
                    worker: worker, unit: unit, from: try from.map(Self.state), to: try Self.state(to),
                    reason: reason, at: at))
        }
        if history.isEmpty, try await worker(id) == nil {
            throw RegistryError.workerNotFound(id)
        }
        return history
    }

    /// Reads a worker and locks its row until the transaction ends, so concurrent changes to it take turns.
    func lockedWorker(_ id: String, on connection: PostgresConnection) async throws -> Worker? {
        try await Self.decodeWorkers(
            connection.query(
                "SELECT \(unescaped: Self.workerColumns) FROM workers WHERE id = \(id) FOR UPDATE", logger: logger)
        ).first
    }

    private func slotHolder(on connection: PostgresConnection, unit: String, node: Int, gpu: Int, except id: String)
        async throws -> String?
    {
        try await connection.query(
            """
            SELECT id FROM workers
            WHERE unit_id = \(unit) AND node = \(node) AND gpu = \(gpu) AND state <> 'dead' AND id <> \(id)
            LIMIT 1
            """, logger: logger
        ).collect().first?.decode(String.self)
    }

    func record(_ change: WorkerStateChange?, on connection: PostgresConnection) async throws {
        guard let change else { return }
        try await connection.query(
            """
            INSERT INTO worker_events (worker_id, unit_id, from_state, to_state, reason, at)
            VALUES (\(change.worker), \(change.unit), \(change.from?.rawValue), \(change.to.rawValue),
                    \(change.reason), \(change.at))
            """, logger: logger)
    }

    private static let unitColumns =
        "id, role, nodes, gpus_per_node, moe_layers, routed_experts, expert_groups, redundant_experts, created_at"

    private static func decodeUnits(_ rows: PostgresRowSequence) async throws -> [DeploymentUnit] {
        var units: [DeploymentUnit] = []
        for try await (id, role, nodes, gpusPerNode, layers, experts, groups, redundant, createdAt) in rows.decode(
            (String, String, Int, Int, Int, Int, Int, Int, Date).self)
        {
            guard let role = Role(rawValue: role) else { throw StoreCorruption.unknownValue(column: "role", role) }
            units.append(
                DeploymentUnit(
                    id: id, role: role, nodes: nodes, gpusPerNode: gpusPerNode,
                    model: ModelShape(moeLayers: layers, routedExperts: experts, expertGroups: groups),
                    redundantExperts: redundant, createdAt: createdAt))
        }
        return units
    }

    private static let workerColumns =
        "id, unit_id, node, gpu, rank, kv_tokens, max_batch_tokens, state, registered_at, last_seen"

    private static func decodeWorkers(_ rows: PostgresRowSequence) async throws -> [Worker] {
        var workers: [Worker] = []
        for try await (id, unit, node, gpu, rank, kvTokens, maxBatchTokens, state, registeredAt, lastSeen)
            in rows.decode((String, String, Int, Int, Int, Int, Int, String, Date, Date?).self)
        {
            workers.append(
                Worker(
                    id: id, unit: unit, node: node, gpu: gpu, rank: rank,
                    capacity: WorkerCapacity(kvTokens: kvTokens, maxBatchTokens: maxBatchTokens),
                    state: try Self.state(state), registeredAt: registeredAt, lastSeen: lastSeen))
        }
        return workers
    }

    private static func state(_ raw: String) throws -> WorkerState {
        guard let state = WorkerState(rawValue: raw) else {
            throw StoreCorruption.unknownValue(column: "state", raw)
        }
        return state
    }

    public func workerRevision(_ id: String) async throws -> Int {
        try await guarded {
            guard try await worker(id) != nil else { throw RegistryError.workerNotFound(id) }
            return try await client.withConnection { connection in try await revision(of: id, on: connection) }
        }
    }

    func revision(of id: String, on connection: PostgresConnection) async throws -> Int {
        let rows = try await connection.query("SELECT count(*) FROM worker_events WHERE worker_id = \(id)", logger: logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }
}
