import FulcrumCore
import Foundation
import PostgresNIO

extension PostgresStore: ProtocolHistoryStore {
    /// One transaction, one statement per table, whole arrays as parameters: thousands of rows cost a handful of
    /// round trips.
    public func append(_ batch: TelemetryBatch) async throws {
        guard !batch.isEmpty else { return }
        try await transaction { connection in
            if !batch.samples.isEmpty {
                let s = batch.samples
                // Arrays cannot hold NULL through PostgresNIO's encoders; -1 stands for "not reported".
                try await connection.query(
                    """
                    INSERT INTO telemetry_samples (worker_id, unit_id, seq, sent_at, received_at,
                        prefill_queued_tokens, prefill_queued_requests, prefill_attention_work,
                        decode_kv_tokens_used, decode_kv_capacity, decode_running_requests)
                    SELECT w, u, q, sa, ra, NULLIF(pt, -1), NULLIF(pr, -1), NULLIF(pw, -1),
                           NULLIF(dk, -1), NULLIF(dc, -1), NULLIF(dr, -1)
                    FROM unnest(\(s.map(\.worker)), \(s.map(\.unit)), \(s.map(\.seq)), \(s.map(\.sentAt)),
                                \(s.map(\.receivedAt)), \(s.map { $0.prefill?.queuedTokens ?? -1 }),
                                \(s.map { $0.prefill?.queuedRequests ?? -1 }), \(s.map { $0.prefill?.attentionWork ?? -1 }),
                                \(s.map { $0.decode?.kvTokensUsed ?? -1 }), \(s.map { $0.decode?.kvTokensCapacity ?? -1 }),
                                \(s.map { $0.decode?.runningRequests ?? -1 }))
                         AS t(w, u, q, sa, ra, pt, pr, pw, dk, dc, dr)
                    """, logger: logger)
            }
            if !batch.windows.isEmpty {
                let w = batch.windows
                let tables = try w.map { String(decoding: try JSONEncoder().encode($0.slotTokens), as: UTF8.self) }
                try await connection.query(
                    """
                    INSERT INTO expert_load_windows (unit_id, window_start, window_end, placement_version, reports,
                                                     slot_tokens)
                    SELECT u, ws, we, v, r, st::jsonb
                    FROM unnest(\(w.map(\.unit)), \(w.map(\.windowStart)), \(w.map(\.windowEnd)),
                                \(w.map(\.placementVersion)), \(w.map(\.reports)), \(tables))
                         AS t(u, ws, we, v, r, st)
                    """, logger: logger)
            }
            if !batch.acks.isEmpty {
                let a = batch.acks
                try await connection.query(
                    """
                    INSERT INTO placement_acks (worker_id, unit_id, version, acked_at)
                    SELECT * FROM unnest(\(a.map(\.worker)), \(a.map(\.unit)), \(a.map(\.version)), \(a.map(\.at)))
                    ON CONFLICT DO NOTHING
                    """, logger: logger)
            }
            if !batch.assignments.isEmpty {
                let a = batch.assignments
                // Arrays cannot hold NULL through PostgresNIO's encoders; -1 stands for "absent".
                try await connection.query(
                    """
                    INSERT INTO assignments (request_id, phase, unit_id, worker_id, rank, input_tokens, cached_tokens,
                        context_tokens, max_new_tokens, cost, rank_tokens, rank_requests, rank_cost, unit_mean_cost,
                        unit_max_cost, telemetry_age_seconds, policy, assigned_at)
                    SELECT id, ph, u, w, r, NULLIF(it, -1), NULLIF(ct, -1), NULLIF(xt, -1), NULLIF(mn, -1), c, rt, rr,
                           rc, um, ux, NULLIF(age, -1), p, at
                    FROM unnest(\(a.map(\.requestID)), \(a.map(\.phase.rawValue)), \(a.map(\.unit)),
                                \(a.map(\.worker)), \(a.map(\.rank)), \(a.map { $0.inputTokens ?? -1 }),
                                \(a.map { $0.cachedTokens ?? -1 }), \(a.map { $0.contextTokens ?? -1 }),
                                \(a.map { $0.maxNewTokens ?? -1 }), \(a.map(\.cost)), \(a.map(\.rankTokens)),
                                \(a.map(\.rankRequests)), \(a.map(\.rankCost)), \(a.map(\.unitMeanCost)),
                                \(a.map(\.unitMaxCost)), \(a.map { $0.telemetryAgeSeconds ?? -1 }), \(a.map(\.policy)),
                                \(a.map(\.assignedAt)))
                         AS t(id, ph, u, w, r, it, ct, xt, mn, c, rt, rr, rc, um, ux, age, p, at)
                    """, logger: logger)
            }
            if !batch.finishes.isEmpty {
                let f = batch.finishes
                try await connection.query(
                    """
                    UPDATE assignments a SET finished_at = f.at
                    FROM unnest(\(f.map(\.requestID)), \(f.map(\.phase.rawValue)), \(f.map(\.at))) AS f(id, ph, at)
                    WHERE a.request_id = f.id AND a.phase = f.ph AND a.finished_at IS NULL
                      AND a.assigned_at <= f.at
                    """, logger: logger)
            }
            if !batch.lastSeen.isEmpty {
                let seen = batch.lastSeen.sorted { $0.key < $1.key }
                try await connection.query(
                    """
                    UPDATE workers SET last_seen = GREATEST(workers.last_seen, v.seen)
                    FROM unnest(\(seen.map(\.key)), \(seen.map(\.value))) AS v(id, seen)
                    WHERE workers.id = v.id
                    """, logger: logger)
            }
        }
    }

    @discardableResult
    /// One fenced transaction per table: only the leader prunes.
    public func pruneTelemetry(before cutoff: Date) async throws -> Int {
        var removed = 0
        for table in [
            "telemetry_samples WHERE received_at", "expert_load_windows WHERE window_end",
            "assignments WHERE assigned_at",
        ] {
            removed += try await transaction { connection in
                let rows = try await connection.query(
                    "WITH gone AS (DELETE FROM \(unescaped: table) < \(cutoff) RETURNING 1) SELECT count(*) FROM gone",
                    logger: logger
                ).collect()
                return try rows.first?.decode(Int.self) ?? 0
            }
        }
        return removed
    }

    public func telemetrySamples(worker: String, limit: Int) async throws -> [TelemetrySample] {
        try await guarded {
            let rows = try await client.query(
                """
                SELECT * FROM (
                    SELECT worker_id, unit_id, seq, sent_at, received_at, prefill_queued_tokens,
                           prefill_queued_requests, prefill_attention_work, decode_kv_tokens_used, decode_kv_capacity,
                           decode_running_requests
                    FROM telemetry_samples WHERE worker_id = \(worker) ORDER BY received_at DESC, seq DESC LIMIT \(limit)
                ) newest ORDER BY received_at, seq
                """, logger: logger)
            var samples: [TelemetrySample] = []
            for try await (w, u, seq, sentAt, receivedAt, pt, pr, pw, dk, dc, dr) in rows.decode(
                (String, String, Int, Date, Date, Int?, Int?, Int?, Int?, Int?, Int?).self)
            {
                let prefill = pt.map { PrefillLoad(queuedTokens: $0, queuedRequests: pr ?? 0, attentionWork: pw ?? 0) }
                let decode = dk.map { DecodeLoad(kvTokensUsed: $0, kvTokensCapacity: dc ?? 0, runningRequests: dr ?? 0) }
                samples.append(
                    TelemetrySample(
                        worker: w, unit: u, seq: seq, sentAt: sentAt, receivedAt: receivedAt, prefill: prefill,
                        decode: decode))
            }
            return samples
        }
    }

    public func expertLoadWindows(unit: String, since: Date) async throws -> [ExpertLoadWindow] {
        try await guarded {
            let rows = try await client.query(
                """
                SELECT unit_id, window_start, window_end, placement_version, reports, slot_tokens::text
                FROM expert_load_windows WHERE unit_id = \(unit) AND window_end >= \(since) ORDER BY window_end
                """, logger: logger)
            var windows: [ExpertLoadWindow] = []
            for try await (u, start, end, version, reports, table) in rows.decode(
                (String, Date, Date, Int, Int, String).self)
            {
                windows.append(
                    ExpertLoadWindow(
                        unit: u, windowStart: start, windowEnd: end, placementVersion: version, reports: reports,
                        slotTokens: try JSONDecoder().decode([[Int]].self, from: Data(table.utf8))))
            }
            return windows
        }
    }
}
