import Foundation
import Synchronization

/// Who leads the replicas sharing one database, as the database has it.
public struct Lease: Hashable, Sendable {
    /// Raised by one at every change of holder; 0 before any replica has held it.
    public var epoch: Int64
    public var holder: String
    public var holderURL: String
    public var expiresAt: Date
    /// By the database's clock when it was read, so that replicas' clocks need not agree.
    public var expired: Bool
    /// This claim raised the epoch: the caller took the lease just now. Without it a lease held under the caller's
    /// id is not taken to be the caller's: another process may run under that id.
    public var tookOver = false

    public init(epoch: Int64, holder: String, holderURL: String, expiresAt: Date, expired: Bool) {
        self.epoch = epoch
        self.holder = holder
        self.holderURL = holderURL
        self.expiresAt = expiresAt
        self.expired = expired
    }
}

/// A replica as it last announced itself.
public struct ReplicaRecord: Hashable, Sendable {
    public var id: String
    public var url: String
    /// One per process: a second process started with the same id has another.
    public var instance: UUID
    public var startedAt: Date
    public var seenAt: Date

    public init(id: String, url: String, instance: UUID, startedAt: Date, seenAt: Date) {
        self.id = id
        self.url = url
        self.instance = instance
        self.startedAt = startedAt
        self.seenAt = seenAt
    }
}

/// The leader's lease and the replicas seen lately.
public protocol LeaseStore: Sendable {
    /// Renews the lease when `replica` holds it at `heldEpoch`, even when it has expired meanwhile (the epoch
    /// unchanged means no other replica took it); otherwise takes it when it has expired, raising the epoch. Returns the lease as it stands afterwards, whoever holds it. Taking it waits for
    /// writes fenced under the old epoch that are in flight, and every later one sees the new epoch.
    func claimLease(replica: String, url: String, heldEpoch: Int64?, duration: Duration) async throws -> Lease
    /// Ends the lease at once when `replica` holds it at `epoch`, so a standby takes over without waiting for it to
    /// expire (a planned stop).
    func releaseLease(replica: String, epoch: Int64) async throws
    /// The lease as it stands.
    func lease() async throws -> Lease
    /// Records that this process runs as `replica.id`. Throws `ReplicaIDInUse` when another process announced the
    /// same id within `liveWithin`.
    func announce(_ replica: ReplicaRecord, liveWithin: Duration) async throws
    /// Removes this process's record (a planned stop), so that its id is free at once for its restart.
    func retire(_ replica: ReplicaRecord) async throws
    /// Replicas that announced themselves within `within`, by id.
    func replicas(seenWithin within: Duration) async throws -> [ReplicaRecord]
}

/// The epoch this process writes under. Zero when it does not lead: then every fenced write is refused.
public final class Fence: Sendable {
    private let value = Atomic<Int64>(0)

    public init() {}

    public var epoch: Int64 { value.load(ordering: .acquiring) }
    public func set(_ epoch: Int64) { value.store(epoch, ordering: .releasing) }
}

/// A write refused because this process does not hold the lease it would write under: another replica leads now,
/// or this one's lease ran out.
public struct NotLeader: Error, Hashable, Sendable, CustomStringConvertible {
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String { "not the leader: \(reason)" }
}

/// Another running process already uses this replica id.
public struct ReplicaIDInUse: Error, Hashable, Sendable, CustomStringConvertible {
    public var id: String
    public var url: String

    public init(id: String, url: String) {
        self.id = id
        self.url = url
    }

    public var description: String {
        "replica id '\(id)' is in use by another running process (advertising \(url)); give each replica its own --replica-id"
    }
}
