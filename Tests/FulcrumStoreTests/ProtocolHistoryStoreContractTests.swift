import FulcrumCore
import FulcrumStore
import FulcrumTestSupport
import Foundation
import Testing

/// `ProtocolHistoryStore`: telemetry batches land whole and are pruned by age.
@Suite("Store contract: protocol history")
struct ProtocolHistoryStoreContractTests {
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
}
