import FulcrumCore
import Foundation
import PostgresNIO

/// Operators' changes and the audit trail.
extension PostgresStore: OperationsStore {
    public func changeWorkerState(_ id: String, action: WorkerAction, audit: AuditEntry, expectedRevision: Int?)
        async throws -> WorkerChangeOutcome
    {
        try await transaction { connection in
            guard let worker = try await lockedWorker(id, on: connection) else {
                throw RegistryError.workerNotFound(id)
            }
            let outcome = try action.decide(
                worker, revision: try await revision(of: id, on: connection), expectedRevision: expectedRevision,
                audit: audit)
            guard let change = outcome.change else { return outcome }
            try await connection.query(
                "UPDATE workers SET state = \(change.to.rawValue) WHERE id = \(id)", logger: logger)
            try await record(change, on: connection)
            try await insert(audit, on: connection)
            return outcome
        }
    }

    public func unitControls(_ unit: String) async throws -> UnitControls {
        try await guarded {
            let rows = try await client.query(
                """
                SELECT u.id, c.controls::text FROM units u LEFT JOIN unit_controls c ON c.unit_id = u.id
                WHERE u.id = \(unit)
                """, logger: logger)
            for try await (_, text) in rows.decode((String, String?).self) {
                return try text.map(Self.decodeControls) ?? UnitControls(unit: unit)
            }
            throw RegistryError.unitNotFound(unit)
        }
    }

    public func allUnitControls() async throws -> [UnitControls] {
        try await guarded {
            let rows = try await client.query(
                "SELECT controls::text FROM unit_controls ORDER BY unit_id", logger: logger)
            var all: [UnitControls] = []
            for try await text in rows.decode(String.self) { all.append(try Self.decodeControls(text)) }
            return all
        }
    }

    public func updateUnitControls(
        _ unit: String, expectedVersion: Int?, audit: AuditEntry,
        _ change: @Sendable (inout UnitControls) throws -> Void
    ) async throws -> (before: UnitControls, after: UnitControls) {
        do {
            return try await updatingControls(unit, expectedVersion: expectedVersion, audit: audit, change)
        } catch let refusal as CallerError {
            throw refusal.underlying
        }
    }

    private func updatingControls(
        _ unit: String, expectedVersion: Int?, audit: AuditEntry,
        _ change: @Sendable (inout UnitControls) throws -> Void
    ) async throws -> (before: UnitControls, after: UnitControls) {
        try await transaction { connection in
            // The unit's row is the lock: a unit's first change has no controls row to lock yet.
            let units = try await connection.query("SELECT id FROM units WHERE id = \(unit) FOR UPDATE", logger: logger)
                .collect()
            guard !units.isEmpty else { throw RegistryError.unitNotFound(unit) }
            var before = UnitControls(unit: unit)
            for try await text in try await connection.query(
                "SELECT controls::text FROM unit_controls WHERE unit_id = \(unit)", logger: logger
            ).decode(String.self) {
                before = try Self.decodeControls(text)
            }
            if let expectedVersion, expectedVersion != before.version {
                throw AdminError.preconditionFailed(target: AuditEntry.unit(unit), current: "\(before.version)")
            }
            var after = before
            // The caller's own refusal rolls back and reaches the caller as it was thrown, never as a store failure.
            do { try change(&after) } catch { throw CallerError(underlying: error) }
            after.version = before.version + 1
            after.updatedAt = audit.at
            after.updatedBy = audit.actor
            let text = String(decoding: try Self.controlsEncoder.encode(after), as: UTF8.self)
            try await connection.query(
                """
                INSERT INTO unit_controls (unit_id, version, controls, updated_at)
                VALUES (\(unit), \(after.version), \(text)::jsonb, \(audit.at))
                ON CONFLICT (unit_id) DO UPDATE SET version = EXCLUDED.version, controls = EXCLUDED.controls,
                    updated_at = EXCLUDED.updated_at
                """, logger: logger)
            var entry = audit
            entry.before = AuditCoding.value(before)
            entry.after = AuditCoding.value(after)
            try await insert(entry, on: connection)
            return (before, after)
        }
    }

    public func appendAudit(_ entry: AuditEntry) async throws {
        try await transaction { connection in try await insert(entry, on: connection) }
    }

    func insert(_ entry: AuditEntry, on connection: PostgresConnection) async throws {
        let before = try entry.before.map { String(decoding: try AuditCoding.encoder.encode($0), as: UTF8.self) }
        let after = try entry.after.map { String(decoding: try AuditCoding.encoder.encode($0), as: UTF8.self) }
        try await connection.query(
            """
            INSERT INTO audit_log (at, actor, action, target, reason, before, after)
            VALUES (\(entry.at), \(entry.actor), \(entry.action), \(entry.target), \(entry.reason), \(before)::jsonb,
                    \(after)::jsonb)
            """, logger: logger)
    }

    public func audit(_ query: AuditQuery) async throws -> [AuditEntry] {
        try await guarded {
            let rows = try await client.query(
                """
                SELECT id, at, actor, action, target, reason, before::text, after::text FROM audit_log
                WHERE (\(query.target)::text IS NULL OR target = \(query.target))
                  AND (\(query.action)::text IS NULL OR action = \(query.action))
                  AND (\(query.since)::timestamptz IS NULL OR at >= \(query.since))
                  AND (\(query.until)::timestamptz IS NULL OR at < \(query.until))
                  AND (\(query.before)::bigint IS NULL OR id < \(query.before))
                ORDER BY id DESC LIMIT \(query.limit)
                """, logger: logger)
            var entries: [AuditEntry] = []
            for try await (id, at, actor, action, target, reason, before, after) in rows.decode(
                (Int, Date, String, String, String, String?, String?, String?).self)
            {
                entries.append(
                    AuditEntry(
                        id: id, at: at, actor: actor, action: action, target: target, reason: reason,
                        before: try before.map { try JSONValue.parse(Data($0.utf8)) },
                        after: try after.map { try JSONValue.parse(Data($0.utf8)) }))
            }
            return entries
        }
    }

    /// Controls are stored with Foundation's own date encoding, which reads back exactly.
    static let controlsEncoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    static func decodeControls(_ text: String) throws -> UnitControls {
        try JSONDecoder().decode(UnitControls.self, from: Data(text.utf8))
    }
}
