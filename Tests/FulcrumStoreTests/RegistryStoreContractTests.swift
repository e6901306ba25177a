import FulcrumCore
import FulcrumStore
import FulcrumTestSupport
import Foundation
import Testing

/// `RegistryStore` (and `StoreHealth`): one behaviour for every store. Each contract test runs against the
/// in-memory store and a real PostgreSQL.
@Suite("Store contract: registry")
struct RegistryStoreContractTests {
    @Test(arguments: StoreKind.available)
    func createdUnitIsReadBack(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let unit = Fixtures.unit()
            try await store.createUnit(unit)
            try await store.createUnit(Fixtures.unit("decode-a"))
            let read = try #require(try await store.unit(unit.id))
            #expect(read.id == unit.id && read.role == unit.role && read.model == unit.model)
            #expect(read.nodes == 2 && read.gpusPerNode == 4 && read.redundantExperts == 8)
            #expect(read.createdAt.isClose(to: unit.createdAt))
            #expect(try await store.units().map(\.id) == ["decode-a", "prefill-a"])
            #expect(try await store.unit("missing") == nil)
        }
    }

    @Test(arguments: StoreKind.available)
    func listsAreInByteOrderWhateverTheDatabaseLocale(kind: StoreKind) async throws {
        try await kind.withStore { store in
            for id in ["a", "B", "_y", "-z", "a.b", "A"] { try await store.createUnit(Fixtures.unit(id)) }
            #expect(try await store.units().map(\.id) == ["-z", "A", "B", "_y", "a", "a.b"])
            for (id, unit) in [("w-b", "a"), ("W-a", "B"), ("w-a", "-z")] {
                _ = try await store.registerWorker(Fixtures.registration(id, unit: unit), at: Fixtures.t0)
            }
            #expect(try await store.workers(unit: nil, state: nil).map(\.id) == ["w-a", "W-a", "w-b"])
        }
    }

    @Test(arguments: StoreKind.available)
    func duplicateUnitIsRefusedAndTheFirstKept(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            var other = Fixtures.unit()
            other.role = .decode
            await #expect(throws: RegistryError.unitExists("prefill-a")) { try await store.createUnit(other) }
            #expect(try await store.unit("prefill-a")?.role == .prefill)
            #expect(try await store.units().count == 1)
        }
    }

    @Test(arguments: StoreKind.available)
    func firstRegistrationCreatesAnActiveWorkerAndRecordsIt(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            let outcome = try await store.registerWorker(
                Fixtures.registration("w-1-2", node: 1, gpu: 2), at: Fixtures.t0)
            #expect(outcome.created)
            #expect(outcome.worker.rank == 6)
            #expect(outcome.worker.state == .active)
            let stored = try #require(try await store.worker("w-1-2"))
            #expect(stored.rank == 6 && stored.node == 1 && stored.gpu == 2 && stored.unit == "prefill-a")
            #expect(stored.capacity == WorkerCapacity(kvTokens: 500_000, maxBatchTokens: 16_384))
            #expect(stored.registeredAt.isClose(to: Fixtures.t0) && Fixtures.t0.isClose(to: stored.lastSeen))
            let history = try await store.workerHistory("w-1-2")
            #expect(history.count == 1)
            #expect(history.first?.from == nil && history.first?.to == .active && history.first?.reason == "registered")
        }
    }

    @Test(arguments: StoreKind.available)
    func registeringAgainIsIdempotent(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            _ = try await store.registerWorker(Fixtures.registration("w0"), at: Fixtures.t0)
            let later = Fixtures.t0.addingTimeInterval(60)
            var again = Fixtures.registration("w0")
            again.capacity.kvTokens = 600_000
            let outcome = try await store.registerWorker(again, at: later)
            #expect(!outcome.created)
            #expect(outcome.change == nil)
            let stored = try #require(try await store.worker("w0"))
            #expect(stored.registeredAt.isClose(to: Fixtures.t0))
            #expect(later.isClose(to: stored.lastSeen))
            #expect(stored.capacity.kvTokens == 600_000)
            #expect(try await store.workerHistory("w0").count == 1)
            #expect(try await store.workers(unit: nil, state: nil).count == 1)
        }
    }

    @Test(arguments: StoreKind.available)
    func registrationIntoUnknownUnitChangesNothing(kind: StoreKind) async throws {
        try await kind.withStore { store in
            await #expect(throws: RegistryError.unitNotFound("nope")) {
                try await store.registerWorker(Fixtures.registration("w0", unit: "nope"), at: Fixtures.t0)
            }
            await #expect(throws: RegistryError.workerNotFound("w0")) { try await store.workerHistory("w0") }
            let stored = try await store.worker("w0")
            #expect(stored == nil)
        }
    }

    @Test(arguments: StoreKind.available)
    func registrationOutsideTheUnitShapeIsRefused(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            await #expect(throws: RegistryError.invalid(ValidationError(field: "node", "must be between 0 and 1, got 2"))) {
                try await store.registerWorker(Fixtures.registration("w0", node: 2), at: Fixtures.t0)
            }
            await #expect(throws: RegistryError.invalid(ValidationError(field: "gpu", "must be between 0 and 3, got 4"))) {
                try await store.registerWorker(Fixtures.registration("w0", gpu: 4), at: Fixtures.t0)
            }
            #expect(try await store.workers(unit: nil, state: nil).isEmpty)
        }
    }

    @Test(arguments: StoreKind.available)
    func aLiveWorkerHoldsItsGpuUntilItDies(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            _ = try await store.registerWorker(Fixtures.registration("old", node: 1, gpu: 1), at: Fixtures.t0)
            await #expect(throws: RegistryError.slotTaken(unit: "prefill-a", node: 1, gpu: 1, heldBy: "old")) {
                try await store.registerWorker(Fixtures.registration("new", node: 1, gpu: 1), at: Fixtures.t0)
            }
            #expect(try await store.worker("new") == nil)

            try await store.setWorkerState("old", to: .dead, reason: "missed heartbeats", at: Fixtures.t0)
            let outcome = try await store.registerWorker(
                Fixtures.registration("new", node: 1, gpu: 1), at: Fixtures.t0)
            #expect(outcome.created)
            // The dead worker cannot come back while its GPU is taken.
            await #expect(throws: RegistryError.slotTaken(unit: "prefill-a", node: 1, gpu: 1, heldBy: "new")) {
                try await store.setWorkerState("old", to: .active, reason: "reported", at: Fixtures.t0)
            }
            await #expect(throws: RegistryError.slotTaken(unit: "prefill-a", node: 1, gpu: 1, heldBy: "new")) {
                try await store.registerWorker(Fixtures.registration("old", node: 1, gpu: 1), at: Fixtures.t0)
            }
            #expect(try await store.worker("old")?.state == .dead)
        }
    }

    @Test(arguments: StoreKind.available)
    func deadWorkerThatRegistersAgainIsActive(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            _ = try await store.registerWorker(Fixtures.registration("w0"), at: Fixtures.t0)
            try await store.setWorkerState("w0", to: .dead, reason: "silent for 10s", at: Fixtures.t0)
            let outcome = try await store.registerWorker(Fixtures.registration("w0"), at: Fixtures.t0)
            #expect(outcome.worker.state == .active)
            #expect(try await store.worker("w0")?.state == .active)
            let history = try await store.workerHistory("w0")
            #expect(history.map(\.to) == [.active, .dead, .active])
            #expect(history.map(\.reason) == ["registered", "silent for 10s", "re-registered"])
        }
    }

    @Test(arguments: StoreKind.available)
    func reRegistrationKeepsAnOperatorsCordon(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            _ = try await store.registerWorker(Fixtures.registration("w0"), at: Fixtures.t0)
            try await store.setWorkerState("w0", to: .cordoned, reason: "ECC errors", at: Fixtures.t0)
            let outcome = try await store.registerWorker(Fixtures.registration("w0"), at: Fixtures.t0)
            #expect(outcome.worker.state == .cordoned)
            #expect(try await store.worker("w0")?.state == .cordoned)
        }
    }

    @Test(arguments: StoreKind.available)
    func stateChangesAreRecordedOnceWithTheirReason(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            _ = try await store.registerWorker(Fixtures.registration("w0"), at: Fixtures.t0)
            let at = Fixtures.t0.addingTimeInterval(5)
            let change = try await store.setWorkerState("w0", to: .draining, reason: "scale down", at: at)
            #expect(change?.from == .active && change?.to == .draining)
            #expect(try await store.setWorkerState("w0", to: .draining, reason: "again", at: at) == nil)
            let history = try await store.workerHistory("w0")
            #expect(history.count == 2)
            #expect(history.last?.reason == "scale down" && history.last?.from == .active)
            #expect(history.last?.at.isClose(to: at) == true)
            await #expect(throws: RegistryError.workerNotFound("ghost")) {
                try await store.setWorkerState("ghost", to: .dead, reason: "x", at: at)
            }
        }
    }

    @Test(arguments: StoreKind.available)
    func workersAreFilteredAndOrderedByUnitThenRank(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit("a"))
            try await store.createUnit(Fixtures.unit("b"))
            for (id, unit, node, gpu) in [("b1", "b", 1, 0), ("a3", "a", 0, 3), ("b0", "b", 0, 0), ("a0", "a", 0, 0)] {
                _ = try await store.registerWorker(
                    Fixtures.registration(id, unit: unit, node: node, gpu: gpu), at: Fixtures.t0)
            }
            try await store.setWorkerState("a3", to: .cordoned, reason: "test", at: Fixtures.t0)
            #expect(try await store.workers(unit: nil, state: nil).map(\.id) == ["a0", "a3", "b0", "b1"])
            #expect(try await store.workers(unit: "b", state: nil).map(\.id) == ["b0", "b1"])
            #expect(try await store.workers(unit: nil, state: .cordoned).map(\.id) == ["a3"])
            #expect(try await store.workers(unit: "b", state: .cordoned).isEmpty)
        }
    }

    @Test(arguments: StoreKind.available)
    func unitWithLiveWorkersCannotBeDeleted(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            _ = try await store.registerWorker(Fixtures.registration("w0"), at: Fixtures.t0)
            _ = try await store.registerWorker(Fixtures.registration("w1", gpu: 1), at: Fixtures.t0)
            try await store.setWorkerState("w1", to: .draining, reason: "scale down", at: Fixtures.t0)
            await #expect(throws: RegistryError.unitHasLiveWorkers(unit: "prefill-a", live: 2)) {
                try await store.deleteUnit("prefill-a")
            }
            #expect(try await store.unit("prefill-a") != nil)
            #expect(try await store.workers(unit: "prefill-a", state: nil).count == 2)

            try await store.setWorkerState("w0", to: .dead, reason: "gone", at: Fixtures.t0)
            try await store.setWorkerState("w1", to: .dead, reason: "gone", at: Fixtures.t0)
            try await store.deleteUnit("prefill-a")
            #expect(try await store.unit("prefill-a") == nil)
            #expect(try await store.worker("w0") == nil)
            // The history of what happened outlives the unit.
            #expect(try await store.workerHistory("w0").map(\.to) == [.active, .dead])
            await #expect(throws: RegistryError.unitNotFound("prefill-a")) { try await store.deleteUnit("prefill-a") }
        }
    }

    @Test(arguments: StoreKind.available)
    func concurrentRegistrationsForOneGpuLetExactlyOneWin(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            let results = await withTaskGroup(of: Result<RegistrationOutcome, any Error>.self) { group in
                for index in 0..<12 {
                    group.addTask {
                        do {
                            return .success(
                                try await store.registerWorker(
                                    Fixtures.registration("racer-\(index)", node: 1, gpu: 3), at: Fixtures.t0))
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let winners = results.compactMap { try? $0.get() }
            #expect(winners.count == 1)
            for case .failure(let error) in results {
                guard case RegistryError.slotTaken(_, 1, 3, let holder) = error else {
                    Issue.record("unexpected error \(error)")
                    continue
                }
                #expect(holder == winners.first?.worker.id)
            }
            #expect(try await store.workers(unit: "prefill-a", state: nil).count == 1)
        }
    }

    @Test(arguments: StoreKind.available)
    func concurrentFirstRegistrationsOfOneWorkerCreateItOnce(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            let outcomes = try await withThrowingTaskGroup(of: RegistrationOutcome.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await store.registerWorker(Fixtures.registration("w0"), at: Fixtures.t0) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.count { $0.created } == 1)
            #expect(try await store.workerHistory("w0").count == 1)
        }
    }

    @Test(arguments: StoreKind.available)
    func anEmptyStoreIsReady(kind: StoreKind) async throws {
        try await kind.withStore { store in
            #expect(await store.readiness() == .ready)
        }
    }

    @Test func postgresIsAvailableWhenRequired() {
        if TestDatabases.required {
            #expect(StoreKind.available.contains(.postgres), "FULCRUM_REQUIRE_POSTGRES=1 but no local DATABASE_URL")
        }
    }
}
