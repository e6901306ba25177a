import FulcrumCore
import FulcrumStore
import FulcrumTestSupport
import Foundation
import Testing

/// The worker protocol's persistence, on both stores.
@Suite("Store contract: worker protocol")
struct WorkerProtocolStoreTests {
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
    func telemetryBatchesLandWholeAndArePruned(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            _ = try await store.registerWorker(Fixtures.registration("w0"), at: Fixtures.t0)
            let later = Fixtures.t0.addingTimeInterval(30)
            let samples = [
                TelemetrySample(
                    worker: "w0", unit: "prefill-a", seq: 1, sentAt: Fixtures.t0, receivedAt: Fixtures.t0,
                    prefill: PrefillLoad(queuedTokens: 100, queuedRequests: 2, attentionWork: 5_050), decode: nil),
                TelemetrySample(
                    worker: "w0", unit: "prefill-a", seq: 9, sentAt: later, receivedAt: later, prefill: nil,
                    decode: DecodeLoad(kvTokensUsed: 10, kvTokensCapacity: 500_000, runningRequests: 1)),
            ]
            let window = ExpertLoadWindow(
                unit: "prefill-a", windowStart: Fixtures.t0, windowEnd: later, placementVersion: 1, reports: 2,
                slotTokens: [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
            try await store.append(
                TelemetryBatch(
                    samples: samples, windows: [window],
                    acks: [PlacementAck(worker: "w0", unit: "prefill-a", version: 1, at: later)],
                    lastSeen: ["w0": later, "ghost": later]))
            let stored = try await store.telemetrySamples(worker: "w0", limit: 10)
            #expect(stored.map(\.seq) == [1, 9])
            #expect(stored.first?.prefill == samples[0].prefill && stored.first?.decode == nil)
            #expect(stored.last?.decode == samples[1].decode && stored.last?.prefill == nil)
            #expect(try await store.telemetrySamples(worker: "w0", limit: 1).map(\.seq) == [9])
            #expect(try await store.expertLoadWindows(unit: "prefill-a", since: Fixtures.t0).map(\.slotTokens) == [window.slotTokens])
            #expect(try await store.latestAcks().map(\.version) == [1])
            #expect(later.isClose(to: try await store.worker("w0")?.lastSeen))

            // An older contact never moves lastSeen back.
            try await store.append(TelemetryBatch(lastSeen: ["w0": Fixtures.t0]))
            #expect(later.isClose(to: try await store.worker("w0")?.lastSeen))

            #expect(try await store.pruneTelemetry(before: Fixtures.t0.addingTimeInterval(1)) == 1)
            #expect(try await store.telemetrySamples(worker: "w0", limit: 10).map(\.seq) == [9])
            #expect(try await store.pruneTelemetry(before: later.addingTimeInterval(1)) == 2)
            #expect(try await store.expertLoadWindows(unit: "prefill-a", since: Fixtures.t0).isEmpty)
        }
    }

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

extension WorkerProtocolStoreTests {
    static func record(_ id: String, phase: Role, worker: String, at date: Date) -> AssignmentRecord {
        AssignmentRecord(
            requestID: id, phase: phase, unit: "u", worker: worker, rank: 3,
            inputTokens: phase == .prefill ? 9_000 : nil, cachedTokens: phase == .prefill ? 1_000 : nil,
            contextTokens: phase == .decode ? 9_500 : nil, maxNewTokens: phase == .decode ? 500 : nil, cost: 123.5,
            rankTokens: 40_000, rankRequests: 3, rankCost: 41_234.5, unitMeanCost: 30_000, unitMaxCost: 50_000,
            telemetryAgeSeconds: phase == .prefill ? 0.125 : nil, policy: "fulcrum", assignedAt: date)
    }

    @Test(arguments: StoreKind.available)
    func theLedgerAnswersWhereARequestWentAndWhenItFinished(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let t0 = Fixtures.t0
            let prefill = Self.record("req-1", phase: .prefill, worker: "p-3", at: t0)
            let decode = Self.record("req-1", phase: .decode, worker: "d-3", at: t0.addingTimeInterval(2))
            try await store.append(
                TelemetryBatch(
                    assignments: [prefill, decode, Self.record("req-2", phase: .decode, worker: "d-1", at: t0)],
                    finishes: [RequestFinish(requestID: "req-1", phase: .prefill, at: t0.addingTimeInterval(1))]))
            var found = try await store.assignments(requestID: "req-1")
            var finishedPrefill = prefill
            finishedPrefill.finishedAt = t0.addingTimeInterval(1)
            #expect(found == [finishedPrefill, decode])
            // A finish before the assignment, or of an unknown id, changes nothing; a later one lands once.
            try await store.append(
                TelemetryBatch(finishes: [
                    RequestFinish(requestID: "req-1", phase: .decode, at: t0.addingTimeInterval(1)),
                    RequestFinish(requestID: "ghost", phase: .decode, at: t0),
                    RequestFinish(requestID: "req-1", phase: .decode, at: t0.addingTimeInterval(30)),
                ]))
            found = try await store.assignments(requestID: "req-1")
            #expect(found.last?.finishedAt == t0.addingTimeInterval(30))
            #expect(try await store.assignments(requestID: "ghost").isEmpty)
            // A re-used id: the newest assignment answers.
            try await store.append(TelemetryBatch(assignments: [Self.record("req-2", phase: .decode, worker: "d-9", at: t0.addingTimeInterval(60))]))
            #expect(try await store.assignments(requestID: "req-2").map(\.worker) == ["d-9"])
            #expect(try await store.pruneTelemetry(before: t0.addingTimeInterval(10)) >= 2)
            #expect(try await store.assignments(requestID: "req-1").isEmpty)
        }
    }
}
