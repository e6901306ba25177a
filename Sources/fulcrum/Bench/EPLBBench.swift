import ArgumentParser
import FulcrumCore
import Foundation

/// `fulcrum bench eplb`: Fulcrum's expert placement against DeepSeek's on the real DeepSeek-V3 expert loads, on a
/// prefill unit (32 GPUs, 4 nodes, hierarchical) and a decode unit (144 GPUs, 18 nodes, global).
struct EPLBBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eplb", abstract: "Balance and solve time of the expert placement on real DeepSeek-V3 loads.")

    @Option(help: "Directory of SGLang expert-distribution dumps ({\"logical_count\": [61][256]}).")
    var data = "../shared/data/expert_load/deepseek_v3"

    @Option(help: "Timed repetitions of each solve.")
    var repetitions = 20

    func run() async throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: data).filter { $0.hasSuffix(".json") }.sorted()
        guard !files.isEmpty else { throw ValidationError("no .json files in \(data)") }
        print("unit      workload                  lower bound  DeepSeek  Fulcrum  better worse  DeepSeek ms  Fulcrum ms")
        for (name, nodes, gpus) in [("prefill", 4, 32), ("decode", 18, 144)] {
            var sums = (bound: 0.0, deepseek: 0.0, fulcrum: 0.0)
            for file in files {
                let json = try JSONDecoder().decode(
                    [String: [[Double]]].self, from: Data(contentsOf: URL(fileURLWithPath: "\(data)/\(file)")))
                let weight = Array((json["logical_count"] ?? []).dropFirst(3))
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
                        file.replacingOccurrences(of: ".json", with: "") as NSString, mean(bounds), mean(base),
                        mean(ours), better, weight.count, worse, deepseekTime * 1e3, fulcrumTime * 1e3))
            }
            let n = Double(files.count)
            print(
                String(
                    format: "%-9@ %-25@ %11.4f %9.4f %8.4f", name as NSString, "mean" as NSString, sums.bound / n,
                    sums.deepseek / n, sums.fulcrum / n))
        }
        print("balancedness = max/mean GPU load per layer, averaged over the 58 MoE layers (1.0 is perfect); ms: median of \(repetitions) solves of all 58 layers")

        // Moving from one workload's placement to the next: replicas whose slot changes hands.
        guard files.count > 1 else { return }
        print("")
        print("unit      from -> to                                      DeepSeek moved  Fulcrum moved  relabel ms")
        for (name, nodes, gpus) in [("prefill", 4, 32), ("decode", 18, 144)] {
            let loads = try files.map { file in
                let json = try JSONDecoder().decode(
                    [String: [[Double]]].self, from: Data(contentsOf: URL(fileURLWithPath: "\(data)/\(file)")))
                return Array((json["logical_count"] ?? []).dropFirst(3))
            }
            var totals = (deepseek: 0, fulcrum: 0)
            for index in 1..<files.count {
                let before = try EPLBProblem(weight: loads[index - 1], replicas: 288, groups: 8, nodes: nodes, gpus: gpus)
                let after = try EPLBProblem(weight: loads[index], replicas: 288, groups: 8, nodes: nodes, gpus: gpus)
                let keptNodes = after.policy == .hierarchical ? nodes : 1
                let deepseekMoved = zip(DeepSeekEPLB.solve(after).phy2log, DeepSeekEPLB.solve(before).phy2log)
                    .reduce(0) { $0 + zip($1.0, $1.1).filter { $0 != $1 }.count }
                let previous = FulcrumEPLB.solve(before).phy2log
                let fresh = FulcrumEPLB.solve(after)
                let (result, time) = Self.timed(max(1, repetitions / 4)) {
                    MovementMinimizer.relabel(fresh, previous: previous, nodes: keptNodes)
                }
                let moved = result.moved.reduce(0, +)
                totals.deepseek += deepseekMoved
                totals.fulcrum += moved
                let slots = 288 * before.layers
                print(
                    String(
                        format: "%-9@ %-47@ %6d (%4.1f%%) %6d (%4.1f%%) %10.2f", name as NSString,
                        "\(files[index - 1]) -> \(files[index])".replacingOccurrences(of: ".json", with: "") as NSString,
                        deepseekMoved, 100 * Double(deepseekMoved) / Double(slots), moved,
                        100 * Double(moved) / Double(slots), time * 1e3))
            }
            let all = 288 * 58 * (files.count - 1)
            print(
                String(
                    format: "%-9@ %-47@ %6d (%4.1f%%) %6d (%4.1f%%)", name as NSString, "all" as NSString, totals.deepseek,
                    100 * Double(totals.deepseek) / Double(all), totals.fulcrum, 100 * Double(totals.fulcrum) / Double(all)))
        }
    }

    /// Median seconds of `count` runs, and the last result.
    static func timed<Result>(_ count: Int, _ body: () -> Result) -> (Result, Double) {
        var times: [Double] = []
        var result = body()
        for _ in 0..<max(1, count) {
            let start = ContinuousClock.now
            result = body()
            let elapsed = ContinuousClock.now - start
            times.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }
        return (result, times.sorted()[times.count / 2])
    }
}
