import FulcrumCore
import FulcrumServer
import FulcrumStore
import FulcrumTestSupport
import Foundation
import Logging
import Synchronization
import Testing

/// Protocol history whose writes can be switched off, standing in for a database outage in front of a working
/// store. The writer needs nothing else from a store.
final class OutageStore: ProtocolHistoryStore, Sendable {
    let inner: any ProtocolHistoryStore
    let down = Mutex(false)
    /// Writes wait rather than fail, as with a pool waiting for a connection to a database that does not answer.
    let hanging = Mutex(false)

    init(_ inner: any ProtocolHistoryStore) { self.inner = inner }

    func fail() throws { if down.withLock({ $0 }) { throw StoreUnavailable(reason: "simulated outage") } }

    func append(_ batch: TelemetryBatch) async throws {
        _ = try await waitUntil(within: .seconds(3_600), every: .milliseconds(10)) { !hanging.withLock { $0 } }
        try fail()
        try await inner.append(batch)
    }
    func pruneTelemetry(before cutoff: Date) async throws -> Int { try fail(); return try await inner.pruneTelemetry(before: cutoff) }
    func telemetrySamples(worker: String, limit: Int) async throws -> [TelemetrySample] {
        try await inner.telemetrySamples(worker: worker, limit: limit)
    }
    func expertLoadWindows(unit: String, since: Date) async throws -> [ExpertLoadWindow] {
        try await inner.expertLoadWindows(unit: unit, since: since)
    }
}

@Suite("Telemetry writer")
struct TelemetryWriterTests {
    static func sample(_ seq: Int, worker: String = "w0") -> TelemetrySample {
        TelemetrySample(
            worker: worker, unit: "prefill-a", seq: seq, sentAt: Date(), receivedAt: Date(),
            prefill: PrefillLoad(queuedTokens: seq, queuedRequests: 1, attentionWork: seq), decode: nil)
    }

    @Test(arguments: StoreKind.available)
    func anOutageIsBufferedThenWrittenWhenTheDatabaseIsBack(kind: StoreKind) async throws {
        try await kind.withStore { inner in
            let store = OutageStore(inner)
            var settings = TelemetryWriter.Settings()
            settings.capacity = 1_000
            let writer = TelemetryWriter(store: store, settings: settings, logger: TestDatabases.logger)

            store.down.withLock { $0 = true }
            for seq in 1...300 { writer.record(sample: Self.sample(seq), contact: "w0", at: Date()) }
            await writer.flush()
            #expect(writer.stats.buffered == 300 && writer.stats.written == 0 && writer.stats.failedFlushes == 1)
            #expect(writer.stats.lastError != nil)
            await writer.flush()
            #expect(writer.stats.consecutiveFailures == 2 && writer.stats.writingSince == nil)
            #expect(writer.stats.oldestUnwrittenAt != nil)

            store.down.withLock { $0 = false }
            await writer.flush()
            #expect(writer.stats.buffered == 0 && writer.stats.written == 300 && writer.stats.lastError == nil)
            #expect(writer.stats.consecutiveFailures == 0 && writer.stats.oldestUnwrittenAt == nil)
            let stored = try await inner.telemetrySamples(worker: "w0", limit: 1_000)
            #expect(stored.map(\.seq) == Array(1...300), "every sample once, in order")
        }
    }

    /// A database that hangs fails no write: the write in flight and the age of what waits say so at once.
    @Test func aHangingWriteShowsAtOnce() async throws {
        let store = OutageStore(MemoryStore())
        let writer = TelemetryWriter(store: store, logger: TestDatabases.logger)
        let received = Date()
        writer.record(sample: Self.sample(1), contact: "w0", at: received)
        store.hanging.withLock { $0 = true }
        let flushing = Task { await writer.flush() }
        _ = try await waitUntil(within: .seconds(2), every: .milliseconds(10)) { writer.stats.writingSince != nil }
        let stats = writer.stats
        #expect(stats.writingSince != nil && stats.failedFlushes == 0)
        #expect(stats.oldestUnwrittenAt.map { abs($0.timeIntervalSince(received)) < 1 } == true, "the sample being written")
        store.hanging.withLock { $0 = false }
        await flushing.value
        #expect(writer.stats.writingSince == nil && writer.stats.oldestUnwrittenAt == nil && writer.stats.written == 1)
    }

    @Test func aLongOutageDropsTheOldestSamplesAndCountsThem() async throws {
        let inner = MemoryStore()
        let store = OutageStore(inner)
        var settings = TelemetryWriter.Settings()
        settings.capacity = 1_000
        let writer = TelemetryWriter(store: store, settings: settings, logger: TestDatabases.logger)
        store.down.withLock { $0 = true }
        for seq in 1...2_500 { writer.record(sample: Self.sample(seq), contact: "w0", at: Date()) }
        await writer.flush()
        #expect(writer.stats.buffered == 1_000 && writer.stats.dropped == 1_500)
        store.down.withLock { $0 = false }
        await writer.flush()
        #expect(try await inner.telemetrySamples(worker: "w0", limit: 5_000).map(\.seq) == Array(1_501...2_500))
    }

    @Test func expertCountsAreSummedPerUnitAtEachRanksSlots() async throws {
        let store = MemoryStore()
        let estimator = ExpertLoadEstimator()
        let writer = TelemetryWriter(store: store, windows: estimator, logger: TestDatabases.logger)
        let unit = DeploymentUnit(
            id: "u", role: .prefill, nodes: 1, gpusPerNode: 2,
            model: ModelShape(moeLayers: 2, routedExperts: 4, expertGroups: 2), redundantExperts: 0, createdAt: Date())
        try await store.createUnit(unit)
        let start = Date()
        let initial = Placement.initial(for: unit, at: unit.createdAt)
        for (rank, counts) in [(0, [[1, 2], [3, 4]]), (1, [[10, 20], [30, 40]]), (0, [[100, 0], [0, 100]])] {
            estimator.add(
                ExpertWindow(windowStart: start, windowEnd: start.addingTimeInterval(1), slotTokens: counts),
                rank: rank, unit: unit, version: 1, placement: initial)
        }
        // The same pass folded them by expert (the initial table: slot i holds expert i).
        #expect(estimator.estimate(unit: "u", window: .seconds(60))?.weight == [[101, 2, 10, 20], [3, 104, 30, 40]])
        await writer.flush()
        let windows = try await store.expertLoadWindows(unit: "u", since: .distantPast)
        #expect(windows.count == 1)
        #expect(windows.first?.slotTokens == [[101, 2, 10, 20], [3, 104, 30, 40]] && windows.first?.reports == 3)
    }

    @Test func aRolloutKeepsOneWindowPerVersionAndAReshapedUnitStartsAFreshOne() async throws {
        let store = MemoryStore()
        let estimator = ExpertLoadEstimator()
        let writer = TelemetryWriter(store: store, windows: estimator, logger: TestDatabases.logger)
        func unit(gpus: Int) -> DeploymentUnit {
            DeploymentUnit(
                id: "u", role: .prefill, nodes: 1, gpusPerNode: gpus,
                model: ModelShape(moeLayers: 1, routedExperts: 4, expertGroups: 1), redundantExperts: 0,
                createdAt: Date(timeIntervalSince1970: Double(gpus)))
        }
        let small = unit(gpus: 2)
        try await store.createUnit(small)
        let now = Date()
        let window = ExpertWindow(windowStart: now, windowEnd: now, slotTokens: [[1, 1]])
        // Ranks alternate between two versions while a placement rolls out.
        for version in [1, 2, 1, 2, 1, 2] {
            estimator.add(window, rank: version - 1, unit: small, version: version, placement: nil)
        }
        await writer.flush()
        var windows = try await store.expertLoadWindows(unit: "u", since: .distantPast)
        #expect(windows.map(\.placementVersion).sorted() == [1, 2])
        #expect(Set(windows.map(\.slotTokens)) == [[[3, 3, 0, 0]], [[0, 0, 3, 3]]])

        // The unit is deleted and created again with 4 GPUs of one slot: counts no longer fit the old table.
        estimator.forget(unit: "u")
        estimator.add(
            ExpertWindow(windowStart: now, windowEnd: now, slotTokens: [[5]]), rank: 3, unit: unit(gpus: 4), version: 1,
            placement: nil)
        estimator.add(window, rank: 3, unit: unit(gpus: 4), version: 1, placement: nil)  // wrong width: ignored
        await writer.flush()
        windows = try await store.expertLoadWindows(unit: "u", since: .distantPast)
        #expect(windows.count == 3 && windows.contains { $0.slotTokens == [[0, 0, 0, 5]] && $0.reports == 1 })
    }

    /// A restarted Fulcrum folds the stored windows back in, under the tables they were counted with, and does not
    /// balance blind for a whole window.
    @Test func storedWindowsAreFoldedBackInAtStartUp() async throws {
        let unit = DeploymentUnit(
            id: "u", role: .prefill, nodes: 1, gpusPerNode: 2,
            model: ModelShape(moeLayers: 1, routedExperts: 4, expertGroups: 1), redundantExperts: 0, createdAt: Date())
        let now = Date()
        let two = Placement(unit: "u", version: 2, phy2log: [[3, 2, 1, 0]], createdAt: now)
        let windows = [
            ExpertLoadWindow(unit: "u", windowStart: now - 40, windowEnd: now - 30, placementVersion: 1, reports: 2, slotTokens: [[1, 2, 3, 4]]),
            ExpertLoadWindow(unit: "u", windowStart: now - 20, windowEnd: now - 10, placementVersion: 2, reports: 2, slotTokens: [[10, 0, 0, 0]]),
            // A version whose table is unknown, and one older than the retention: skipped.
            ExpertLoadWindow(unit: "u", windowStart: now - 20, windowEnd: now - 10, placementVersion: 7, reports: 2, slotTokens: [[99, 0, 0, 0]]),
            ExpertLoadWindow(unit: "u", windowStart: now - 8_000, windowEnd: now - 7_990, placementVersion: 1, reports: 2, slotTokens: [[99, 0, 0, 0]]),
        ]
        let estimator = ExpertLoadEstimator()
        estimator.restore(windows, unit: unit, placements: [1: Placement.initial(for: unit, at: unit.createdAt), 2: two], now: now)
        let estimate = try #require(estimator.estimate(unit: "u", window: .seconds(60)))
        #expect(estimate.weight == [[1, 2, 3, 14]] && estimate.reports == 4)
        // A shorter window holds only the newer window.
        #expect(estimator.estimate(unit: "u", window: .seconds(15))?.weight == [[0, 0, 0, 10]])
    }
}
