@testable import FulcrumCore
import Foundation
import Testing

@Suite("Rebalance planner")
struct RebalancePlannerTests {
    /// 2 nodes x 4 GPUs, 4 MoE layers, 16 experts in 4 groups + 8 redundant = 24 slots, 3 per GPU.
    static let unit = DeploymentUnit(
        id: "u", role: .decode, nodes: 2, gpusPerNode: 4,
        model: ModelShape(moeLayers: 4, routedExperts: 16, expertGroups: 4), redundantExperts: 8,
        createdAt: Date(timeIntervalSince1970: 0))

    static func skewed(seed: UInt64) -> [[Double]] {
        var rng = FulcrumEPLBTests.SplitMix(state: seed)
        return (0..<unit.model.moeLayers).map { _ in
            (0..<unit.model.routedExperts).map { _ in Double(Int.random(in: 0...100, using: &rng) * Int.random(in: 1...20, using: &rng)) }
        }
    }

    static var initial: [[Int]] { Placement.initial(for: unit, at: unit.createdAt).phy2log }

    @Test func loadIsSplitOverServingReplicasOnly() {
        let row = [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]
        let weight: [[Double]] = [[8, 4, 2, 2, 1, 1, 1, 1]]
        let all = PlacementLoad.evaluate([row], weight: weight, slotsPerGpu: 3)
        // GPUs: 4+2+1, 1+1+1, 1+1+4, 2+1+1.
        #expect(all.peaks == [7] && all.peakSum == 7 && all.meanSum == 5 && all.balancedness == 1.4)
        #expect(all.unservedExperts == 0)
        // Rank 0 dead: experts 0, 1, 2 fall to their other replicas; the mean is over three GPUs.
        let rankZeroDead = PlacementLoad.evaluate([row], weight: weight, slotsPerGpu: 3, excludedRanks: [0])
        #expect(rankZeroDead.peaks == [10] && abs(rankZeroDead.meanSum - 20.0 / 3) < 1e-12)
        // Ranks 0 and 3 dead: experts 1 and 2 have nowhere to go.
        #expect(PlacementLoad.evaluate([row], weight: weight, slotsPerGpu: 3, excludedRanks: [0, 3]).unservedExperts == 2)
    }

    @Test(arguments: 1...6 as ClosedRange<UInt64>)
    func aProposalIsNeverWorseOnAnyLayerAndProposingAgainMovesNothing(seed: UInt64) throws {
        let weight = Self.skewed(seed: seed)
        let proposal = try RebalancePlanner.propose(unit: Self.unit, current: Self.initial, weight: weight)
        try Placement.validate(proposal.phy2log, for: Self.unit)
        for (after, before) in zip(proposal.after.peaks, proposal.before.peaks) { #expect(after <= before) }
        #expect(proposal.after.peakSum < proposal.before.peakSum && proposal.improvement > 0)
        #expect(proposal.moved == zip(proposal.phy2log.joined(), Self.initial.joined()).count { $0 != $1 })
        // The hierarchical policy holds: every group's replicas on one node.
        for row in proposal.phy2log {
            let nodeOf = Dictionary(grouping: row.indices, by: { row[$0] / 4 }).mapValues { Set($0.map { $0 / 12 }) }
            #expect(nodeOf.values.allSatisfy { $0.count == 1 })
        }
        let again = try RebalancePlanner.propose(unit: Self.unit, current: proposal.phy2log, weight: weight)
        #expect(again.moved == 0 && again.phy2log == proposal.phy2log && again.improvement == 0)
        #expect(again.layersKept == Self.unit.model.moeLayers)
    }

    @Test(arguments: 1...6 as ClosedRange<UInt64>)
    func deadRanksServeNothingAndKeepTheirSlots(seed: UInt64) throws {
        let weight = Self.skewed(seed: seed)
        let current = try RebalancePlanner.propose(unit: Self.unit, current: Self.initial, weight: weight).phy2log
        let dead: Set<Int> = [Int(seed % 8), Int((seed * 3 + 1) % 8)]
        let proposal = try RebalancePlanner.propose(unit: Self.unit, current: current, weight: weight, excludedRanks: dead)
        #expect(proposal.excludedRanks == dead.sorted())
        try Placement.validate(proposal.phy2log, excludedRanks: proposal.excludedRanks, for: Self.unit)
        #expect(proposal.after.unservedExperts == 0)
        for (new, old) in zip(proposal.phy2log, current) {
            for rank in dead { #expect(new[(rank * 3)..<(rank * 3 + 3)] == old[(rank * 3)..<(rank * 3 + 3)]) }
        }
        // Six serving GPUs of 3 slots: the mean is the layer's tokens over six.
        let means = weight.map { $0.reduce(0, +) / 6 }.reduce(0, +)
        #expect(abs(proposal.after.meanSum - means) < 1e-6 * means)
        // The planner never leaves a layer worse than the old table already is on the survivors.
        if proposal.before.unservedExperts == 0 {
            for (after, before) in zip(proposal.after.peaks, proposal.before.peaks) { #expect(after <= before) }
        }
    }

    @Test func aMovementBudgetIsKept() throws {
        // The initial table mixes groups across nodes: under the hierarchical policy it is solved afresh, within the
        // budget like every other move.
        #expect(try RebalancePlanner.propose(unit: Self.unit, current: Self.initial, weight: Self.skewed(seed: 5), maxMoves: 1).moved <= 1)
        let start = try RebalancePlanner.propose(unit: Self.unit, current: Self.initial, weight: Self.skewed(seed: 5)).phy2log
        let weight = Self.skewed(seed: 11)
        let free = try RebalancePlanner.propose(unit: Self.unit, current: start, weight: weight)
        #expect(free.moved > 6)
        for budget in [1, 6, free.moved / 2, free.moved] {
            let bounded = try RebalancePlanner.propose(unit: Self.unit, current: start, weight: weight, maxMoves: budget)
            #expect(bounded.moved <= budget)
            #expect(bounded.after.peakSum <= bounded.before.peakSum)
            #expect(bounded.moved == zip(bounded.phy2log.joined(), start.joined()).count { $0 != $1 })
        }
    }

    @Test func aBudgetNeverKeepsExpertsWithoutAServingReplica() throws {
        let weight = Self.skewed(seed: 3)
        // Ranks 2 and 3 dead: the initial table holds experts 8-11 there only.
        let proposal = try RebalancePlanner.propose(
            unit: Self.unit, current: Self.initial, weight: weight, excludedRanks: [2, 3], maxMoves: 1)
        #expect(proposal.before.unservedExperts == 4 * 4 && proposal.after.unservedExperts == 0)
        #expect(proposal.moved > 1)
    }

    @Test func tooFewServingSlotsIsAnError() throws {
        let weight = Self.skewed(seed: 1)
        #expect(throws: EPLBError.self) {
            // Two serving GPUs hold 6 slots, fewer than 16 experts.
            try RebalancePlanner.propose(
                unit: Self.unit, current: Self.initial, weight: weight, excludedRanks: [0, 1, 2, 3, 4, 5])
        }
        #expect(throws: EPLBError.self) {
            try RebalancePlanner.propose(unit: Self.unit, current: [[0]], weight: weight)
        }
    }

    /// A global unit of 16 GPUs with 2 slots each (a decode unit's shape, smaller) and a hierarchical one of 4 nodes
    /// x 4 GPUs with 5 slots, 8 layers, 24 experts in 4 groups.
    static func problem(global: Bool, weight: [[Double]]) throws -> EPLBProblem {
        global
            ? try EPLBProblem(weight: weight, replicas: 32, groups: 4, nodes: 4, gpus: 16, policy: .global)
            : try EPLBProblem(weight: weight, replicas: 80, groups: 4, nodes: 4, gpus: 16, policy: .hierarchical)
    }

    static func lognormalLoad(seed: UInt64, layers: Int = 8, experts: Int = 24) -> [[Double]] {
        var rng = FulcrumEPLBTests.SplitMix(state: seed)
        return (0..<layers).map { _ in
            (0..<experts).map { _ in
                let (u1, u2) = (Double.random(in: 1e-12..<1, using: &rng), Double.random(in: 0..<1, using: &rng))
                return 1000 * exp(0.7 * (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
            }
        }
    }

    static func perturbed(_ weight: [[Double]], sigma: Double, seed: UInt64) -> [[Double]] {
        var rng = FulcrumEPLBTests.SplitMix(state: seed)
        return weight.map { row in
            row.map { value in
                let (u1, u2) = (Double.random(in: 1e-12..<1, using: &rng), Double.random(in: 0..<1, using: &rng))
                return value * exp(sigma * (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
            }
        }
    }

    @Test(arguments: [true, false], 1...4 as ClosedRange<UInt64>)
    func barelyChangedLoadMovesLittleAndBalancesLikeAFreshSolve(global: Bool, seed: UInt64) throws {
        let base = try Self.problem(global: global, weight: Self.lognormalLoad(seed: seed))
        let current = FulcrumEPLB.solve(base).phy2log
        let noisy = try Self.problem(global: global, weight: Self.perturbed(base.weight, sigma: 0.02, seed: seed + 100))
        let proposal = try RebalancePlanner.propose(noisy, current: current)
        let fresh = PlacementLoad.evaluate(FulcrumEPLB.solve(noisy).phy2log, weight: noisy.weight, slotsPerGpu: noisy.slotsPerGpu)
        let slots = current.count * noisy.replicas
        #expect(proposal.moved <= slots / 10, "moved \(proposal.moved) of \(slots)")
        #expect(proposal.after.balancedness <= fresh.balancedness * 1.01)
        #expect(proposal.after.peakSum <= proposal.before.peakSum)
        // A fresh solve relabelled onto the table in use moves far more for the same balance.
        let relabelled = MovementMinimizer.relabel(FulcrumEPLB.solve(noisy), previous: current, nodes: global ? 1 : 4)
        #expect(proposal.moved < relabelled.moved.reduce(0, +))
    }

    @Test(arguments: [true, false], 1...4 as ClosedRange<UInt64>)
    func atAnyCostNoLayerEndsAboveDeepSeek(global: Bool, seed: UInt64) throws {
        let before = try Self.problem(global: global, weight: Self.lognormalLoad(seed: seed))
        let after = try Self.problem(global: global, weight: Self.lognormalLoad(seed: seed + 50))
        let current = FulcrumEPLB.solve(before).phy2log
        for dead in [Set<Int>(), [Int(seed % 16)]] {
            let proposal = try RebalancePlanner.propose(after, current: current, excludedRanks: dead, minGainPerMove: 0)
            let serving = (0..<16).filter { !dead.contains($0) }
            let reference = try RebalancePlanner.referencePeaks(after, serving: serving).peaks
            for (peak, deepseek) in zip(proposal.after.peaks, reference) { #expect(peak <= deepseek * (1 + 1e-9)) }
            #expect(proposal.after.unservedExperts == 0)
            #expect(proposal.moved == zip(proposal.phy2log.joined(), current.joined()).enumerated().count { slot, pair in
                pair.0 != pair.1 && !dead.contains(slot % after.replicas / after.slotsPerGpu)
            })
            if !global && dead.isEmpty {
                for row in proposal.phy2log {
                    #expect(RebalancePlanner.groupsPacked(row, experts: 24, groups: 4, slotsPerNode: 20))
                }
            }
        }
    }

    @Test func theBudgetIsSpentOneMoveAtATimeAcrossLayers() throws {
        let before = try Self.problem(global: true, weight: Self.lognormalLoad(seed: 7))
        let after = try Self.problem(global: true, weight: Self.lognormalLoad(seed: 8))
        let current = FulcrumEPLB.solve(before).phy2log
        var last = Double.infinity
        for budget in [0, 1, 2, 4, 8, 16, 64] {
            let proposal = try RebalancePlanner.propose(after, current: current, maxMoves: budget, minGainPerMove: 0)
            #expect(proposal.moved <= budget)
            // More moves never leave the unit worse off here, and a small budget still buys something.
            #expect(proposal.after.peakSum <= last * (1 + 1e-12))
            if budget >= 2 { #expect(proposal.after.peakSum < proposal.before.peakSum) }
            last = proposal.after.peakSum
        }
        // A budget of a few moves spreads over layers rather than rewriting one.
        let few = try RebalancePlanner.propose(after, current: current, maxMoves: 8, minGainPerMove: 0)
        #expect(few.movedPerLayer.count { $0 > 0 } >= 2)
    }
}
