import ArgumentParser
import FulcrumCore
import FulcrumSimulator
import Foundation

/// `fulcrum bench eplb`: Fulcrum's expert placement against DeepSeek's on DeepSeek-V3-shaped expert loads (the
/// built-in model's 4 decode and 8 prefill workloads, or the real dumps), on a prefill unit (32 GPUs, 4 nodes,
/// hierarchical) and a decode unit (144 GPUs, 18 nodes, global).
struct EPLBBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eplb", abstract: "Balance and solve time of the expert placement on DeepSeek-V3-shaped loads.")

    @Option(help: "builtin (default: the seeded model), deepseek-v3 (the real dumps, with --data), or a directory of SGLang expert-distribution dumps.")
    var expertLoad = "builtin"

    @Option(help: ArgumentHelp("Directory of the real third-party data (expert_load/deepseek_v3/). [env: FULCRUM_DATA]", valueName: "dir"))
    var data: String?

    @Option(help: "Seed of the built-in expert load.")
    var seed: UInt64 = 1

    @Option(help: "Timed repetitions of each solve.")
    var repetitions = 20

    func validate() throws {
        do {
            try WorkloadCatalog.check(workload: "builtin", expertLoad: expertLoad, data: WorkloadCatalog.dataDirectory(data))
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() async throws {
        let workloads = try WorkloadCatalog.expertLoad(expertLoad, data: WorkloadCatalog.dataDirectory(data), seed: seed)
        // Token counts of a window (the model gives shares): any scale gives the same placements.
        let loads = workloads.all.map { (name: $0.name, weight: $0.share.map { $0.map { $0 * 1e6 } }) }
        let files = loads.map(\.name)
        print("expert load: \(workloads.origin), \(loads.count) workloads")
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
            let n = Double(files.count)
            print(
                String(
                    format: "%-9@ %-25@ %11.4f %9.4f %8.4f", name as NSString, "mean" as NSString, sums.bound / n,
                    sums.deepseek / n, sums.fulcrum / n))
        }
        print("balancedness = max/mean GPU load per layer, averaged over the 58 MoE layers (1.0 is perfect); ms: median of \(repetitions) solves of all 58 layers")

        // Moving from one workload's placement to the next: replicas whose slot changes hands, and the balance the
        // new placement gives on the new load. Fulcrum: the rebalancer's plan (solve, relabel onto the table in use,
        // keep layers that gain nothing), without and with a movement budget of 10% of the slots.
        guard files.count > 1 else { return }
        let budget = 288 * 58 / 10
        print("")
        print("moves from one workload's placement to the next (% of 16,704 slots) and balancedness on the new load")
        print(
            "unit      from -> to                        DeepSeek moved  bal    Fulcrum moved  bal    budget \(budget)  bal    plan ms")
        for (name, nodes, gpus) in [("prefill", 4, 32), ("decode", 18, 144)] {
            var totals = (deepseek: 0, fulcrum: 0, budgeted: 0)
            var balance = (deepseek: 0.0, fulcrum: 0.0, budgeted: 0.0)
            let slots = 288 * 58
            func percent(_ moved: Int) -> Double { 100 * Double(moved) / Double(slots) }
            for index in 1..<files.count {
                let before = try EPLBProblem(weight: loads[index - 1].weight, replicas: 288, groups: 8, nodes: nodes, gpus: gpus)
                let after = try EPLBProblem(weight: loads[index].weight, replicas: 288, groups: 8, nodes: nodes, gpus: gpus)
                let deepseekNew = DeepSeekEPLB.solve(after)
                let deepseekMoved = zip(deepseekNew.phy2log, DeepSeekEPLB.solve(before).phy2log)
                    .reduce(0) { $0 + zip($1.0, $1.1).filter { $0 != $1 }.count }
                let deepseekBalance = PlacementLoad.evaluate(
                    deepseekNew.phy2log, weight: after.weight, slotsPerGpu: after.slotsPerGpu
                ).balancedness
                let previous = FulcrumEPLB.solve(before).phy2log
                let (plan, time) = try Self.timed(max(1, repetitions / 4)) {
                    try RebalancePlanner.propose(after, current: previous)
                }
                let budgeted = try RebalancePlanner.propose(after, current: previous, maxMoves: budget)
                totals.deepseek += deepseekMoved
                totals.fulcrum += plan.moved
                totals.budgeted += budgeted.moved
                balance.deepseek += deepseekBalance
                balance.fulcrum += plan.after.balancedness
                balance.budgeted += budgeted.after.balancedness
                print(
                    String(
                        format: "%-9@ %-33@ %5d (%4.1f%%) %6.4f %5d (%4.1f%%) %6.4f %5d (%4.1f%%) %6.4f %8.1f",
                        name as NSString,
                        "\(files[index - 1]) -> \(files[index])".replacingOccurrences(of: ".json", with: "")
                            .replacingOccurrences(of: "deepseek_v3_", with: "") as NSString,
                        deepseekMoved, percent(deepseekMoved), deepseekBalance, plan.moved, percent(plan.moved),
                        plan.after.balancedness, budgeted.moved, percent(budgeted.moved), budgeted.after.balancedness,
                        time * 1e3))
            }
            let steps = files.count - 1
            print(
                String(
                    format: "%-9@ %-33@ %5d (%4.1f%%) %6.4f %5d (%4.1f%%) %6.4f %5d (%4.1f%%) %6.4f", name as NSString,
                    "mean" as NSString, totals.deepseek / steps, percent(totals.deepseek / steps),
                    balance.deepseek / Double(steps), totals.fulcrum / steps, percent(totals.fulcrum / steps),
                    balance.fulcrum / Double(steps), totals.budgeted / steps, percent(totals.budgeted / steps),
                    balance.budgeted / Double(steps)))
        }
        print("bal = Σ per-layer peak GPU load / Σ mean on the new load; plan ms: solve + relabel + keep, median")
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
