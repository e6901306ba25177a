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

/// Plans a unit's next placement from the one in use, moving as few replicas as the balance it buys allows.
///
/// 1. **What must change changes**, budget or not: an expert with no serving replica (its ranks died) takes a slot
///    from an expert with one to spare, operators' pins and forbids are honoured (`ExpertRules`), and under the
///    hierarchical policy a layer whose groups are not each on one node (the initial table) is solved afresh.
/// 2. **Local search from the row in use** (`LayerMoves`): each step lowers one layer's peak by swapping, splitting
///    or replacing replicas on its hottest GPU. Steps are taken across all layers by peak reduction per moved
///    replica, best first, while the budget lasts and a step buys at least `minGainPerMove` of its layer's mean
///    load per replica moved. Replicas stay on their node under the hierarchical policy.
/// 3. **Where local search falls short** of a fresh DeepSeek solve's peak: local search on past the price of a
///    move and then aimed at that peak (`LayerMoves.reach`), a re-pack that keeps every GPU that still fits
///    (`LayerRepack`, global policy), or a fresh solve (Fulcrum's) relabelled onto the row in use. At a price the
///    planner goes from the layer as it stands to whichever candidate cuts most peak per extra move, and on, while a
///    move still pays (`worthMoving`); at any cost the fewest moves that reach the peak win. Taken while the budget
///    allows. Without a budget and at a price of 0 no layer ends worse than relabelled DeepSeek.
///
/// With ranks excluded (their workers are dead) the serving ranks are planned alone under the global policy — the
/// dead ranks break the node symmetry the hierarchical policy needs — and the excluded ranks' slots keep what they
/// held.
public enum RebalancePlanner {
    /// The price of a move: a step must lower its layer's peak by at least this share of the layer's mean GPU load
    /// per replica moved. A replica is ~44 MB of FP8 weights, about 0.9 ms over a 50 GB/s link; a layer's peak is
    /// roughly 1/60 of a 50 ms step's MoE half, so 0.07% of it saves ~0.3 µs a step, ~1.8 ms over five minutes at 20
    /// steps a second: a move pays for its copy about twice over within one rebalance interval, a margin for an
    /// estimate this rough. Below it, chasing balance would move much of a unit for nothing measurable. 0: balance
    /// at any cost.
    public static let minGainPerMove = 0.0007

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
        rules: [ExpertRule] = [], minGainPerMove: Double = minGainPerMove
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
        let servingFlags = (0..<problem.gpus).map { !excludedRanks.contains($0) }
        let hierarchical = problem.policy == .hierarchical && excludedRanks.isEmpty
        let gpusPerNode = problem.gpus / problem.nodes
        let region = (0..<problem.gpus).map { hierarchical ? $0 / gpusPerNode : 0 }
        let liveRules = rules.filter { !excludedRanks.contains($0.rank) }

        // 1. What must change: every expert served, every rule honoured.
        var left = maxMoves ?? Int.max
        var layers: [LayerMoves] = current.indices.map { layer in
            var search = LayerMoves(
                weight: weight[layer], original: current[layer], row: current[layer], slotsPerGpu: spg,
                serving: servingFlags, region: region)
            search.serveAll()
            let layerRules = rulesOf(layer, liveRules)
            var row =
                layerRules.isEmpty
                ? search.row
                : ExpertRules.apply(layerRules, to: [search.row], weight: [weight[layer]], slotsPerGpu: spg, excludedRanks: excludedRanks)
                    .phy2log[0]
            // Under the hierarchical policy each group lives on one node (token routing is limited by groups); a row
            // that mixes them (the unit's initial table) is solved afresh when the budget allows.
            if hierarchical, !groupsPacked(row, experts: problem.experts, groups: problem.groups, slotsPerNode: gpusPerNode * spg),
                let fresh = try? freshRow(problem, layer: layer, current: current[layer], serving: serving, rules: liveRules),
                zip(fresh, current[layer]).count(where: { $0 != $1 }) <= left
            {
                row = fresh
            }
            let moved = zip(row, current[layer]).enumerated().count { slot, pair in pair.0 != pair.1 && servingFlags[slot / spg] }
            left -= moved
            // Nothing had to change (the usual case): the search state is the layer's.
            if layerRules.isEmpty, row == search.row { return search }
            return LayerMoves(
                weight: weight[layer], original: current[layer], row: row, slotsPerGpu: spg, serving: servingFlags,
                region: region, rules: layerRules)
        }

        // 2. Local search across layers, the most peak reduction per moved replica first.
        // Without a budget a layer's search is bounded (a drifted layer needs a few dozen tries at most; with ranks
        // dead, a dozen); one that needs more goes to the re-packs and fresh solves below, which keeps a re-plan to
        // milliseconds whatever the table in use. With a budget, or at any cost, the moves matter more than the time.
        let effortPerLayer =
            maxMoves != nil || minGainPerMove == 0 ? 64 * problem.gpus : (excludedRanks.isEmpty ? 96 : 12)
        func nextStep(_ layer: Int) -> (gain: Double, cost: Int, state: LayerMoves)? {
            var state = layers[layer]
            guard state.effort < effortPerLayer, let (gain, cost) = state.step() else { return nil }
            guard cost <= 0 || gain / Double(cost) >= minGainPerMove * state.mean else { return nil }
            return (gain, cost, state)
        }
        func rate(_ step: (gain: Double, cost: Int, state: LayerMoves)) -> Double {
            step.cost <= 0 ? .infinity : step.gain / Double(step.cost)
        }
        // A layer far above a fresh DeepSeek solve (half as hot again: a start-up table) is solved afresh
        // below rather than searched, unless a budget asks for the fewest moves.
        let reference = try referencePeaks(problem, serving: serving)
        let far = layers.indices.map { layers[$0].peak > reference.peaks[$0] * 1.5 }
        var steps = layers.indices.map { maxMoves == nil && far[$0] ? nil : nextStep($0) }
        while true {
            var chosen: Int?
            for layer in steps.indices {
                guard let step = steps[layer] else { continue }
                if let best = chosen, let other = steps[best], rate(other) >= rate(step) { continue }
                chosen = layer
            }
            guard let layer = chosen, let step = steps[layer] else { break }
            guard step.cost <= left else {
                steps[layer] = nil
                continue
            }
            layers[layer] = step.state
            left -= step.cost
            steps[layer] = nextStep(layer)
        }

        // 3. Where local search stays above DeepSeek's peak, candidates: local search past the price of a move, then
        //    aimed at that peak; re-packs that keep every GPU that fits (global policy); a fresh solve. One per layer
        //    (see the pick below), taken while the budget lasts, most gain per move first.
        var better: [(layer: Int, gain: Double, extra: Int, state: LayerMoves)] = []
        for layer in layers.indices where layers[layer].peak > reference.peaks[layer] * (1 + 1e-9) {
            let target = reference.peaks[layer] * (1 + 1e-9)
            // Every GPU above the target must change at least one slot: when even that would not pay, skip.
            let above = layers[layer].loads.indices.count { servingFlags[$0] && layers[layer].loads[$0] > target }
            let price = minGainPerMove * layers[layer].mean
            guard (layers[layer].peak - target) / Double(max(1, above)) >= price else { continue }
            let layerRules = rulesOf(layer, liveRules)
            func polished(_ row: [Int]) -> LayerMoves {
                var state = LayerMoves(
                    weight: weight[layer], original: current[layer], row: row, slotsPerGpu: spg, serving: servingFlags,
                    region: region, rules: layerRules)
                // A re-pack is balanced by construction: a short, bounded search for what it left.
                let bound = state.effort + 16
                while state.effort < bound, let (gain, cost) = state.step(maxChanges: 8), cost <= 0 || gain / Double(cost) >= price {}
                return state
            }
            var candidates: [LayerMoves] = []
            // With ranks dead the re-plan must be quick (their experts are unserved until it lands): the search
            // above and, for a layer far off, a fresh solve; no re-packs. At any cost (price 0), everything.
            let far = far[layer] && maxMoves == nil
            let quick = !excludedRanks.isEmpty && maxMoves == nil && minGainPerMove > 0
            guard !quick || far else { continue }
            if !far {
                var searched = layers[layer]
                let bound = searched.effort + 32
                while searched.peak > target, searched.effort < bound, searched.step(maxChanges: 16) != nil {}
                if searched.peak > target { _ = searched.reach(target, maxChanges: problem.gpus / 4) }
                candidates.append(searched)
            }
            // A re-pack aimed at DeepSeek's peak with DeepSeek's replica counts, keeping every GPU that fits.
            let base = layers[layer]
            if !far, !hierarchical, layerRules.isEmpty,
                let row = LayerRepack(
                    row: layers[layer].row, weight: weight[layer], counts: reference.counts[layer], slotsPerGpu: spg,
                    serving: servingFlags
                ).repack(target: target)
            {
                candidates.append(polished(row))
            }
            // A fresh solve moves at least as much as a re-pack that reaches the peak: tried only where none did, and
            // at a price only where the gain could pay for the half of the layer it moves. It is taken as Fulcrum's
            // solver left it (its own search has run).
            let affordable =
                minGainPerMove == 0 || far || (layers[layer].peak - target) / price >= Double(serving.count * spg) / 2
            if affordable, !candidates.contains(where: { $0.peak <= target }) {
                candidates.append(
                    LayerMoves(
                        weight: weight[layer], original: current[layer],
                        row: try freshRow(problem, layer: layer, current: current[layer], serving: serving, rules: liveRules),
                        slotsPerGpu: spg, serving: servingFlags, region: region, rules: layerRules))
            }
            // At any cost: the fewest moves that reach the peak, else the lowest peak. At a price: as far as each
            // further move still pays for itself.
            let pick: LayerMoves?
            if minGainPerMove == 0 {
                pick =
                    candidates.filter { $0.peak <= target }.min { $0.moved < $1.moved }
                    ?? candidates.min { $0.peak < $1.peak || ($0.peak == $1.peak && $0.moved < $1.moved) }
            } else {
                pick = worthMoving(from: base, to: candidates, price: price)
            }
            guard let pick, pick.peak < base.peak else { continue }
            better.append((layer, base.peak - pick.peak, pick.moved - base.moved, pick))
        }
        better.sort { a, b in
            let (ra, rb) = (a.extra <= 0 ? .infinity : a.gain / Double(a.extra), b.extra <= 0 ? .infinity : b.gain / Double(b.extra))
            return ra != rb ? ra > rb : a.layer < b.layer
        }
        for candidate in better where candidate.extra <= left {
            layers[candidate.layer] = candidate.state
            left -= candidate.extra
        }

        let chosen = layers.map(\.row)
        let before = PlacementLoad.evaluate(current, weight: weight, slotsPerGpu: spg, excludedRanks: excludedRanks)
        let after = PlacementLoad.evaluate(chosen, weight: weight, slotsPerGpu: spg, excludedRanks: excludedRanks)
        return RebalanceProposal(
            phy2log: chosen, excludedRanks: excludedRanks.sorted(), before: before, after: after,
            movedPerLayer: layers.map(\.moved), layersKept: zip(chosen, current).count { $0 == $1 })
    }

    /// Among candidates for one layer, the one at which more moves stop paying: from the layer as it stands, the
    /// candidate with the most peak cut per extra move, while that is at least `price`, and on from there (the lower
    /// convex hull of peak against moves). Nil when no candidate pays.
    static func worthMoving(from base: LayerMoves, to candidates: [LayerMoves], price: Double) -> LayerMoves? {
        var at = (peak: base.peak, moved: base.moved)
        var pick: LayerMoves?
        while true {
            var best: (rate: Double, state: LayerMoves)?
            for candidate in candidates where candidate.peak < at.peak {
                let extra = candidate.moved - at.moved
                let rate = extra <= 0 ? .infinity : (at.peak - candidate.peak) / Double(extra)
                guard rate >= price else { continue }
                if let current = best, current.rate > rate || (current.rate == rate && current.state.peak <= candidate.peak) { continue }
                best = (rate, candidate)
            }
            guard let best else { return pick }
            pick = best.state
            at = (best.state.peak, best.state.moved)
        }
    }

    /// Whether every expert group's replicas are on one node.
    static func groupsPacked(_ row: [Int], experts: Int, groups: Int, slotsPerNode: Int) -> Bool {
        let groupSize = experts / groups
        var node = [Int](repeating: -1, count: groups)
        for (slot, expert) in row.enumerated() {
            let group = expert / groupSize
            if node[group] < 0 { node[group] = slot / slotsPerNode } else if node[group] != slot / slotsPerNode { return false }
        }
        return true
    }

    /// The rules that apply to `layer`, made to apply to any, for a single row taken out of its table.
    static func rulesOf(_ layer: Int, _ rules: [ExpertRule]) -> [ExpertRule] {
        rules.filter { $0.applies(to: layer) }.map {
            var rule = $0
            rule.layer = nil
            return rule
        }
    }

    /// Per layer, the peak of DeepSeek's fresh solve on the serving ranks, what the planner must never end above when
    /// it has the moves, and that solve's replica counts.
    static func referencePeaks(_ problem: EPLBProblem, serving: [Int]) throws(EPLBError) -> (peaks: [Double], counts: [[Int]]) {
        let reference = try servingProblem(problem, serving: serving)
        let solution = DeepSeekEPLB.solve(reference)
        return (solution.gpuLoads(reference.weight).map { $0.max() ?? 0 }, solution.logcnt)
    }

    /// The problem of the serving ranks alone: the problem itself when all serve, else their slots under the global
    /// policy.
    static func servingProblem(_ problem: EPLBProblem, serving: [Int]) throws(EPLBError) -> EPLBProblem {
        guard serving.count < problem.gpus else { return problem }
        return try EPLBProblem(
            weight: problem.weight, replicas: serving.count * problem.slotsPerGpu, groups: 1, nodes: 1,
            gpus: serving.count, policy: .global)
    }

    /// One layer solved afresh by Fulcrum's solver, relabelled onto the row in use (excluded ranks keep their
    /// slots) and made to honour the rules.
    static func freshRow(
        _ problem: EPLBProblem, layer: Int, current: [Int], serving: [Int], rules: [ExpertRule]
    ) throws(EPLBError) -> [Int] {
        let spg = problem.slotsPerGpu
        let whole = try servingProblem(problem, serving: serving)
        let single = try EPLBProblem(
            weight: [problem.weight[layer]], replicas: whole.replicas, groups: whole.groups, nodes: whole.nodes,
            gpus: whole.gpus, policy: whole.policy)
        let servingRow = serving.flatMap { current[($0 * spg)..<(($0 + 1) * spg)] }
        let relabelled = MovementMinimizer.relabel(
            FulcrumEPLB.solve(single), previous: [servingRow], nodes: single.policy == .hierarchical ? single.nodes : 1
        ).solution.phy2log[0]
        var row = current
        for (index, rank) in serving.enumerated() {
            row.replaceSubrange((rank * spg)..<((rank + 1) * spg), with: relabelled[(index * spg)..<((index + 1) * spg)])
        }
        let layerRules = rulesOf(layer, rules)
        guard !layerRules.isEmpty else { return row }
        let excluded = Set(0..<problem.gpus).subtracting(serving)
        return ExpertRules.apply(layerRules, to: [row], weight: [problem.weight[layer]], slotsPerGpu: spg, excludedRanks: excluded)
            .phy2log[0]
    }
}
