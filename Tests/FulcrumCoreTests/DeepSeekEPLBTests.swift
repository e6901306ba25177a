import FulcrumCore
import Testing

@Suite("DeepSeek's EPLB, ported")
struct DeepSeekEPLBTests {
    static let weight: [[Double]] = [
        [90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
        [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27],
    ]

    static func workedExample() throws -> EPLBProblem {
        try EPLBProblem(weight: weight, replicas: 16, groups: 4, nodes: 2, gpus: 8)
    }

    @Test func theWorkedExampleGivesDeepSeeksGpuLoads() throws {
        let problem = try Self.workedExample()
        #expect(problem.policy == .hierarchical)
        let solution = DeepSeekEPLB.solve(problem)
        #expect(solution.logcnt == [[1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1], [1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1]])
        let loads = solution.gpuLoads(Self.weight)
        #expect(loads[0] == [121.5, 86.5, 125, 113, 147.5, 131.5, 156, 152])
        #expect(abs(balancedness(loads[0]) - 1.2081) < 0.0001)
        #expect(abs(balancedness(loads[1]) - 1.2422) < 0.0001)
        // DeepSeek's published phy2log for layer 0.
        #expect(solution.phy2log[0] == [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1])
        let log2phy = solution.log2phy
        #expect(log2phy[0][1] == [13, 15] && log2phy[0][0] == [12, -1])
    }

    @Test(arguments: [
        ([[1.0, 2.0], [3.0]], "rows"), ([[1.0, -1.0]], "non-negative"), ([[1.0, .nan]], "finite"),
        ([[Double]](), "at least one"), ([[1.0, 1e300]], "at most 1e15"),
    ])
    func badLoadsAreRefused(weight: [[Double]], mentions: String) {
        #expect {
            try EPLBProblem(weight: weight, replicas: 4, groups: 1, nodes: 1, gpus: 2)
        } throws: { error in
            (error as? EPLBError)?.message.contains(mentions) == true
        }
    }

    @Test func badShapesAreRefused() throws {
        let row = Array(repeating: 1.0, count: 12)
        #expect(throws: EPLBError.self) { try EPLBProblem(weight: [row], replicas: 15, groups: 4, nodes: 2, gpus: 8) }
        #expect(throws: EPLBError.self) { try EPLBProblem(weight: [row], replicas: 8, groups: 4, nodes: 2, gpus: 8) }
        #expect(throws: EPLBError.self) { try EPLBProblem(weight: [row], replicas: 16, groups: 5, nodes: 1, gpus: 8) }
        #expect(throws: EPLBError.self) { try EPLBProblem(weight: [row], replicas: 16, groups: 4, nodes: 3, gpus: 8) }
        #expect(throws: EPLBError.self) {
            try EPLBProblem(weight: [row], replicas: 16, groups: 3, nodes: 2, gpus: 8, policy: .hierarchical)
        }
        #expect(try EPLBProblem(weight: [row], replicas: 16, groups: 3, nodes: 2, gpus: 8).policy == .global)
        #expect(throws: EPLBError.self) { try EPLBProblem(weight: [row], replicas: 1 << 40, groups: 1, nodes: 1, gpus: 1) }
    }
}
