import FulcrumCore
import Foundation
import Testing

@Suite("Keeping replicas where they are")
struct MovementTests {
    @Test func hungarianFindsTheCheapestAssignment() {
        let cost: [[Double]] = [[4, 1, 3], [2, 0, 5], [3, 2, 2]]
        let assignment = Assignment.minimumCost(cost)
        #expect(assignment == [1, 0, 2])
        // Brute force agrees on random matrices.
        var rng = FulcrumEPLBTests.SplitMix(state: 7)
        for _ in 0..<30 {
            let n = Int.random(in: 1...6, using: &rng)
            let m = (0..<n).map { _ in (0..<n).map { _ in Double(Int.random(in: 0...20, using: &rng)) } }
            let found = Assignment.minimumCost(m).enumerated().reduce(0.0) { $0 + m[$1.offset][$1.element] }
            #expect(Set(Assignment.minimumCost(m)).count == n)
            #expect(found == Self.bruteForce(m))
        }
    }

    static func bruteForce(_ m: [[Double]]) -> Double {
        func go(_ row: Int, _ used: Set<Int>) -> Double {
            row == m.count ? 0 : (0..<m.count).filter { !used.contains($0) }.map { m[row][$0] + go(row + 1, used.union([$0])) }.min()!
        }
        return go(0, [])
    }

    static func problem(seed: UInt64) throws -> EPLBProblem {
        var rng = FulcrumEPLBTests.SplitMix(state: seed)
        let weight = (0..<3).map { _ in (0..<16).map { _ in Double(Int.random(in: 0...1_000, using: &rng)) } }
        return try EPLBProblem(weight: weight, replicas: 24, groups: 4, nodes: 2, gpus: 8)
    }

    @Test func anUnchangedPlacementMovesNothingEvenWhenRelabelled() throws {
        let problem = try Self.problem(seed: 1)
        let solution = FulcrumEPLB.solve(problem)
        #expect(MovementMinimizer.relabel(solution, previous: solution.phy2log, nodes: 2).moved == [0, 0, 0])
        // The previous placement had the same GPUs under other labels: nodes swapped, GPUs rotated, slots reversed.
        let perGpu = 3
        let shuffled = solution.phy2log.map { row -> [Int] in
            let gpus = (0..<8).map { Array(row[($0 * perGpu)..<(($0 + 1) * perGpu)].reversed()) }
            let order = [5, 6, 7, 4, 1, 0, 3, 2]
            return order.flatMap { gpus[$0] }
        }
        let result = MovementMinimizer.relabel(solution, previous: shuffled, nodes: 2)
        #expect(result.moved == [0, 0, 0])
        #expect(result.solution.phy2log == shuffled)
    }

    @Test(arguments: 0..<20)
    func relabellingKeepsLoadsAndNeverMovesMore(seed: UInt64) throws {
        let old = FulcrumEPLB.solve(try Self.problem(seed: seed))
        let problem = try Self.problem(seed: seed + 1_000)
        let new = FulcrumEPLB.solve(problem)
        let result = MovementMinimizer.relabel(new, previous: old.phy2log, nodes: 2)
        let loads = { (s: EPLBSolution) in s.gpuLoads(problem.weight).map { $0.sorted() } }
        // The same loads per GPU, up to the order of a floating-point sum.
        for (a, b) in zip(loads(result.solution), loads(new)) {
            #expect(zip(a, b).allSatisfy { abs($0 - $1) < 1e-9 })
        }
        #expect(result.solution.logcnt == new.logcnt)
        FulcrumEPLBTests.checkInvariants(result.solution, problem)
        for layer in 0..<3 {
            let naive = zip(new.phy2log[layer], old.phy2log[layer]).filter { $0 != $1 }.count
            #expect(result.moved[layer] <= naive)
        }
    }
}

@Suite("Expert load from slot counts")
struct ExpertLoadTests {
    @Test func slotCountsFoldIntoTheExpertsTheSlotsHeld() {
        // 2 layers, 4 slots (2 GPUs x 2), 3 experts.
        let phy2log = [[0, 1, 2, 0], [2, 2, 1, 0]]
        var load = [[0.0, 0, 0], [0, 0, 0]]
        #expect(ExpertLoad.fold([[5, 7], [1, 2]], phy2log: phy2log, firstSlot: 2, into: &load))
        #expect(ExpertLoad.fold([[1, 1], [10, 10]], phy2log: phy2log, firstSlot: 0, into: &load))
        // Layer 0: slots 2, 3 hold experts 2, 0 (5, 7); slots 0, 1 hold 0, 1 (1, 1).
        // Layer 1: slots 2, 3 hold experts 1, 0 (1, 2); slots 0, 1 both hold 2 (10, 10).
        #expect(load == [[8, 1, 5], [2, 1, 20]])
        // A report that does not fit the table changes nothing.
        #expect(!ExpertLoad.fold([[1, 1, 1]], phy2log: phy2log, firstSlot: 2, into: &load))
        #expect(!ExpertLoad.fold([[1, 1], [1, 1]], phy2log: phy2log, firstSlot: 3, into: &load))
        #expect(load == [[8, 1, 5], [2, 1, 20]])
    }
}
