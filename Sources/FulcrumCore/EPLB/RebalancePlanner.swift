/// A proposed placement for a unit and what it is predicted to change.
public struct RebalanceProposal: Hashable, Sendable {
    public var phy2log: [[Int]]
    public var excludedRanks: [Int]
    /// The current placement under the same load and serving ranks.
    public var before: PlacementLoad
    public var after: PlacementLoad
    /// Slots whose expert changes, per layer (weights to copy); excluded ranks never count.
    public var movedPerLayer: [Int]
    /// Layers that kept their current row: the solver found nothing better, or the movement budget ran out.
    public var layersKept: Int

    public var moved: Int { movedPerLayer.reduce(0, +) }

    /// 1 − after/before of the summed per-layer peak: the predicted cut in MoE time per step. 0 with no load.
    public var improvement: Double {
        before.peakSum > 0 ? 1 - after.peakSum / before.peakSum : 0
    }
}

/// Plans a unit's next placement from its current one: solve (Fulcrum's EPLB), relabel onto the current table so
/// what can stay stays, then keep every layer where the new row is no better, and, under a movement budget, take
/// the layers that buy the most peak reduction per moved replica first.
///
/// With ranks excluded (their workers are dead) the serving ranks are solved alone under the global policy — the
/// dead ranks break the node symmetry the hierarchical policy needs — and the excluded ranks' slots keep what they
/// held. Layers where the current table leaves an expert with no serving replica must change, budget or not.
public enum RebalancePlanner {
    /// Plans for a registered unit: its shape, DeepSeek's policy rule.
    public static func propose(
        unit: DeploymentUnit, current: [[Int]], weight: [[Double]], excludedRanks: Set<Int> = [],
        maxMoves: Int? = nil, rules: [ExpertRule] = []
    ) throws(EPLBError) -> RebalanceProposal {
        guard weight.count == unit.model.moeLayers, weight.allSatisfy({ $0.count == unit.model.routedExperts }) else {
            throw EPLBError("the load must have \(unit.model.moeLayers) layers of \(unit.model.routedExperts) experts")
        }
        let problem = try EPLBProblem(
            weight: weight, replicas: unit.slots, groups: unit.model.expertGroups, nodes: unit.nodes, gpus: unit.gpus)
        return try propose(problem, current: current, excludedRanks: excludedRanks, maxMoves: maxMoves, rules: rules)
    }

    /// Plans for any problem (the offline CLI's input): `current` is the table in use, `[layer][slot]`.
    public static func propose(
        _ problem: EPLBProblem, current: [[Int]], excludedRanks: Set<Int> = [], maxMoves: Int? = nil,
        rules: [ExpertRule] = []
    ) throws(EPLBError) -> RebalanceProposal {
        let spg = problem.slotsPerGpu
        let weight = problem.weight
        guard current.count == problem.layers, current.allSatisfy({ $0.count == problem.replicas }) else {
            throw EPLBError("the current placement must have \(problem.layers) layers of \(problem.replicas) slots")
        }
        if let bad = current.joined().first(where: { !(0..<problem.experts).contains($0) }) {
            throw EPLBError("the current placement holds \(bad), not an expert id from 0 to \(problem.experts - 1)")
        }
        if let bad = excludedRanks.first(where: { !(0..<problem.gpus).contains($0) }) {
            throw EPLBError("excluded rank \(bad) is not a GPU of the unit (0 to \(problem.gpus - 1))")
        }
        let serving = (0..<problem.gpus).filter { !excludedRanks.contains($0) }
        guard serving.count * spg >= problem.experts else {
            throw EPLBError(
                "\(serving.count) serving GPUs hold \(serving.count * spg) slots, too few for \(problem.experts) experts")
        }

        var solved: [[Int]]
        if excludedRanks.isEmpty {
            solved =
                MovementMinimizer.relabel(
                    FulcrumEPLB.solve(problem), previous: current,
                    nodes: problem.policy == .hierarchical ? problem.nodes : 1
                ).solution.phy2log
        } else {
            let survivors = try EPLBProblem(
                weight: weight, replicas: serving.count * spg, groups: 1, nodes: 1, gpus: serving.count,
                policy: .global)
            let servingRows = current.map { row in serving.flatMap { row[($0 * spg)..<(($0 + 1) * spg)] } }
            let relabelled = MovementMinimizer.relabel(FulcrumEPLB.solve(survivors), previous: servingRows, nodes: 1)
            solved = zip(current, relabelled.solution.phy2log).map { row, servingRow in
                var full = row
                for (index, rank) in serving.enumerated() {
                    full.replaceSubrange((rank * spg)..<((rank + 1) * spg), with: servingRow[(index * spg)..<((index + 1) * spg)])
                }
                return full
            }
        }

        // Operators' pins and forbids hold in every row published: the solved one, and the current one where it is
        // kept (a layer whose current row breaks a rule must change, like one with an unserved expert).
        solved = ExpertRules.apply(rules, to: solved, weight: weight, slotsPerGpu: spg, excludedRanks: excludedRanks).phy2log
        let honouring = ExpertRules.apply(rules, to: current, weight: weight, slotsPerGpu: spg, excludedRanks: excludedRanks)
            .phy2log
        let before = PlacementLoad.evaluate(current, weight: weight, slotsPerGpu: spg, excludedRanks: excludedRanks)
        let honouringLoad = PlacementLoad.evaluate(
            honouring, weight: weight, slotsPerGpu: spg, excludedRanks: excludedRanks)
        let candidate = PlacementLoad.evaluate(solved, weight: weight, slotsPerGpu: spg, excludedRanks: excludedRanks)
        let moves = zip(solved, current).map { new, old in
            zip(new, old).enumerated().count { slot, pair in pair.0 != pair.1 && !excludedRanks.contains(slot / spg) }
        }
        var chosen = current
        var movedPerLayer = [Int](repeating: 0, count: current.count)
        var optional: [Int] = []
        for layer in current.indices where moves[layer] > 0 {
            let unserved =
                PlacementLoad.layerLoads(
                    current[layer], weight: weight[layer], slotsPerGpu: spg, excludedRanks: excludedRanks
                ).unserved
            if unserved > 0 {
                chosen[layer] = solved[layer]
                movedPerLayer[layer] = moves[layer]
            } else if honouring[layer] != current[layer] {
                // The current row breaks a rule: the better of the solved row and the current one made to honour it.
                let row = candidate.peaks[layer] < honouringLoad.peaks[layer] ? solved[layer] : honouring[layer]
                chosen[layer] = row
                movedPerLayer[layer] = zip(row, current[layer]).enumerated().count { slot, pair in
                    pair.0 != pair.1 && !excludedRanks.contains(slot / spg)
                }
            } else if candidate.peaks[layer] < before.peaks[layer] * (1 - 1e-9) {
                optional.append(layer)
            }
        }
        // Most peak reduction per moved replica first; without a budget every gaining layer fits.
        var left = (maxMoves ?? Int.max) - movedPerLayer.reduce(0, +)
        let ranked = optional.sorted {
            let gain = { (layer: Int) in (before.peaks[layer] - candidate.peaks[layer]) / Double(moves[layer]) }
            return gain($0) != gain($1) ? gain($0) > gain($1) : $0 < $1
        }
        for layer in ranked where moves[layer] <= left {
            chosen[layer] = solved[layer]
            movedPerLayer[layer] = moves[layer]
            left -= moves[layer]
        }
        let after = PlacementLoad.evaluate(chosen, weight: weight, slotsPerGpu: spg, excludedRanks: excludedRanks)
        return RebalanceProposal(
            phy2log: chosen, excludedRanks: excludedRanks.sorted(), before: before, after: after,
            movedPerLayer: movedPerLayer, layersKept: zip(chosen, current).count { $0 == $1 })
    }
}
