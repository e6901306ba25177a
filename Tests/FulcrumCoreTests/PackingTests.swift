@testable import FulcrumCore
import Testing

/// The packings run on heaps and sorted walks; DeepSeek's EPLB scans linearly. Same answers, ties included.
@Suite("Packings")
struct PackingTests {
    /// DeepSeek's `balanced_packing`, as a linear scan.
    static func scannedPacking(_ weights: [Float], packs: Int) -> (pack: [Int], rank: [Int]) {
        let perPack = weights.count / packs
        let order = weights.indices.sorted { weights[$0] > weights[$1] || (weights[$0] == weights[$1] && $0 < $1) }
        var pack = Array(repeating: 0, count: weights.count)
        var rank = Array(repeating: 0, count: weights.count)
        var packWeight = [Float](repeating: 0, count: packs)
        var packItems = Array(repeating: 0, count: packs)
        for item in order {
            var best = -1
            for candidate in 0..<packs where packItems[candidate] < perPack {
                if best < 0 || packWeight[candidate] < packWeight[best] { best = candidate }
            }
            pack[item] = best
            rank[item] = packItems[best]
            packWeight[best] += weights[item]
            packItems[best] += 1
        }
        return (pack, rank)
    }

    /// DeepSeek's `replicate_experts`, as a linear scan.
    static func scannedReplication(_ weights: [Float], physical: Int) -> [Int] {
        var phy2log = Array(weights.indices)
        var logcnt = Array(repeating: 1, count: weights.count)
        for _ in weights.count..<physical {
            var best = 0
            for expert in weights.indices where weights[expert] / Float(logcnt[expert]) > weights[best] / Float(logcnt[best]) {
                best = expert
            }
            phy2log.append(best)
            logcnt[best] += 1
        }
        return phy2log
    }

    /// Weights with ties and zeros, as real expert loads have.
    static func weights(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            let draw = state % 40
            return draw < 4 ? 0 : Float(draw / 3)
        }
    }

    @Test(arguments: [(288, 144), (288, 32), (72, 8), (16, 8), (40, 4)], [1, 2, 3] as [UInt64])
    func balancedPackingPicksWhatTheLinearScanPicks(shape: (items: Int, packs: Int), seed: UInt64) {
        let weights = Self.weights(shape.items, seed: seed)
        let packed = DeepSeekEPLB.balancedPacking(weights, packs: shape.packs)
        let scanned = Self.scannedPacking(weights, packs: shape.packs)
        #expect(packed.pack == scanned.pack)
        #expect(packed.rank == scanned.rank)
    }

    @Test(arguments: [(256, 288), (32, 36), (8, 16)], [1, 2, 3] as [UInt64])
    func replicationPicksWhatTheLinearScanPicks(shape: (experts: Int, slots: Int), seed: UInt64) {
        let weights = Self.weights(shape.experts, seed: seed)
        #expect(DeepSeekEPLB.replicate(weights, physical: shape.slots).phy2log == Self.scannedReplication(weights, physical: shape.slots))
    }

    @Test func longestFirstKeepsEachBinUnderItsLimitAndItsItemsDistinct() throws {
        // Items 0…7 weigh 8…1; item 0 twice. Two per bin: heaviest with lightest.
        let weight: [Double] = [8, 7, 6, 5, 4, 3, 2, 1]
        let order = [0, 0, 1, 2, 3, 4, 5, 6, 7, 7]
        let bins = try #require(LongestFirst.pack(order, weight: weight, bins: 5, perBin: 2, limit: 10, distinct: true))
        for bin in 0..<5 {
            let items = Array(bins[(bin * 2)..<(bin * 2 + 2)])
            #expect(Set(items).count == 2)
            #expect(items.reduce(0) { $0 + weight[$1] } <= 10)
        }
        #expect(LongestFirst.pack(order, weight: weight, bins: 5, perBin: 2, limit: 8.5, distinct: true) == nil)
    }

    @Test func aRepackMovesOnlyWhatTheOverloadedGpuSheds() throws {
        // Four GPUs of two slots: GPU 0 holds the two heaviest (5 + 4 = 9), the others are light pairs. Reaching a
        // peak of 7 needs one swap, not four GPUs re-paired.
        let weight: [Double] = [5, 4, 3, 2, 1, 1, 1, 1]
        let row = [0, 1, 2, 4, 3, 5, 6, 7]
        let repack = LayerRepack(
            row: row, weight: weight, counts: Array(repeating: 1, count: 8), slotsPerGpu: 2,
            serving: Array(repeating: true, count: 4))
        let packed = try #require(repack.repack(target: 7))
        let loads = (0..<4).map { gpu in packed[(gpu * 2)..<(gpu * 2 + 2)].reduce(0) { $0 + weight[$1] } }
        #expect(loads.max() ?? .infinity <= 7)
        #expect(zip(packed, row).count { $0 != $1 } == 2)
    }
}
