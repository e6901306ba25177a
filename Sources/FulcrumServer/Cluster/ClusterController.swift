import FulcrumStore
import Foundation
import HTTPTypes
import Hummingbird

extension HTTPField.Name {
    /// The leader's advertised URL, on a standby's 503 `not_leader`. A constant, valid header name.
    static let fulcrumLeader = HTTPField.Name("Fulcrum-Leader")!
}

/// `GET /v1/cluster`: the replicas, which one leads, its epoch and lease. Any role may ask, and any replica
/// answers (a standby too: this is how a client finds the leader).
struct ClusterController {
    let leadership: Leadership
    let store: any LeaseStore
    let deadline: StoreDeadline
    let replicaLive: Duration

    struct Replica: ResponseEncodable {
        var id: String
        var url: String
        var leader: Bool
        var startedAt: Date?
        var seenAt: Date?
    }

    struct View: ResponseEncodable {
        /// The replica that answered.
        var replica: String
        var leading: Bool
        var leader: String?
        var leaderURL: String?
        var epoch: Int64
        var leaseExpiresAt: Date?
        /// Other replicas the answering replica's lease loop saw at its last look: a leader that saw none serves on
        /// from memory through a database outage, one that saw some steps down before its lease can run out.
        var othersSeen: Int
        var replicas: [Replica]
    }

    func addRoutes(to group: RouterGroup<FulcrumRequestContext>) {
        group.get { _, _ in try await view() }
    }

    func view() async throws -> View {
        let mine = leadership.view
        let lease = mine.lease
        let known = (try? await deadline.run { [store, replicaLive] in try await store.replicas(seenWithin: replicaLive) }) ?? []
        var replicas = known.map { replica in
            Replica(
                id: replica.id, url: replica.url, leader: lease.map { !$0.expired && $0.holder == replica.id } ?? false,
                startedAt: replica.startedAt, seenAt: replica.seenAt)
        }
        if !replicas.contains(where: { $0.id == leadership.replica }) {
            replicas.append(Replica(id: leadership.replica, url: leadership.url, leader: mine.leading, startedAt: nil, seenAt: nil))
        }
        let leads = lease.flatMap { $0.expired || $0.holder.isEmpty ? nil : $0 }
        return View(
            replica: leadership.replica, leading: mine.leading,
            leader: mine.leading ? leadership.replica : leads?.holder,
            leaderURL: mine.leading ? leadership.url : leads?.holderURL,
            epoch: leads?.epoch ?? mine.epoch, leaseExpiresAt: leads?.expiresAt, othersSeen: leadership.othersSeen,
            replicas: replicas)
    }
}
