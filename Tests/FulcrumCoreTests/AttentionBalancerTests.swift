import FulcrumCore
import Foundation
import Testing

@Suite("Attention balancers")
struct AttentionBalancerTests {
    @Test func attendedPairsFollowTheCausalCount() {
        #expect(StepCost.pairs(cached: 0, from: 0, to: 4) == 10)
        #expect(StepCost.pairs(cached: 100, from: 0, to: 4) == 410)
        #expect(StepCost.attentionWork(cached: 100, newTokens: 4) == 410)
        // Chunks add up to the whole prompt.
        let whole = StepCost.pairs(cached: 7_000, from: 0, to: 50_000)
        let chunks = StepCost.pairs(cached: 7_000, from: 0, to: 16_384) + StepCost.pairs(cached: 7_000, from: 16_384, to: 50_000)
        #expect(abs(whole - chunks) < 1e-6 * whole)
        #expect(StepCost.decodeStep(runningRequests: 10, kvTokens: 148_000) == 20)
    }

    @Test func aPrefillQueueIsChunkedIntoSteps() {
        var rank = PrefillRank(budget: 16_384)
        rank.append(cached: 0, to: 20_000)
        #expect(rank.profile.count == 2 && rank.queuedTokens == 20_000 && rank.steps == 2)
        let first = 16_384 + StepCost.pairs(cached: 0, from: 0, to: 16_384) / StepCost.pairsPerToken
        let second = 3_616 + StepCost.pairs(cached: 0, from: 16_384, to: 20_000) / StepCost.pairsPerToken
        #expect(abs(rank.profile[0] - first) < 1e-6 && abs(rank.profile[1] - second) < 1e-6)
        // The next request starts where the queue ends: the rest of step 1, then step 2.
        rank.append(cached: 1_000, to: 13_000)
        #expect(rank.profile.count == 3 && rank.queuedTokens == 33_000 && rank.queuedRequests == 2)
        let spill = 33_000 - 32_768
        #expect(abs(rank.profile[2] - (Double(spill) + StepCost.pairs(cached: 1_000, from: 13_000 - spill, to: 13_000) / StepCost.pairsPerToken)) < 1e-6)
        // Opaque work spreads its attention evenly over its tokens.
        var opaque = PrefillRank(budget: 1_000)
        opaque.appendOpaque(tokens: 1_500, attentionWork: 1_500 * 14_800)
        #expect(opaque.profile == [2_000, 1_000])
    }

    @Test func equalPromptsSpreadOnePerRankAndBatchesDoNotHerd() {
        var units = [Array(repeating: PrefillRank(budget: 16_384), count: 8)]
        let batch = (0..<8).map { PrefillRequest(id: "r\($0)", inputTokens: 4_000) }
        let first = PrefillBalancer.assign(batch, units: &units)
        #expect(Set(first.compactMap { $0?.rank }).count == 8)
        // A second batch right after sees the first one's queues: again one per rank.
        let second = PrefillBalancer.assign(batch, units: &units)
        #expect(Set(second.compactMap { $0?.rank }).count == 8)
        #expect(units[0].allSatisfy { $0.queuedTokens == 8_000 })
    }

    /// Σ over steps of the costliest rank's cost: what a lock-step unit spends.
    static func lockStepCost(_ ranks: [PrefillRank]) -> Double {
        let steps = ranks.map(\.profile.count).max() ?? 0
        return (0..<steps).reduce(0.0) { sum, step in
            sum + (ranks.map { step < $0.profile.count ? $0.profile[step] : 0 }.max() ?? 0)
        }
    }

    @Test(arguments: 1...8 as ClosedRange<UInt64>)
    func prefillBeatsLeastTokensOnLockStepCost(seed: UInt64) {
        var rng = FulcrumEPLBTests.SplitMix(state: seed)
        // Mooncake-like prompts: mostly a few thousand tokens, some very long, often with a cached prefix.
        let requests = (0..<256).map { index -> PrefillRequest in
            let long = Int.random(in: 0..<10, using: &rng) == 0
            let input = long ? Int.random(in: 20_000...120_000, using: &rng) : Int.random(in: 500...8_000, using: &rng)
            let cached = Int.random(in: 0..<2, using: &rng) == 0 ? Int.random(in: 0..<input, using: &rng) : 0
            return PrefillRequest(id: "r\(index)", inputTokens: input, cachedTokens: cached)
        }
        var ours = [Array(repeating: PrefillRank(budget: 16_384), count: 32)]
        let placements = PrefillBalancer.assign(requests, units: &ours)
        #expect(placements.allSatisfy { $0 != nil })
        // SGLang's dp_min_token: arrival order, onto the rank with the fewest queued tokens.
        var leastTokens = Array(repeating: PrefillRank(budget: 16_384), count: 32)
        for request in requests {
            let rank = leastTokens.indices.min { leastTokens[$0].queuedTokens < leastTokens[$1].queuedTokens } ?? 0
            leastTokens[rank].append(cached: request.cachedTokens, to: request.newTokens)
        }
        #expect(Self.lockStepCost(ours[0]) < Self.lockStepCost(leastTokens))
        // Every token is queued exactly once.
        #expect(ours[0].reduce(0) { $0 + $1.queuedTokens } == requests.reduce(0) { $0 + $1.newTokens })
    }

    @Test func prefillPicksTheLeastLoadedUnitFirst() {
        var busy = PrefillRank(budget: 16_384)
        busy.append(cached: 0, to: 60_000)
        var units = [[busy, busy], [PrefillRank(budget: 16_384), PrefillRank(budget: 16_384)]]
        let placed = PrefillBalancer.assign([PrefillRequest(id: "a", inputTokens: 1_000)], units: &units)
        #expect(placed.first??.unit == 1)
        var none: [[PrefillRank]] = [[]]
        #expect(PrefillBalancer.assign([PrefillRequest(id: "a", inputTokens: 1_000)], units: &none) == [nil])
    }

    @Test func decodeRespectsCapacityAndRefusesOnlyWhatFitsNowhere() {
        var units = [[
            DecodeRank(kvTokens: 90_000, requests: 10, capacity: 100_000),
            DecodeRank(kvTokens: 10_000, requests: 2, capacity: 100_000),
        ]]
        let requests = [
            DecodeRequest(id: "huge", contextTokens: 150_000),
            DecodeRequest(id: "fits-one", contextTokens: 50_000, maxNewTokens: 30_000),
            DecodeRequest(id: "small", contextTokens: 5_000),
        ]
        let placed = DecodeBalancer.assign(requests, units: &units)
        #expect(placed[0] == nil)
        #expect(placed[1]?.rank == 1)
        #expect(placed[2]?.rank == 0 || placed[2]?.rank == 1)
        #expect(units[0].allSatisfy { $0.kvTokens <= $0.capacity })
    }

    @Test func roomForMaxNewTokensIsKeptWithinABatch() {
        // 10,000 free: two requests of 1,000 context + 9,000 to generate cannot both have room for all of it.
        var units = [[DecodeRank(kvTokens: 90_000, requests: 1, capacity: 100_000)]]
        let requests = [
            DecodeRequest(id: "a", contextTokens: 1_000, maxNewTokens: 9_000),
            DecodeRequest(id: "b", contextTokens: 1_000, maxNewTokens: 9_000),
        ]
        // A gateway that offers refused requests again is refused the second; any other caller has it queued.
        var offeredAgain = units
        #expect(DecodeBalancer.decide(requests, units: &offeredAgain, mayHold: [true, true]).map(\.placement?.rank) == [0, nil])
        #expect(offeredAgain[0][0].reserved == 9_000 && offeredAgain[0][0].free == 0)
        let placed = DecodeBalancer.assign(requests, units: &units)
        #expect(placed.map(\.?.rank) == [0, 0] && units[0][0].free == -10_000)
    }

    @Test func aRequestOnlyTheBusiestRankHasRoomForIsHeldBack() {
        // Rank 0 runs many short requests and has room; rank 1 runs few long ones and is full for the moment.
        let start = [
            DecodeRank(kvTokens: 500_000, requests: 300, capacity: 600_000),
            DecodeRank(kvTokens: 599_000, requests: 40, capacity: 600_000),
        ]
        let request = [DecodeRequest(id: "a", contextTokens: 2_000)]
        var units = [start]
        #expect(DecodeBalancer.decide(request, units: &units, mayHold: [true]) == [.heldBack])
        #expect(units == [start])
        // Held long enough (or from a caller that never holds), it is queued on the rank where it costs less, to
        // wait there for room, rather than piled onto the busiest.
        #expect(DecodeBalancer.decide(request, units: &units, mayHold: [false]) == [.placed(.init(unit: 0, rank: 1))])
        // Where the rank with room is not the busiest, nothing is held.
        var calm = [[
            DecodeRank(kvTokens: 500_000, requests: 30, capacity: 600_000),
            DecodeRank(kvTokens: 599_000, requests: 300, capacity: 600_000),
        ]]
        #expect(DecodeBalancer.decide(request, units: &calm, mayHold: [true]) == [.placed(.init(unit: 0, rank: 0))])
    }

    @Test(arguments: 1...6 as ClosedRange<UInt64>)
    func decodeEvensStepCostBetterThanLeastRequests(seed: UInt64) {
        var rng = FulcrumEPLBTests.SplitMix(state: seed)
        let start = (0..<144).map { _ in
            DecodeRank(
                kvTokens: Double(Int.random(in: 0...200_000, using: &rng)), requests: Double(Int.random(in: 0...40, using: &rng)),
                capacity: 600_000)
        }
        let requests = (0..<256).map { DecodeRequest(id: "r\($0)", contextTokens: Int.random(in: 200...30_000, using: &rng)) }
        var units = [start]
        let placed = DecodeBalancer.assign(requests, units: &units)
        #expect(placed.allSatisfy { $0 != nil })
        var baseline = start
        for request in requests {
            let rank = baseline.indices.min { baseline[$0].requests < baseline[$1].requests } ?? 0
            baseline[rank].kvTokens += Double(request.contextTokens)
            baseline[rank].requests += 1
        }
        let ours = units[0].map(\.stepCost).max() ?? 0
        #expect(ours <= baseline.map(\.stepCost).max() ?? 0)
        // No rank is pushed above the costliest rank before the batch unless the batch needed it: the peak is at
        // most the old peak or the mean after the batch plus one request.
        let mean = units[0].reduce(0) { $0 + $1.stepCost } / 144
        let largest = StepCost.decodeStep(runningRequests: 1, kvTokens: 30_000)
        #expect(ours <= max(start.map(\.stepCost).max() ?? 0, mean + largest) + 1e-9)
    }
}
