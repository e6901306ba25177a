import FulcrumCore
import Foundation
import PostgresNIO

extension PostgresStore: PlacementStore {
    public func savePlacement(_ placement: Placement, details: PlacementDetails) async throws {
        let encoder = JSONEncoder()
        let table = String(decoding: try encoder.encode(placement.phy2log), as: UTF8.self)
        let window = try details.window.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
        let transfer = try details.transfer.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
        let prediction = details.prediction
        let inserted = try await transaction { connection in
            let rows = try await connection.query(
                """
                INSERT INTO placements (
                    unit_id, version, phy2log, trigger, created_at, based_on, excluded_ranks, balancedness_before,
                    balancedness_after, improvement, moved, load_window, transfer)
                SELECT id, \(placement.version), \(table)::jsonb, \(details.trigger.rawValue), \(placement.createdAt),
                    \(details.basedOn), \(placement.excludedRanks)::integer[], \(prediction?.balancednessBefore),
                    \(prediction?.balancednessAfter), \(prediction?.improvement), \(prediction?.moved),
                    \(window)::jsonb, \(transfer)::jsonb
                FROM units WHERE id = \(placement.unit)
                ON CONFLICT (unit_id, version) DO NOTHING
                RETURNING version
                """, logger: logger
            ).collect()
            // An operator's action lands with the version it published, or not at all.
            if !rows.isEmpty, let audit = details.audit { try await insert(audit, on: connection) }
            return rows
        }
        guard inserted.isEmpty else { return }
        if try await unit(placement.unit) == nil { throw RegistryError.unitNotFound(placement.unit) }
        throw PlacementStoreError.versionExists(unit: placement.unit, version: placement.version)
    }

    public func latestPlacements() async throws -> [Placement] {
        try await guarded {
            let rows = try await client.query(
                """
                SELECT DISTINCT ON (unit_id) unit_id, version, phy2log::text, excluded_ranks::bigint[], created_at
                FROM placements ORDER BY unit_id, version DESC
                """, logger: logger)
            var placements: [Placement] = []
            for try await (unit, version, table, excluded, createdAt) in rows.decode((String, Int, String, [Int], Date).self) {
                placements.append(
                    Placement(
                        unit: unit, version: version, phy2log: try JSONDecoder().decode([[Int]].self, from: Data(table.utf8)),
                        excludedRanks: excluded, createdAt: createdAt))
            }
            return placements
        }
    }

    /// The columns of a placement summary, in the order `summary(from:)` reads them.
    private static let summaryColumns = """
        unit_id, version, created_at, excluded_ranks::bigint[], trigger, based_on, balancedness_before,
        balancedness_after, improvement, moved, load_window::text, transfer::text
        """

    private typealias SummaryRow = (String, Int, Date, [Int], String, Int?, Double?, Double?, Double?, Int?, String?, String?)

    private static func summary(from row: SummaryRow) throws -> PlacementSummary {
        let (unit, version, createdAt, excluded, trigger, basedOn, before, after, improvement, moved, window, transfer) = row
        var prediction: PlacementPrediction?
        if let before, let after, let improvement, let moved {
            prediction = PlacementPrediction(
                balancednessBefore: before, balancednessAfter: after, improvement: improvement, moved: moved)
        }
        let details = PlacementDetails(
            // Rows written before triggers were named were operators' own tables.
            trigger: PlacementTrigger(rawValue: trigger) ?? .explicit, basedOn: basedOn, prediction: prediction,
            window: try window.map { try JSONDecoder().decode(LoadWindowSummary.self, from: Data($0.utf8)) },
            transfer: try transfer.map { try JSONDecoder().decode(PlacementTransfer.self, from: Data($0.utf8)) })
        return PlacementSummary(
            unit: unit, version: version, createdAt: createdAt, excludedRanks: excluded, details: details)
    }

    public func placementHistory(unit: String, before: Int?, limit: Int) async throws -> [PlacementSummary] {
        try await guarded {
            let rows = try await client.query(
                """
                SELECT \(unescaped: Self.summaryColumns) FROM placements
                WHERE unit_id = \(unit) AND (\(before)::integer IS NULL OR version < \(before))
                ORDER BY version DESC LIMIT \(max(0, limit))
                """, logger: logger)
            var summaries: [PlacementSummary] = []
            for try await row in rows.decode(SummaryRow.self) { summaries.append(try Self.summary(from: row)) }
            return summaries
        }
    }

    public func placement(unit: String, version: Int) async throws -> PlacementRecord? {
        try await guarded {
            let rows = try await client.query(
                """
                SELECT phy2log::text, \(unescaped: Self.summaryColumns) FROM placements
                WHERE unit_id = \(unit) AND version = \(version)
                """, logger: logger)
            typealias Row = (String, String, Int, Date, [Int], String, Int?, Double?, Double?, Double?, Int?, String?, String?)
            for try await row in rows.decode(Row.self) {
                let summary = try Self.summary(
                    from: (row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9, row.10, row.11, row.12))
                let phy2log = try JSONDecoder().decode([[Int]].self, from: Data(row.0.utf8))
                return PlacementRecord(
                    placement: Placement(
                        unit: summary.unit, version: summary.version, phy2log: phy2log,
                        excludedRanks: summary.excludedRanks, createdAt: summary.createdAt),
                    details: summary.details)
            }
            return nil
        }
    }

    public func latestAcks() async throws -> [PlacementAck] {
        try await guarded {
            let rows = try await client.query(
                """
                SELECT DISTINCT ON (worker_id) worker_id, unit_id, version, acked_at FROM placement_acks
                ORDER BY worker_id, version DESC
                """, logger: logger)
            var acks: [PlacementAck] = []
            for try await (worker, unit, version, at) in rows.decode((String, String, Int, Date).self) {
                acks.append(PlacementAck(worker: worker, unit: unit, version: version, at: at))
            }
            return acks.sorted { ($0.unit, $0.worker) < ($1.unit, $1.worker) }
        }
    }
}
