import FulcrumCore
import Foundation
import Testing

@Suite("Migration plan")
struct MigrationPlanTests {
    /// 4 nodes x 4 GPUs, 5 slots each, 3 layers of 24 experts: a table and a shuffled copy of it.
    static func tables(seed: UInt64) -> (old: [[Int]], new: [[Int]]) {
        var rng = FulcrumEPLBTests.SplitMix(state: seed)
        let old = (0..<3).map { _ in (0..<80).map { $0 % 24 }.shuffled(using: &rng) }
        var new = old
        for layer in new.indices {
            for _ in 0..<20 {
                let (a, b) = (Int.random(in: 0..<80, using: &rng), Int.random(in: 0..<80, using: &rng))
                new[layer].swapAt(a, b)
            }
            new[layer][Int.random(in: 0..<80, using: &rng)] = Int.random(in: 0..<24, using: &rng)
        }
        return (old, new)
    }

    @Test(arguments: 1...5 as ClosedRange<UInt64>)
    func everyChangedSlotOnceFromAHolderInRoundsOfOneSendAndOneReceive(seed: UInt64) {
        let (old, new) = Self.tables(seed: seed)
        let dead: Set<Int> = seed.isMultiple(of: 2) ? [3] : []
        let plan = MigrationPlan.make(from: old, to: new, slotsPerGpu: 5, gpusPerNode: 4, excludedRanks: dead)
        var expected = Set<[Int]>()
        for layer in new.indices {
            for slot in new[layer].indices where new[layer][slot] != old[layer][slot] && !dead.contains(slot / 5) {
                expected.insert([layer, slot])
            }
        }
        #expect(Set(plan.transfers.map { [$0.layer, $0.rank * 5 + $0.slot] }) == expected)
        #expect(plan.transfers.count == expected.count && plan.rounds.reduce(0, +) == plan.transfers.count)
        var rounds: [Int: (receivers: Set<Int>, senders: Set<Int>)] = [:]
        for transfer in plan.transfers {
            #expect(new[transfer.layer][transfer.rank * 5 + transfer.slot] == transfer.expert)
            let holders = Set(old[transfer.layer].indices.filter { old[transfer.layer][$0] == transfer.expert && !dead.contains($0 / 5) }.map { $0 / 5 })
                .subtracting([transfer.rank])
            if let source = transfer.source {
                #expect(holders.contains(source))
                // A holder on the receiver's node is preferred when one is free: the source is on the node, or no
                // holder is.
                let sameNode = holders.filter { $0 / 4 == transfer.rank / 4 }
                if !sameNode.isEmpty && source / 4 != transfer.rank / 4 {
                    // Allowed only when every same-node holder was busy sending in that round.
                    #expect(plan.transfers.contains { $0.round == transfer.round && $0.source.map(sameNode.contains) == true })
                }
            } else {
                #expect(holders.isEmpty)
            }
            var round = rounds[transfer.round] ?? ([], [])
            #expect(round.receivers.insert(transfer.rank).inserted)
            if let source = transfer.source { #expect(round.senders.insert(source).inserted) }
            rounds[transfer.round] = round
        }
        #expect(MigrationPlan.make(from: old, to: old, slotsPerGpu: 5, gpusPerNode: 4).transfers.isEmpty)
    }
}
