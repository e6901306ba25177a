import FulcrumCore
import Foundation
import PostgresNIO

extension PostgresStore {
    public func savePlacement(_ placement: Placement, trigger: String) async throws {
        let table = String(decoding: try JSONEncoder().encode(placement.phy2log), as: UTF8.self)
        let inserted = try await guarded {
            try await client.query(
                """
                INSERT INTO placements (unit_id, version, phy2log, trigger, created_at)
                SELECT id, \(placement.version), \(table)::jsonb, \(trigger), \(placement.createdAt)
                FROM units WHERE id = \(placement.unit)
                ON CONFLICT (unit_id, version) DO NOTHING
                RETURNING version
                """, logger: logger
            ).collect()
        }
        guard inserted.isEmpty else { return }
        if try await unit(placement.unit) == nil { throw RegistryError.unitNotFound(placement.unit) }
        throw PlacementStoreError.versionExists(unit: placement.unit, version: placement.version)
    }

    public func latestPlacements() async throws -> [Placement] {
        try await guarded {
            let rows = try await client.query(
                """
                SELECT DISTINCT ON (unit_id) unit_id, version, phy2log::text, created_at FROM placements
                ORDER BY unit_id, version DESC
                """, logger: logger)
            var placements: [Placement] = []
            for try await (unit, version, table, createdAt) in rows.decode((String, Int, String, Date).self) {
                let phy2log = try JSONDecoder().decode([[Int]].self, from: Data(table.utf8))
                placements.append(Placement(unit: unit, version: version, phy2log: phy2log, createdAt: createdAt))
            }
            return placements
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
    public func pruneTelemetry(before cutoff: Date) async throws -> Int {
        try await guarded {
            var removed = 0
            for table in ["telemetry_samples WHERE received_at", "expert_load_windows WHERE window_end"] {
                let rows = try await client.query(
                    "WITH gone AS (DELETE FROM \(unescaped: table) < \(cutoff) RETURNING 1) SELECT count(*) FROM gone",
                    logger: logger
                ).collect()
                removed += try rows.first?.decode(Int.self) ?? 0
            }
            return removed
        }
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
