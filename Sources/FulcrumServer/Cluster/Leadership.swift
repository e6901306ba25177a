import FulcrumStore
import Foundation
import Synchronization

/// Whether this replica leads, read by every `/v1` request and every background loop. Only the leader answers the
/// API, runs the loops that decide (liveness, rebalancing, drains) and writes; a standby keeps its state loaded and
/// points callers at the leader.
public final class Leadership: Sendable {
    public struct View: Sendable, Equatable {
        public var leading: Bool
        /// The epoch this replica leads under; 0 while it does not.
        public var epoch: Int64
        /// The lease as last read: who leads, their advertised URL, until when.
        public var lease: Lease?
    }

    public let replica: String
    private let advertised: Mutex<String>
    /// Where callers reach this replica: from --advertise-url, or from the address it listens on.
    public var url: String { advertised.withLock { $0 } }
    /// What this process's writes are fenced with.
    public let fence: Fence
    private let leading: Atomic<Bool>
    private let state: Mutex<View>
    private let others = Atomic<Int>(0)

    /// `alone`: one process on a memory store, which leads from the start and has no lease to hold.
    public init(replica: String, url: String, fence: Fence = Fence(), alone: Bool) {
        self.replica = replica
        advertised = Mutex(url)
        self.fence = fence
        leading = Atomic(alone)
        state = Mutex(View(leading: alone, epoch: 0, lease: nil))
    }

    /// A single process that always leads (tests, the memory store).
    public static func alone() -> Leadership { Leadership(replica: "solo", url: "", alone: true) }

    /// Set once the server listens, when the port was chosen by the system (port 0).
    func advertise(_ url: String) { advertised.withLock { $0 = url } }

    public var isLeader: Bool { leading.load(ordering: .acquiring) }

    /// Other replicas the lease loop saw at its last look. A leader that saw none serves on from memory when it
    /// cannot renew (nobody could take over without the database either); one that saw some steps down in time.
    public var othersSeen: Int { others.load(ordering: .relaxed) }
    func saw(others count: Int) { others.store(count, ordering: .relaxed) }
    public var view: View { state.withLock { $0 } }

    /// The advertised URL of the replica that leads, when another one does.
    public var leaderURL: String? {
        state.withLock { view in
            guard let lease = view.lease, !view.leading, !lease.expired, !lease.holder.isEmpty else { return nil }
            return lease.holderURL
        }
    }

    func lead(_ lease: Lease) {
        fence.set(lease.epoch)
        state.withLock { $0 = View(leading: true, epoch: lease.epoch, lease: lease) }
        leading.store(true, ordering: .releasing)
    }

    func renewed(_ lease: Lease) {
        state.withLock { $0.lease = lease }
    }

    /// Stops leading (if it did) and records who does. The fence keeps the epoch last led under: writes already
    /// under way (the writer's last flush at shutdown) still land unless another replica has taken over.
    func follow(_ lease: Lease?) {
        leading.store(false, ordering: .releasing)
        state.withLock { view in
            view.leading = false
            view.epoch = 0
            if let lease { view.lease = lease }
        }
    }
}
