import FulcrumCore
import Foundation
import Testing

@Suite("Decode rank model")
struct DecodeRankModelTests {
    /// The committed rule compares ranks by what each has committed, so every rank must be counted the same way:
    /// Fulcrum's own requests at their contexts, and what the figures show beyond them at the rank's mean KV.
    @Test func committedWorkIsCountedOneWayOnEveryRank() {
        let start = Date(timeIntervalSince1970: 1_000)
        var model = DecodeRankModel(epoch: 0, rate: 20)
        for index in 0..<4 { model.assigned(DecodeRequest(id: "r\(index)", contextTokens: 1_000), at: start) }
        // All four grew to 1,500 tokens; the figures also hold two requests of another router.
        model.observe(
            DecodeLoad(kvTokensUsed: 9_000, kvTokensCapacity: 100_000, runningRequests: 6), sentAt: start + 1,
            defaultRate: 20, admitted: ["r0", "r1", "r2", "r3"])
        let rank = model.rank(now: start + 1, capacity: 100_000)
        #expect(rank.committedRequests == 6)
        #expect(rank.committedTokens == 4_000 + 2 * 9_000 / 6)

        // A full rank (KV capped at capacity) with requests waiting: the same measure, not the capped KV.
        var full = DecodeRankModel(epoch: 0, rate: 20)
        for index in 0..<12 { full.assigned(DecodeRequest(id: "f\(index)", contextTokens: 1_000), at: start) }
        full.observe(
            DecodeLoad(kvTokensUsed: 10_000, kvTokensCapacity: 10_000, runningRequests: 12), sentAt: start + 1,
            defaultRate: 20, admitted: Set((0..<12).map { "f\($0)" }))
        let fullRank = full.rank(now: start + 1, capacity: 10_000)
        #expect(fullRank.committedRequests == 12 && fullRank.committedTokens == 12_000)
    }
}
