import FulcrumCore
import FulcrumStore
import Foundation
import Logging
import ServiceLifecycle

/// Holds or waits for the leader's lease. Every `renewEvery` it renews the lease it holds, or takes it once it has
/// expired. Taking it reloads the state from the store (what the old leader wrote) before the API opens. Losing it
/// closes the API at once; so does failing to renew it by `lease - margin` after the last renewal was asked for,
/// when another replica is about to take over: before the lease can expire in the database.
///
/// A leader that was alone at its last look keeps serving from memory when it cannot renew (the database is down:
/// nobody can take over without it), as a single replica always has; its writes wait, and go through once it renews
/// the same epoch. At shutdown a leader hands the lease over.
struct LeaseService: Service {
    struct Settings: Sendable {
        var lease: Duration
        var renewEvery: Duration
        /// Step down this long before the lease would run out by this process's own reckoning: room for a slow
        /// clock and a late wake-up.
        var margin: Duration { renewEvery / 2 }
        /// A replica not heard from for this long is gone (for `GET /v1/cluster` and the replica-id check).
        /// Longer than the lease: a process restarted under the same id gets past the id check only once the old
        /// one's lease has run out, so it takes the lease under a new epoch.
        var replicaLive: Duration { max(lease + renewEvery * 2, renewEvery * 3) }

        init(_ configuration: FulcrumConfiguration) {
            lease = configuration.lease
            renewEvery = configuration.leaseRenewal
        }
    }

    let store: any LeaseStore
    let leadership: Leadership
    let startup: StartupGate
    let settings: Settings
    /// Reloads the state the store holds, before this replica starts to lead.
    let takeOver: @Sendable () async throws -> Void
    /// Answers what waits on this replica (parked polls), once it no longer leads.
    let steppedDown: @Sendable () -> Void
    let clock: any ServiceClock
    let logger: Logger
    let instance = UUID()
    let startedAt = Date()

    func run() async throws {
        let duplicate = try? await cancelWhenGracefulShutdown { await loop() }
        await handOver()
        if let duplicate = duplicate ?? nil { throw duplicate }
    }

    /// Returns early only when another running process keeps using this replica id.
    private func loop() async -> ReplicaIDInUse? {
        // The lease's table exists once start-up has brought the schema up to date.
        await startup.started()
        var validUntil = clock.now
        // The epoch whose state this replica has loaded, waiting to lead under it.
        var loaded: Int64?
        // Whether other replicas announced themselves lately: then one can take over, and a leader that cannot
        // renew must step down in time.
        var others = false
        var duplicateSince: ContinuousClock.Instant?
        while !Task.isCancelled {
            let asked = clock.now
            if leadership.isLeader, asked >= validUntil, others {
                stepDown("the lease was not renewed in time and another replica may take it over")
                loaded = nil
            }
            let held = leadership.isLeader ? leadership.view.epoch : loaded
            let attempt: @Sendable () async throws -> (Lease, [ReplicaRecord]) = { [self] in
                try await store.announce(record(), liveWithin: settings.replicaLive)
                let lease = try await store.claimLease(
                    replica: leadership.replica, url: leadership.url, heldEpoch: held, duration: settings.lease)
                return (lease, try await store.replicas(seenWithin: settings.replicaLive))
            }
            do {
                // Only a leader that others may replace races a deadline: it must step down in time. Anyone else
                // waits for the answer, which comes (or fails) on the pool's own terms.
                let (lease, replicas) =
                    leadership.isLeader && others
                    ? try await withDeadline(max(validUntil - asked, .milliseconds(10)), attempt) : try await attempt()
                duplicateSince = nil
                let otherCount = replicas.count { $0.id != leadership.replica }
                others = otherCount > 0
                leadership.saw(others: otherCount)
                let ours = lease.holder == leadership.replica
                if ours, !lease.tookOver, let held, lease.epoch == held {
                    validUntil = asked + settings.lease - settings.margin
                    if leadership.isLeader {
                        leadership.renewed(lease)
                    } else {
                        lead(lease)
                    }
                } else if !(ours && lease.tookOver) {
                    // Another replica holds it, or a process under this id holds it from before (this one never
                    // takes a lease it did not raise the epoch of: it waits for it to run out).
                    stepDown("replica \(lease.holder) holds the lease (epoch \(lease.epoch))")
                    leadership.follow(lease)
                    loaded = nil
                } else {
                    stepDown("the lease ran out and was taken again")
                    loaded = nil
                    let started = ContinuousClock.now
                    try await takeOver()
                    loaded = lease.epoch
                    logger.info(
                        "took the lease; state loaded",
                        metadata: [
                            "epoch": "\(lease.epoch)", "load_ms": "\(Int((ContinuousClock.now - started).seconds * 1_000))",
                        ])
                    // Lead only while the lease claimed at `asked` has time left; else after the next renewal.
                    if clock.now < asked + settings.lease - settings.margin {
                        validUntil = asked + settings.lease - settings.margin
                        lead(lease)
                    }
                }
            } catch let error as ReplicaIDInUse {
                stepDown("another process uses this replica id")
                loaded = nil
                // A process restarted at once after a crash finds its old self's record: wait for it to age out.
                let since = duplicateSince ?? asked
                duplicateSince = since
                if asked - since > settings.replicaLive * 2 {
                    logger.critical("cannot start: \(error)")
                    return error
                }
                logger.warning("\(error); waiting for it to stop")
            } catch is CancellationError {
                break
            } catch {
                if leadership.isLeader {
                    logger.warning(
                        others ? "cannot renew the lease" : "cannot renew the lease; alone, so serving on from memory",
                        metadata: ["error": "\(error)"])
                } else {
                    logger.debug("cannot read or take the lease", metadata: ["error": "\(error)"])
                }
            }
            let next = asked + settings.renewEvery
            let wake = leadership.isLeader && others ? min(next, max(validUntil, asked + .milliseconds(10))) : next
            guard (try? await clock.sleep(until: wake)) != nil else { break }
        }
        return nil
    }

    private func record() -> ReplicaRecord {
        ReplicaRecord(id: leadership.replica, url: leadership.url, instance: instance, startedAt: startedAt, seenAt: Date())
    }

    private func lead(_ lease: Lease) {
        leadership.lead(lease)
        logger.notice("leading", metadata: ["epoch": "\(lease.epoch)", "replica": "\(leadership.replica)"])
    }

    private func stepDown(_ reason: String) {
        guard leadership.isLeader else { return }
        leadership.follow(nil)
        steppedDown()
        logger.error("stepped down: no longer leading", metadata: ["reason": "\(reason)", "replica": "\(leadership.replica)"])
    }

    /// A planned stop: give the lease up so that a standby takes over at its next try, not after the lease expires.
    /// Also frees this replica's id for its restart.
    private func handOver() async {
        let view = leadership.view
        let leading = view.leading && view.epoch > 0
        if leading {
            leadership.follow(nil)
            steppedDown()
        }
        do {
            try await withDeadline(.seconds(2)) { [store, replica = leadership.replica, record = record()] in
                if leading { try await store.releaseLease(replica: replica, epoch: view.epoch) }
                try await store.retire(record)
            }
            if leading { logger.notice("handed the lease over", metadata: ["epoch": "\(view.epoch)"]) }
        } catch {
            logger.warning(
                leading ? "could not hand the lease over; it expires by itself" : "could not retire this replica's record",
                metadata: ["error": "\(error)"])
        }
    }
}
