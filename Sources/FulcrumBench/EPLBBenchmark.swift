import FulcrumCore
import FulcrumSimulator
import Foundation

/// `fulcrum bench eplb`: Fulcrum's expert placement against DeepSeek's on DeepSeek-V3-shaped expert loads (the
/// built-in model's 4 decode and 8 prefill workloads, or the real dumps), on a prefill unit (32 GPUs, 4 nodes,
/// hierarchical) and a decode unit (144 GPUs, 18 nodes, global).
public struct EPLBBenchmark: Sendable {
    /// builtin (the seeded model), deepseek-v3 (the real dumps, with `data`), or a directory of SGLang dumps.
    public var expertLoad = "builtin"
    public var data: String?
    public var seed: UInt64 = 1
    /// Timed repetitions of each solve.
    public var repetitions = 20
    /// The re-planner's price of a move, a share of the layer's mean GPU load.
    public var minGainPerMove = RebalancePlanner.minGainPerMove
    /// Only the re-planning tables (drift, Pareto, times), not the solver table.
    public var movementOnly = false

    public init() {}

    public func run() async throws {
        let workloads = try WorkloadCatalog.expertLoad(expertLoad, data: WorkloadCatalog.dataDirectory(data), seed: seed)
        // Token counts of a window (the model gives shares): any scale gives the same placements.
        let loads = workloads.all.map { (name: $0.name, weight: $0.share.map { $0.map { $0 * 1e6 } }) }
        print("expert load: \(workloads.origin), \(loads.count) workloads")
        if !movementOnly { try solverTable(loads) }
        let lines = try EPLBMovementBench.run(loads, seed: seed, price: minGainPerMove)
        print("")
        print("targets")
        for (line, _) in lines { print("  \(line)") }
    }

    /// Balance and solve time of a fresh solve, DeepSeek's and Fulcrum's, per workload.
    func solverTable(_ loads: [(name: String, weight: [[Double]])]) throws {
        print("unit      workload                  lower bound  DeepSeek  Fulcrum  better worse  DeepSeek ms  Fulcrum ms")
        for (name, nodes, gpus) in [("prefill", 4, 32), ("decode", 18, 144)] {
            var sums = (bound: 0.0, deepseek: 0.0, fulcrum: 0.0)
            for (file, weight) in loads {
                let problem = try EPLBProblem(weight: weight, replicas: 288, groups: 8, nodes: nodes, gpus: gpus)
                let (deepseek, deepseekTime) = Self.timed(repetitions) { DeepSeekEPLB.solve(problem) }
                let (fulcrum, fulcrumTime) = Self.timed(repetitions) { FulcrumEPLB.solve(problem) }
                let base = deepseek.gpuLoads(weight).map(balancedness)
                let ours = fulcrum.gpuLoads(weight).map(balancedness)
                // max(total/G, max_e w_e/(1 + redundant)) over the mean: no placement can do better.
                let bounds = weight.map { row -> Double in
                    let total = row.reduce(0, +)
                    guard total > 0 else { return 1 }
                    let mean = total / Double(gpus)
                    return max(mean, (row.max() ?? 0) / Double(1 + 288 - 256)) / mean
                }
                let better = zip(ours, base).filter { $0 < $1 - 1e-9 }.count
                let worse = zip(ours, base).filter { $0 > $1 + 1e-9 }.count
                let mean = { (values: [Double]) in values.reduce(0, +) / Double(values.count) }
                sums.bound += mean(bounds)
                sums.deepseek += mean(base)
                sums.fulcrum += mean(ours)
                print(
                    String(
                        format: "%-9@ %-25@ %11.4f %9.4f %8.4f %4d/%-2d %4d %12.2f %11.2f", name as NSString,
                        file as NSString, mean(bounds), mean(base),
                        mean(ours), better, weight.count, worse, deepseekTime * 1e3, fulcrumTime * 1e3))
            }
            let n = Double(loads.count)
            print(
                String(
                    format: "%-9@ %-25@ %11.4f %9.4f %8.4f", name as NSString, "mean" as NSString, sums.bound / n,
                    sums.deepseek / n, sums.fulcrum / n))
        }
        print("balancedness = max/mean GPU load per layer, averaged over the 58 MoE layers (1.0 is perfect); ms: median of \(repetitions) solves of all 58 layers")
    }

    /// Median seconds of `count` runs, and the last result.
    static func timed<Result, Failure: Error>(
        _ count: Int, _ body: () throws(Failure) -> Result
    ) throws(Failure) -> (Result, Double) {
        var times: [Double] = []
        var result = try body()
        for _ in 0..<max(1, count) {
            let start = ContinuousClock.now
            result = try body()
            let elapsed = ContinuousClock.now - start
            times.append(elapsed.seconds)
        }
        return (result, times.sorted()[times.count / 2])
    }
}
