import FulcrumCore
import FulcrumStore
import FulcrumTestSupport
import Foundation
import Testing

/// `LedgerStore`: where each request went and when it finished.
@Suite("Store contract: ledger")
struct LedgerStoreContractTests {
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

    /// What a replica taking over reads: the assignments since a moment, oldest first, the newest when capped.
    @Test(arguments: StoreKind.available)
    func recentAssignmentsAreTheNewestSinceAMomentOldestFirst(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let t0 = Fixtures.t0
            let records = (0..<6).map { index in
                Self.record("r\(index)", phase: index.isMultiple(of: 2) ? .prefill : .decode, worker: "w", at: t0.addingTimeInterval(Double(index)))
            }
            try await store.append(
                TelemetryBatch(
                    assignments: records.reversed(),
                    finishes: [RequestFinish(requestID: "r4", phase: .prefill, at: t0.addingTimeInterval(4.5))]))
            let since = try await store.recentAssignments(since: t0.addingTimeInterval(2), limit: 100)
            #expect(since.map(\.requestID) == ["r2", "r3", "r4", "r5"])
            #expect(since.map(\.phase) == [.prefill, .decode, .prefill, .decode])
            #expect(since[2].finishedAt == t0.addingTimeInterval(4.5) && since[3].finishedAt == nil)
            #expect(since[1] == records[3])
            let capped = try await store.recentAssignments(since: t0, limit: 2)
            #expect(capped.map(\.requestID) == ["r4", "r5"])
            #expect(try await store.recentAssignments(since: t0.addingTimeInterval(60), limit: 100).isEmpty)
        }
    }
}
