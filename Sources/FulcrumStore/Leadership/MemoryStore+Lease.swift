import FulcrumCore
import Foundation
import Synchronization

/// The same lease in memory. A memory store serves one process, so nothing is fenced; this keeps the contract
/// (and a single replica's view of itself) the same as on PostgreSQL.
extension MemoryStore: LeaseStore {
    public func claimLease(replica: String, url: String, heldEpoch: Int64?, duration: Duration) async throws -> Lease {
        let now = Date()
        return state.withLock { state in
            var lease = state.lease
            let expired = lease.expiresAt <= now
            if lease.holder == replica, lease.epoch == heldEpoch {
                lease.expiresAt = now.addingTimeInterval(duration.seconds)
                lease.holderURL = url
                lease.expired = false
            } else if expired {
                lease = Lease(
                    epoch: lease.epoch + 1, holder: replica, holderURL: url,
                    expiresAt: now.addingTimeInterval(duration.seconds), expired: false)
                state.lease = lease
                lease.tookOver = true
                return lease
            } else {
                return Lease(
                    epoch: lease.epoch, holder: lease.holder, holderURL: lease.holderURL, expiresAt: lease.expiresAt,
                    expired: false)
            }
            state.lease = lease
            return lease
        }
    }

    public func releaseLease(replica: String, epoch: Int64) async throws {
        let now = Date()
        state.withLock { state in
            if state.lease.holder == replica, state.lease.epoch == epoch, state.lease.expiresAt > now {
                state.lease.expiresAt = now
            }
        }
    }

    public func lease() async throws -> Lease {
        let now = Date()
        return state.withLock { state in
            var lease = state.lease
            lease.expired = lease.expiresAt <= now
            return lease
        }
    }

    public func announce(_ replica: ReplicaRecord, liveWithin: Duration) async throws {
        let now = Date()
        try state.withLock { state in
            if let known = state.replicas[replica.id], known.instance != replica.instance,
                known.seenAt >= now.addingTimeInterval(-liveWithin.seconds)
            {
                throw ReplicaIDInUse(id: replica.id, url: known.url)
            }
            var record = replica
            record.seenAt = now
            state.replicas[replica.id] = record
        }
    }

    public func retire(_ replica: ReplicaRecord) async throws {
        state.withLock { state in
            if state.replicas[replica.id]?.instance == replica.instance { state.replicas[replica.id] = nil }
        }
    }

    public func replicas(seenWithin within: Duration) async throws -> [ReplicaRecord] {
        let since = Date().addingTimeInterval(-within.seconds)
        return state.withLock { state in
            state.replicas.values.filter { $0.seenAt >= since }.sorted { Array($0.id.utf8).lexicographicallyPrecedes($1.id.utf8) }
        }
    }
}
