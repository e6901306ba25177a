import FulcrumCore
import Foundation
import PostgresNIO

/// The lease lives in one row (`leadership`), timed by the database's clock. Fenced writes lock it FOR KEY SHARE;
/// a renewal (an UPDATE of non-key columns) does not conflict with them, while a takeover locks it FOR UPDATE first
/// and so waits for them.
extension PostgresStore: LeaseStore {
    public func claimLease(replica: String, url: String, heldEpoch: Int64?, duration: Duration) async throws -> Lease {
        let seconds = duration.seconds
        if let heldEpoch {
            let renewed = try await guarded {
                try await client.query(
                    """
                    UPDATE leadership SET expires_at = clock_timestamp() + make_interval(secs => \(seconds)), holder_url = \(url)
                    WHERE singleton AND holder = \(replica) AND epoch = \(heldEpoch)
                    RETURNING epoch, holder, holder_url, expires_at, false
                    """, logger: logger
                ).collect()
            }
            if let row = renewed.first { return try Self.lease(row) }
        }
        return try await guarded {
            try await client.withTransaction(logger: logger) { connection in
                // A paused old leader inside a fenced write holds the row: give up for now rather than wait on it
                // (the caller tries again), and time the new lease from when the lock was had, not from BEGIN.
                try await connection.query(
                    "SET LOCAL lock_timeout = \(unescaped: String(Int(max(100, seconds * 1_000))))", logger: logger)
                let rows = try await connection.query(
                    """
                    SELECT epoch, holder, holder_url, expires_at, expires_at <= clock_timestamp()
                    FROM leadership WHERE singleton FOR UPDATE
                    """, logger: logger
                ).collect()
                guard let row = rows.first else { throw LeaseMissing() }
                let current = try Self.lease(row)
                guard current.expired else { return current }
                let taken = try await connection.query(
                    """
                    UPDATE leadership SET epoch = epoch + 1, holder = \(replica), holder_url = \(url),
                        expires_at = clock_timestamp() + make_interval(secs => \(seconds))
                    WHERE singleton
                    RETURNING epoch, holder, holder_url, expires_at, false
                    """, logger: logger
                ).collect()
                guard let row = taken.first else { throw LeaseMissing() }
                var lease = try Self.lease(row)
                lease.tookOver = true
                return lease
            }
        }
    }

    public func releaseLease(replica: String, epoch: Int64) async throws {
        try await guarded {
            _ = try await client.query(
                """
                UPDATE leadership SET expires_at = now()
                WHERE singleton AND holder = \(replica) AND epoch = \(epoch) AND expires_at > now()
                """, logger: logger)
        }
    }

    public func lease() async throws -> Lease {
        try await guarded {
            let rows = try await client.query(
                "SELECT epoch, holder, holder_url, expires_at, expires_at <= now() FROM leadership WHERE singleton",
                logger: logger
            ).collect()
            guard let row = rows.first else { throw LeaseMissing() }
            return try Self.lease(row)
        }
    }

    public func announce(_ replica: ReplicaRecord, liveWithin: Duration) async throws {
        let written = try await guarded {
            try await client.query(
                """
                INSERT INTO replicas AS r (id, url, instance, started_at, seen_at)
                VALUES (\(replica.id), \(replica.url), \(replica.instance), \(replica.startedAt), now())
                ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, instance = EXCLUDED.instance,
                    started_at = EXCLUDED.started_at, seen_at = now()
                WHERE r.instance = EXCLUDED.instance OR r.seen_at < now() - make_interval(secs => \(liveWithin.seconds))
                RETURNING id
                """, logger: logger
            ).collect()
        }
        if written.isEmpty {
            let holder = try await replicas(seenWithin: .seconds(86_400 * 365)).first { $0.id == replica.id }
            throw ReplicaIDInUse(id: replica.id, url: holder?.url ?? "unknown")
        }
    }

    public func retire(_ replica: ReplicaRecord) async throws {
        try await guarded {
            _ = try await client.query(
                "DELETE FROM replicas WHERE id = \(replica.id) AND instance = \(replica.instance)", logger: logger)
        }
    }

    public func replicas(seenWithin within: Duration) async throws -> [ReplicaRecord] {
        try await guarded {
            let rows = try await client.query(
                """
                SELECT id, url, instance, started_at, seen_at FROM replicas
                WHERE seen_at >= now() - make_interval(secs => \(within.seconds)) ORDER BY id COLLATE "C"
                """, logger: logger)
            var all: [ReplicaRecord] = []
            for try await (id, url, instance, started, seen) in rows.decode((String, String, UUID, Date, Date).self) {
                all.append(ReplicaRecord(id: id, url: url, instance: instance, startedAt: started, seenAt: seen))
            }
            return all
        }
    }

    /// Checks, inside a write's transaction, that no other replica has taken the lease since this process's epoch.
    /// Locks the row FOR KEY SHARE: a takeover waits for this transaction, and a write after a takeover sees the new
    /// epoch. An expired lease nobody took is no reason to refuse: no other replica has written under another.
    func checkFence(_ fence: Fence, on connection: PostgresConnection) async throws {
        let epoch = fence.epoch
        let rows = try await connection.query(
            "SELECT epoch FROM leadership WHERE singleton FOR KEY SHARE", logger: logger
        ).collect()
        guard let row = rows.first else { throw LeaseMissing() }
        let current = try row.decode(Int64.self)
        guard epoch > 0 else { throw NotLeader(reason: "this replica does not hold the lease") }
        guard current == epoch else {
            throw NotLeader(reason: "the lease passed from epoch \(epoch) to \(current)")
        }
    }

    static func lease(_ row: PostgresRow) throws -> Lease {
        let (epoch, holder, url, expiresAt, expired) = try row.decode((Int64, String, String, Date, Bool).self)
        return Lease(epoch: epoch, holder: holder, holderURL: url, expiresAt: expiresAt, expired: expired)
    }
}

/// The `leadership` row is missing: the schema is not what this build expects.
struct LeaseMissing: Error, CustomStringConvertible {
    var description: String { "the leadership row is missing (migration 0007 not applied?)" }
}
