import FulcrumCore
import FulcrumStore
import FulcrumTestSupport
import Foundation
import Testing

/// `PlacementStore`: every published version, the newest per unit, and the newest acknowledgement per worker.
@Suite("Store contract: placements")
struct PlacementStoreContractTests {
    static func placement(_ unit: DeploymentUnit, version: Int, shift: Int = 0) -> Placement {
        let row = (0..<unit.slots).map { ($0 + shift) % unit.model.routedExperts }
        return Placement(
            unit: unit.id, version: version, phy2log: Array(repeating: row, count: unit.model.moeLayers),
            createdAt: Fixtures.t0.addingTimeInterval(Double(version)))
    }

    @Test(arguments: StoreKind.available)
    func placementsKeepEveryVersionAndAnswerTheNewest(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let unit = Fixtures.unit()
            try await store.createUnit(unit)
            try await store.createUnit(Fixtures.unit("other"))
            #expect(try await store.latestPlacements().isEmpty)
            try await store.savePlacement(Self.placement(unit, version: 2, shift: 1), details: .init(trigger: .explicit))
            var third = Self.placement(unit, version: 3, shift: 2)
            third.excludedRanks = [1, 5]
            try await store.savePlacement(third, details: Self.scheduled)
            await #expect(throws: PlacementStoreError.versionExists(unit: unit.id, version: 3)) {
                try await store.savePlacement(Self.placement(unit, version: 3), details: .init(trigger: .manual))
            }
            await #expect(throws: RegistryError.unitNotFound("ghost")) {
                var ghost = Self.placement(unit, version: 2)
                ghost.unit = "ghost"
                try await store.savePlacement(ghost, details: .init(trigger: .manual))
            }
            let latest = try await store.latestPlacements()
            #expect(latest == [third])

            // History: newest first, paged by version, without tables; one version with its table and details.
            let history = try await store.placementHistory(unit: unit.id, before: nil, limit: 10)
            #expect(history.map(\.version) == [3, 2])
            #expect(history.first == PlacementSummary(third, details: Self.scheduled))
            #expect(history.last?.details == PlacementDetails(trigger: .explicit))
            #expect(try await store.placementHistory(unit: unit.id, before: nil, limit: 1).map(\.version) == [3])
            #expect(try await store.placementHistory(unit: unit.id, before: 3, limit: 10).map(\.version) == [2])
            #expect(try await store.placementHistory(unit: unit.id, before: 2, limit: 10).isEmpty)
            #expect(try await store.placementHistory(unit: "other", before: nil, limit: 10).isEmpty)
            #expect(try await store.placement(unit: unit.id, version: 3) == PlacementRecord(placement: third, details: Self.scheduled))
            #expect(try await store.placement(unit: unit.id, version: 4) == nil)
            #expect(try await store.placement(unit: "other", version: 3) == nil)
        }
    }

    static let scheduled = PlacementDetails(
        trigger: .schedule, basedOn: 2,
        prediction: PlacementPrediction(balancednessBefore: 1.31, balancednessAfter: 1.07, improvement: 0.18, moved: 40),
        window: LoadWindowSummary(windowSeconds: 600, spanSeconds: 598.5, reports: 3_210, totalTokens: 1.5e9),
        transfer: PlacementTransfer(transfers: 412, rounds: 44, bytes: 412 * 44_040_192, seconds: 0.0387552, gainSeconds: 27))


    @Test(arguments: StoreKind.available)
    func theNewestAckOfEachWorkerIsKept(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            let acks = [
                PlacementAck(worker: "w0", unit: "prefill-a", version: 2, at: Fixtures.t0),
                PlacementAck(worker: "w0", unit: "prefill-a", version: 1, at: Fixtures.t0),
                PlacementAck(worker: "w1", unit: "prefill-a", version: 1, at: Fixtures.t0),
            ]
            try await store.append(TelemetryBatch(acks: acks))
            try await store.append(TelemetryBatch(acks: [acks[0]]))  // a retried batch is harmless
            #expect(try await store.latestAcks().map { "\($0.worker)@\($0.version)" } == ["w0@2", "w1@1"])
        }
    }
}
