import FulcrumCore
import Foundation
import FulcrumTestSupport
import Testing

@Suite("Fulcrum's EPLB")
struct FulcrumEPLBTests {
    /// The layer invariants every placement must keep.
    static func checkInvariants(_ solution: EPLBSolution, _ problem: EPLBProblem, sourceLocation: SourceLocation = #_sourceLocation) {
        let perGpu = problem.slotsPerGpu
        let nodes = problem.policy == .hierarchical ? problem.nodes : 1
        let groupSize = problem.experts / problem.groups
        for layer in 0..<problem.layers {
            let slots = solution.phy2log[layer]
            #expect(slots.count == problem.replicas, sourceLocation: sourceLocation)
            var counts = Array(repeating: 0, count: problem.experts)
            for expert in slots { counts[expert] += 1 }
            #expect(counts == solution.logcnt[layer], "logcnt matches phy2log", sourceLocation: sourceLocation)
            #expect(counts.allSatisfy { $0 >= 1 }, "every expert has a replica", sourceLocation: sourceLocation)
            if problem.policy == .hierarchical {
                // Every replica of a group's experts sits on one node, and each node holds groups/nodes groups.
                let slotsPerNode = problem.replicas / nodes
                var nodeOfGroup = [Int: Int]()
                var consistent = true
                for (slot, expert) in slots.enumerated() {
                    let node = slot / slotsPerNode
                    if let seen = nodeOfGroup[expert / groupSize], seen != node { consistent = false }
                    nodeOfGroup[expert / groupSize] = node
                }
                #expect(consistent, "a group spans nodes in layer \(layer)", sourceLocation: sourceLocation)
                let groupsPerNode = Dictionary(grouping: nodeOfGroup.values, by: { $0 }).mapValues(\.count)
                #expect(groupsPerNode.values.allSatisfy { $0 == problem.groups / nodes }, sourceLocation: sourceLocation)
            }
            _ = perGpu
        }
    }

    static func peaks(_ solution: EPLBSolution, _ weight: [[Double]]) -> [Double] {
        solution.gpuLoads(weight).map { $0.max() ?? 0 }
    }

    @Test func theWorkedExampleIsAtLeastAsGoodAsDeepSeeks() throws {
        let problem = try DeepSeekEPLBTests.workedExample()
        let ours = FulcrumEPLB.solve(problem)
        Self.checkInvariants(ours, problem)
        let theirs = Self.peaks(DeepSeekEPLB.solve(problem), DeepSeekEPLBTests.weight)
        let mine = Self.peaks(ours, DeepSeekEPLBTests.weight)
        #expect(mine[0] <= theirs[0] && mine[1] <= theirs[1])
        // Layer 0's 156 is already optimal under the group constraint (node 1 holds 587 tokens in 8 slots whose
        // best pairing peaks at 156), so equal is the best possible there.
    }

    /// A small deterministic generator, so failures reproduce.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test(arguments: 0..<24)
    func randomProblemsKeepTheInvariantsAndNeverLoseToDeepSeek(seed: UInt64) throws {
        var rng = SplitMix(state: seed)
        let nodes = [1, 2, 4].randomElement(using: &rng) ?? 1
        let gpusPerNode = [1, 2, 4, 8].randomElement(using: &rng) ?? 1
        let gpus = nodes * gpusPerNode
        let groups = nodes * [1, 2, 3].randomElement(using: &rng)!
        let experts = groups * Int.random(in: 1...6, using: &rng)
        let perGpu = max(1, (experts + gpus - 1) / gpus) + Int.random(in: 0...2, using: &rng)
        let layers = Int.random(in: 1...4, using: &rng)
        let skew = Double.random(in: 0.2...3, using: &rng)
        let weight = (0..<layers).map { _ in
            (0..<experts).map { _ in (Double.random(in: 0...1, using: &rng) * 1_000).rounded() * pow(Double.random(in: 0.01...1, using: &rng), skew) }
        }
        let policy: EPLBPolicy = Bool.random(using: &rng) ? .hierarchical : .global
        let problem = try EPLBProblem(
            weight: weight, replicas: gpus * perGpu, groups: groups, nodes: nodes, gpus: gpus, policy: policy)
        let ours = FulcrumEPLB.solve(problem)
        Self.checkInvariants(ours, problem)
        let theirs = Self.peaks(DeepSeekEPLB.solve(problem), weight)
        for (mine, base) in zip(Self.peaks(ours, weight), theirs) {
            #expect(mine <= base * (1 + 1e-12), "seed \(seed): \(mine) > DeepSeek's \(base)")
        }
    }

    /// The real DeepSeek-V3 dumps when this machine has them (FULCRUM_DATA or ../shared/data); the built-in loads
    /// are checked the same way in WorkloadModelTests whether or not they are here.
    static let dataDirectory = URL(fileURLWithPath: SharedData.path("expert_load/deepseek_v3") ?? "/nonexistent")

    static func moeLayers(_ file: String) throws -> [[Double]] {
        let data = try Data(contentsOf: dataDirectory.appendingPathComponent(file))
        let json = try JSONDecoder().decode([String: [[Double]]].self, from: data)
        // Rows 0-2 are DeepSeek-V3's dense layers.
        return Array((json["logical_count"] ?? []).dropFirst(3))
    }

    /// Three of the twelve workloads: a debug build solves slowly. `fulcrum bench eplb --expert-load deepseek-v3`
    /// covers all twelve (its "worse" column must read 0).
    static let files = ["decode_in1000out1000.json", "prefill_in1024.json", "prefill_in4096.json"].filter {
        FileManager.default.fileExists(atPath: dataDirectory.appendingPathComponent($0).path)
    }

    @Test(.enabled(if: !files.isEmpty, "needs expert_load/deepseek_v3/ under FULCRUM_DATA or ../shared/data"), arguments: files)
    func realDeepSeekLoadsOnBothUnitShapesNeverLoseToDeepSeek(file: String) async throws {
        let weight = try Self.moeLayers(file)
        #expect(weight.count == 58)
        for (nodes, gpus) in [(4, 32), (18, 144)] {
            let problem = try EPLBProblem(weight: weight, replicas: 288, groups: 8, nodes: nodes, gpus: gpus)
            // Solved off the cooperative pool at low priority: a debug build takes seconds.
            let (ours, theirs) = try await offPool { (FulcrumEPLB.solve(problem), DeepSeekEPLB.solve(problem)) }
            Self.checkInvariants(ours, problem)
            let mine = Self.peaks(ours, weight)
            for (m, t) in zip(mine, Self.peaks(theirs, weight)) { #expect(m <= t * (1 + 1e-12)) }
            #expect(mine.reduce(0, +) <= Self.peaks(theirs, weight).reduce(0, +))
        }
    }
}
