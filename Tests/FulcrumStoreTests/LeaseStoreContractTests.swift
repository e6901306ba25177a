import FulcrumCore
import FulcrumStore
import FulcrumTestSupport
import Foundation
import PostgresNIO
import Testing

/// `LeaseStore`: one leader among the replicas, by a lease whose epoch only grows.
@Suite("Store contract: leader's lease")
struct LeaseStoreContractTests {
    @Test(arguments: StoreKind.available)
    func oneReplicaHoldsTheLeaseUntilItExpiresOrIsHandedOver(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let untouched = try await store.lease()
            #expect(untouched.epoch == 0 && untouched.expired)
            // a takes it; b, asking while it runs, is told a holds it.
            let taken = try await store.claimLease(replica: "a", url: "http://a:8080", heldEpoch: nil, duration: .seconds(30))
            #expect(taken.holder == "a" && taken.epoch == 1 && !taken.expired && taken.holderURL == "http://a:8080")
            let refused = try await store.claimLease(replica: "b", url: "http://b:8080", heldEpoch: nil, duration: .seconds(30))
            #expect(refused.holder == "a" && refused.epoch == 1)
            // a renews under its epoch; b cannot renew what it never held.
            let renewed = try await store.claimLease(replica: "a", url: "http://a:8080", heldEpoch: 1, duration: .seconds(30))
            #expect(renewed.holder == "a" && renewed.epoch == 1 && renewed.expiresAt >= taken.expiresAt)
            #expect(try await store.claimLease(replica: "b", url: "http://b:8080", heldEpoch: 1, duration: .seconds(30)).holder == "a")
            // Handed over: b takes it at once, under a new epoch; a's renewal under the old one is refused.
            try await store.releaseLease(replica: "a", epoch: 1)
            let handed = try await store.claimLease(replica: "b", url: "http://b:8080", heldEpoch: nil, duration: .seconds(30))
            #expect(handed.holder == "b" && handed.epoch == 2)
            let late = try await store.claimLease(replica: "a", url: "http://a:8080", heldEpoch: 1, duration: .seconds(30))
            #expect(late.holder == "b" && late.epoch == 2)
            // A release by a replica that does not hold it changes nothing.
            try await store.releaseLease(replica: "a", epoch: 2)
            let after = try await store.lease()
            #expect(after.holder == "b" && !after.expired)
        }
    }

    @Test(arguments: StoreKind.available)
    func anExpiredLeaseIsTakenUnderANewEpochAndResumedByItsHolderIfNobodyTookIt(kind: StoreKind) async throws {
        try await kind.withStore { store in
            _ = try await store.claimLease(replica: "a", url: "u", heldEpoch: nil, duration: .milliseconds(100))
            #expect(try await waitUntil(within: .seconds(5)) { try await store.lease().expired })
            // Nobody took it: a resumes under the same epoch (its writes made meanwhile stay valid).
            let resumed = try await store.claimLease(replica: "a", url: "u", heldEpoch: 1, duration: .milliseconds(100))
            #expect(resumed.holder == "a" && resumed.epoch == 1 && !resumed.expired)
            #expect(try await waitUntil(within: .seconds(5)) { try await store.lease().expired })
            let taken = try await store.claimLease(replica: "b", url: "v", heldEpoch: nil, duration: .seconds(30))
            #expect(taken.holder == "b" && taken.epoch == 2)
        }
    }

    @Test(arguments: StoreKind.available)
    func aReplicaIDIsRefusedWhileAnotherProcessUsesIt(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let first = ReplicaRecord(id: "a", url: "http://a", instance: UUID(), startedAt: Date(), seenAt: Date())
            let second = ReplicaRecord(id: "a", url: "http://a2", instance: UUID(), startedAt: Date(), seenAt: Date())
            try await store.announce(first, liveWithin: .seconds(30))
            try await store.announce(first, liveWithin: .seconds(30))
            await #expect(throws: ReplicaIDInUse.self) { try await store.announce(second, liveWithin: .seconds(30)) }
            try await store.announce(
                ReplicaRecord(id: "b", url: "http://b", instance: UUID(), startedAt: Date(), seenAt: Date()), liveWithin: .seconds(30))
            #expect(try await store.replicas(seenWithin: .seconds(30)).map(\.id) == ["a", "b"])
            #expect(try await store.replicas(seenWithin: .seconds(30)).first?.url == "http://a")
            // Once the first has not been heard from within the window, the id is free again.
            #expect(try await waitUntil(within: .seconds(5)) {
                (try? await store.announce(second, liveWithin: .milliseconds(50))) != nil
            })
            #expect(try await store.replicas(seenWithin: .seconds(30)).first?.url == "http://a2")
        }
    }

    /// Fencing: once another replica has taken the lease, the old leader's writes are refused in their own
    /// transaction, and the store is left as it was.
    @Test(.enabled(if: TestDatabases.serverURL != nil, "needs PostgreSQL: DATABASE_URL, which scripts/test sets"))
    func aWriteUnderAnEpochThatWasTakenOverIsRefused() async throws {
        try await withTestDatabase { url in
            try await withPostgresClient(url, maxConnections: 4, logger: TestDatabases.logger) { client in
                let migrations = try Migration.bundled()
                let (fenceA, fenceB) = (Fence(), Fence())
                let a = PostgresStore(client: client, migrations: migrations, logger: TestDatabases.logger, fence: fenceA)
                let b = PostgresStore(client: client, migrations: migrations, logger: TestDatabases.logger, fence: fenceB)
                // Not leading yet: refused.
                await #expect(throws: NotLeader.self) { try await a.createUnit(Fixtures.unit("early")) }
                fenceA.set(try await a.claimLease(replica: "a", url: "u", heldEpoch: nil, duration: .milliseconds(200)).epoch)
                try await a.createUnit(Fixtures.unit("by-a"))
                #expect(try await waitUntil(within: .seconds(5)) { try await b.lease().expired })
                let taken = try await b.claimLease(replica: "b", url: "v", heldEpoch: nil, duration: .seconds(30))
                #expect(taken.epoch == 2 && taken.holder == "b")
                fenceB.set(taken.epoch)
                // a still believes it leads (paused, partitioned): every write it makes is refused.
                await #expect(throws: NotLeader.self) { try await a.createUnit(Fixtures.unit("late")) }
                await #expect(throws: NotLeader.self) {
                    try await a.appendAudit(AuditEntry(at: Date(), actor: "a", action: "x", target: "y", reason: nil, before: nil, after: nil))
                }
                try await b.createUnit(Fixtures.unit("by-b"))
                #expect(try await b.units().map(\.id) == ["by-a", "by-b"])
                #expect(try await b.audit(AuditQuery()).isEmpty)
            }
        }
    }

    /// The locks behind fencing: a fenced write in flight (FOR KEY SHARE) holds a takeover up, but not a renewal.
    @Test(.enabled(if: TestDatabases.serverURL != nil, "needs PostgreSQL: DATABASE_URL, which scripts/test sets"))
    func aTakeoverWaitsForAFencedWriteInFlightAndARenewalDoesNot() async throws {
        try await withTestDatabase { url in
            try await withPostgresClient(url, maxConnections: 4, logger: TestDatabases.logger) { client in
                let store = PostgresStore(client: client, migrations: try Migration.bundled(), logger: TestDatabases.logger)
                _ = try await store.claimLease(replica: "a", url: "u", heldEpoch: nil, duration: .milliseconds(300))
                try await client.withConnection { writer in
                    try await writer.query("BEGIN", logger: TestDatabases.logger)
                    try await writer.query("SELECT epoch FROM leadership WHERE singleton FOR KEY SHARE", logger: TestDatabases.logger)
                    let renewed = try await store.claimLease(replica: "a", url: "u", heldEpoch: 1, duration: .milliseconds(300))
                    #expect(renewed.holder == "a" && renewed.epoch == 1 && !renewed.tookOver)
                    #expect(try await waitUntil(within: .seconds(5)) { try await store.lease().expired })
                    // b may take the expired lease, but not while the write is open: it gives up at its lock timeout.
                    await #expect(throws: (any Error).self) {
                        try await store.claimLease(replica: "b", url: "v", heldEpoch: nil, duration: .milliseconds(300))
                    }
                    #expect(try await store.lease().epoch == 1)
                    try await writer.query("COMMIT", logger: TestDatabases.logger)
                }
                let taken = try await store.claimLease(replica: "b", url: "v", heldEpoch: nil, duration: .seconds(30))
                #expect(taken.holder == "b" && taken.epoch == 2 && taken.tookOver)
            }
        }
    }
}
