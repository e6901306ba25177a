import FulcrumCore
import Foundation
import PostgresNIO

extension PostgresStore: LedgerStore {
    public func assignments(requestID: String) async throws -> [AssignmentRecord] {
        try await guarded {
            let rows = try await client.query(
                """
                SELECT DISTINCT ON (phase) request_id, phase, unit_id, worker_id, rank, input_tokens, cached_tokens,
                    context_tokens, max_new_tokens, cost, rank_tokens, rank_requests, rank_cost, unit_mean_cost,
                    unit_max_cost, telemetry_age_seconds, policy, assigned_at, finished_at
                FROM assignments WHERE request_id = \(requestID)
                ORDER BY phase DESC, assigned_at DESC
                """, logger: logger)
            return try await Self.records(rows)
        }
    }

    public func recentAssignments(since: Date, limit: Int) async throws -> [AssignmentRecord] {
        try await guarded {
            let rows = try await client.query(
                """
                SELECT * FROM (
                    SELECT request_id, phase, unit_id, worker_id, rank, input_tokens, cached_tokens, context_tokens,
                        max_new_tokens, cost, rank_tokens, rank_requests, rank_cost, unit_mean_cost, unit_max_cost,
                        telemetry_age_seconds, policy, assigned_at, finished_at
                    FROM assignments WHERE assigned_at >= \(since)
                    ORDER BY assigned_at DESC, request_id DESC LIMIT \(max(0, limit))
                ) AS recent ORDER BY assigned_at, request_id
                """, logger: logger)
            return try await Self.records(rows)
        }
    }

    private static func records(_ rows: PostgresRowSequence) async throws -> [AssignmentRecord] {
        var records: [AssignmentRecord] = []
        typealias Row = (
            String, String, String, String, Int, Int?, Int?, Int?, Int?, Double, Double, Double, Double, Double,
            Double, Double?, String, Date, Date?
        )
        for try await row in rows.decode(Row.self) {
            records.append(
                AssignmentRecord(
                    requestID: row.0, phase: Role(rawValue: row.1) ?? .prefill, unit: row.2, worker: row.3,
                    rank: row.4, inputTokens: row.5, cachedTokens: row.6, contextTokens: row.7,
                    maxNewTokens: row.8, cost: row.9, rankTokens: row.10, rankRequests: row.11, rankCost: row.12,
                    unitMeanCost: row.13, unitMaxCost: row.14, telemetryAgeSeconds: row.15, policy: row.16,
                    assignedAt: row.17, finishedAt: row.18))
        }
        return records
    }
}
