/// Fulcrum's expert placement: DeepSeek's algorithm as the starting point, then local search inside each node (the
/// whole unit under the global policy) that can only lower a layer's hottest GPU:
/// 1. no GPU holds two replicas of one expert (a wasted slot), broken up by swaps that keep the node's peak;
/// 2. a replica on the hottest GPU is swapped with a lighter one on a cooler GPU, the swap leaving the lowest peak;
/// 3. when no swap helps, a replica of a lightly loaded expert becomes one more replica of an expert on the hottest
///    GPU (replica counts chosen with the packing in mind, which DeepSeek's greedy cannot do).
/// Every accepted step lowers the peak (duplicates: keeps it), so the result is never worse than DeepSeek's, layer
/// by layer, and every replica stays on the node DeepSeek's group packing gave its group.
public enum FulcrumEPLB {
    public static func solve(_ problem: EPLBProblem) -> EPLBSolution {
        let baseline = DeepSeekEPLB.solve(problem)
        var solution = baseline
        let nodes = problem.policy == .hierarchical ? problem.nodes : 1
        let gpusPerNode = problem.gpus / nodes
        for layer in 0..<problem.layers {
            var search = LayerSearch(
                weight: problem.weight[layer], logcnt: solution.logcnt[layer], slots: solution.phy2log[layer],
                slotsPerGpu: problem.slotsPerGpu, gpus: problem.gpus)
            for node in 0..<nodes {
                search.improve(gpus: (node * gpusPerNode)..<((node + 1) * gpusPerNode))
            }
            // The search keeps running sums; recomputed from scratch, the peak must not exceed DeepSeek's. If
            // rounding says otherwise, keep DeepSeek's layer: the guarantee is strict.
            let searched = EPLBSolution(phy2log: [search.slots], logcnt: [search.logcnt], gpus: problem.gpus)
            let original = EPLBSolution(
                phy2log: [baseline.phy2log[layer]], logcnt: [baseline.logcnt[layer]], gpus: problem.gpus)
            let weight = [problem.weight[layer]]
            if (searched.gpuLoads(weight)[0].max() ?? 0) <= (original.gpuLoads(weight)[0].max() ?? 0) {
                solution.phy2log[layer] = search.slots
                solution.logcnt[layer] = search.logcnt
            }
        }
        return solution
    }

    /// One layer's placement under local search.
    struct LayerSearch {
        let weight: [Double]
        var logcnt: [Int]
        var slots: [Int]
        let slotsPerGpu: Int
        var loads: [Double]
        /// The slots of every expert.
        var positions: [[Int]]

        init(weight: [Double], logcnt: [Int], slots: [Int], slotsPerGpu: Int, gpus: Int) {
            self.weight = weight
            self.logcnt = logcnt
            self.slots = slots
            self.slotsPerGpu = slotsPerGpu
            loads = Array(repeating: 0, count: gpus)
            positions = Array(repeating: [], count: weight.count)
            for (slot, expert) in slots.enumerated() {
                positions[expert].append(slot)
                loads[slot / slotsPerGpu] += weight[expert] / Double(logcnt[expert])
            }
        }

        func load(_ expert: Int) -> Double { weight[expert] / Double(logcnt[expert]) }
        func gpuSlots(_ gpu: Int) -> Range<Int> { (gpu * slotsPerGpu)..<((gpu + 1) * slotsPerGpu) }

        /// Whether `gpu` holds `expert` in a slot other than `skipped`.
        func holds(gpu: Int, expert: Int, except skipped: Int = -1) -> Bool {
            positions[expert].contains { $0 != skipped && $0 / slotsPerGpu == gpu }
        }

        mutating func swap(_ a: Int, _ b: Int) {
            let (ea, eb) = (slots[a], slots[b])
            let delta = load(ea) - load(eb)
            loads[a / slotsPerGpu] -= delta
            loads[b / slotsPerGpu] += delta
            if let i = positions[ea].firstIndex(of: a) { positions[ea][i] = b }
            if let i = positions[eb].firstIndex(of: b) { positions[eb][i] = a }
            slots.swapAt(a, b)
        }

        mutating func improve(gpus: Range<Int>) {
            breakDuplicates(gpus: gpus)
            for _ in 0..<(gpus.count * slotsPerGpu * 16) {
                if swapOffHottest(gpus: gpus) { continue }
                if addReplicaOnHottest(gpus: gpus) { continue }
                return
            }
        }

        /// Swaps a duplicated replica with one on another GPU, without raising the node's peak.
        mutating func breakDuplicates(gpus: Range<Int>) {
            for gpu in gpus {
                for a in gpuSlots(gpu) where holds(gpu: gpu, expert: slots[a], except: a) {
                    let peak = gpus.map { loads[$0] }.max() ?? 0
                    var best: (slot: Int, peak: Double)?
                    for other in gpus where other != gpu {
                        for b in gpuSlots(other) {
                            let (ea, eb) = (slots[a], slots[b])
                            guard ea != eb, !holds(gpu: other, expert: ea, except: b), !holds(gpu: gpu, expert: eb, except: a)
                            else { continue }
                            let delta = load(ea) - load(eb)
                            let newPeak = max(loads[gpu] - delta, loads[other] + delta)
                            if newPeak <= peak, best.map({ newPeak < $0.peak }) ?? true { best = (b, newPeak) }
                        }
                    }
                    if let best { swap(a, best.slot) }
                }
            }
        }

        /// The best swap of a replica on the hottest GPU with a lighter one elsewhere; false when none lowers the
        /// pair's peak. Each step moves load from a hotter GPU to a cooler one by less than their difference, so
        /// the sum of squared loads falls and the search ends.
        mutating func swapOffHottest(gpus: Range<Int>) -> Bool {
            guard let hot = gpus.max(by: { loads[$0] < loads[$1] }) else { return false }
            let hotLoad = loads[hot]
            var best: (a: Int, b: Int)?
            var bestPeak = hotLoad * (1 - 1e-12)
            for a in gpuSlots(hot) {
                let ea = slots[a]
                let la = load(ea)
                for other in gpus where other != hot && loads[other] < hotLoad {
                    let room = hotLoad - loads[other]
                    for b in gpuSlots(other) {
                        let delta = la - load(slots[b])
                        guard delta > 0, delta < room else { continue }
                        let peak = max(hotLoad - delta, loads[other] + delta)
                        guard peak < bestPeak, slots[b] != ea, !holds(gpu: other, expert: ea, except: b),
                            !holds(gpu: hot, expert: slots[b], except: a)
                        else { continue }
                        bestPeak = peak
                        best = (a, b)
                    }
                }
            }
            guard let best else { return false }
            swap(best.a, best.b)
            return true
        }

        /// Turns one replica of some expert `x` (which keeps at least one) into one more replica of an expert `a`
        /// on the hottest GPU, lightening every GPU that holds `a`; taken when the node's peak falls.
        mutating func addReplicaOnHottest(gpus: Range<Int>) -> Bool {
            guard let hot = gpus.max(by: { loads[$0] < loads[$1] }) else { return false }
            let peak = loads[hot]
            let ranked = gpus.sorted { loads[$0] > loads[$1] }
            let nodeSlots = (gpus.lowerBound * slotsPerGpu)..<(gpus.upperBound * slotsPerGpu)
            // Each donor once (via its first slot), and only one whose remaining replicas would not alone outweigh
            // the peak: such a donor can never help.
            var donors: [Int] = []
            for slot in nodeSlots where logcnt[slots[slot]] >= 2 && positions[slots[slot]].min() == slot {
                let x = slots[slot]
                if weight[x] / Double(logcnt[x] - 1) < peak { donors.append(x) }
            }
            guard !donors.isEmpty else { return false }
            var best: (expert: Int, slot: Int, peak: Double)?
            var changedGpus: [Int] = []
            var changedDeltas: [Double] = []
            changedGpus.reserveCapacity(16)
            changedDeltas.reserveCapacity(16)
            for slotOnHot in gpuSlots(hot) where !holds(gpu: hot, expert: slots[slotOnHot], except: slotOnHot)
                || positions[slots[slotOnHot]].filter({ $0 / slotsPerGpu == hot }).min() == slotOnHot
            {
                let a = slots[slotOnHot]
                let wa = weight[a]
                let shrink = wa / Double(logcnt[a]) - wa / Double(logcnt[a] + 1)
                for x in donors where x != a {
                    let wx = weight[x]
                    let grow = wx / Double(logcnt[x] - 1) - wx / Double(logcnt[x])
                    for s in positions[x] where !holds(gpu: s / slotsPerGpu, expert: a) {
                        changedGpus.removeAll(keepingCapacity: true)
                        changedDeltas.removeAll(keepingCapacity: true)
                        func add(_ gpu: Int, _ delta: Double) {
                            if let i = changedGpus.firstIndex(of: gpu) {
                                changedDeltas[i] += delta
                            } else {
                                changedGpus.append(gpu)
                                changedDeltas.append(delta)
                            }
                        }
                        for p in positions[a] { add(p / slotsPerGpu, -shrink) }
                        for p in positions[x] where p != s { add(p / slotsPerGpu, grow) }
                        add(s / slotsPerGpu, wa / Double(logcnt[a] + 1) - wx / Double(logcnt[x]))
                        var newPeak = 0.0
                        for (i, gpu) in changedGpus.enumerated() { newPeak = max(newPeak, loads[gpu] + changedDeltas[i]) }
                        guard newPeak < peak * (1 - 1e-12) else { continue }
                        if let untouched = ranked.first(where: { !changedGpus.contains($0) }) {
                            newPeak = max(newPeak, loads[untouched])
                        }
                        if newPeak < peak * (1 - 1e-12), best.map({ newPeak < $0.peak }) ?? true {
                            best = (a, s, newPeak)
                        }
                    }
                }
            }
            guard let best else { return false }
            let x = slots[best.slot]
            let a = best.expert
            let (oldA, oldX) = (load(a), load(x))
            for p in positions[a] { loads[p / slotsPerGpu] -= oldA }
            for p in positions[x] { loads[p / slotsPerGpu] -= oldX }
            positions[x].removeAll { $0 == best.slot }
            positions[a].append(best.slot)
            slots[best.slot] = a
            logcnt[a] += 1
            logcnt[x] -= 1
            for p in positions[a] { loads[p / slotsPerGpu] += load(a) }
            for p in positions[x] { loads[p / slotsPerGpu] += load(x) }
            return true
        }
    }
}
