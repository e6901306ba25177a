/// Re-packs one layer toward a target peak while keeping every GPU that can stay: the replica counts become a fresh
/// solve's, each GPU whose replicas still fit under the target keeps them, and only the rest are packed again. The
/// open GPUs are packed first by putting each replica back where it was while it fits and moving only what does
/// not (`keepingFirst`: an over-target GPU sheds one replica to a light GPU instead of every open pair being
/// re-formed), else heaviest replica first onto the lightest open GPU (`LongestFirst`). When the open GPUs cannot
/// reach the target alone, the lightest kept GPUs open too, a doubling number at a time. Packed sets then go to the
/// open GPUs that already hold most of them, and replicas that stay keep their slot.
///
/// For the global policy (any replica anywhere). Where local search stalls on GPUs of few slots (a decode unit has
/// two), pairs must be re-formed, and this keeps most of the unit while doing it.
struct LayerRepack {
    let row: [Int]
    let slotsPerGpu: Int
    let experts: Int
    let perReplica: [Double]
    /// Replicas that stay candidates for keeping, per GPU: `contents[gpu * spg ..< gpu * spg + size[gpu]]`.
    private let contents: [Int]
    private let size: [Int]
    /// Each GPU's load from those replicas.
    private let load: [Double]
    /// GPUs that lost a replica to the new counts, and so open whatever the target.
    private let dropped: [Bool]
    /// Serving GPUs, lightest first.
    private let lightest: [Int]
    /// Every replica that may be packed, heaviest first, with the GPU it is on (-1: not placed yet).
    private let movable: [(expert: Int, gpu: Int)]

    /// What every target shares: the new counts' replica loads, each GPU's replicas less those of experts over
    /// their new count (dropped from the hottest GPUs first), and the replicas to place.
    ///
    /// - Parameters:
    ///   - row: the row in use (`[slot]` → expert); excluded ranks' slots are kept.
    ///   - counts: the replica count each expert should have on the serving GPUs.
    init(row: [Int], weight: [Double], counts: [Int], slotsPerGpu spg: Int, serving: [Bool]) {
        let gpus = serving.count
        self.row = row
        slotsPerGpu = spg
        experts = weight.count
        let perReplica = weight.indices.map { counts[$0] > 0 ? weight[$0] / Double(counts[$0]) : 0 }
        var contents = row
        var size = (0..<gpus).map { serving[$0] ? spg : 0 }
        var have = [Int](repeating: 0, count: weight.count)
        var load = [Double](repeating: 0, count: gpus)
        for gpu in 0..<gpus where serving[gpu] {
            for expert in row[(gpu * spg)..<((gpu + 1) * spg)] {
                have[expert] += 1
                load[gpu] += perReplica[expert]
            }
        }
        var dropped = [Bool](repeating: false, count: gpus)
        let byLoad = (0..<gpus).filter { serving[$0] }.sorted { load[$0] > load[$1] || (load[$0] == load[$1] && $0 < $1) }
        for gpu in byLoad {
            for index in stride(from: size[gpu] - 1, through: 0, by: -1) {
                let expert = contents[gpu * spg + index]
                guard have[expert] > counts[expert] else { continue }
                have[expert] -= 1
                load[gpu] -= perReplica[expert]
                dropped[gpu] = true
                size[gpu] -= 1
                // Close the gap: the replicas after it shift down one.
                let first = gpu * spg + index
                for slot in first..<(gpu * spg + size[gpu]) { contents[slot] = contents[slot + 1] }
            }
        }
        var movable: [(expert: Int, gpu: Int)] = []
        for expert in weight.indices where have[expert] < counts[expert] {
            movable.append(contentsOf: repeatElement((expert: expert, gpu: -1), count: counts[expert] - have[expert]))
        }
        for gpu in 0..<gpus where serving[gpu] {
            for expert in contents[(gpu * spg)..<(gpu * spg + size[gpu])] { movable.append((expert, gpu)) }
        }
        movable.sort { a, b in
            perReplica[a.expert] > perReplica[b.expert] || (perReplica[a.expert] == perReplica[b.expert] && a.expert < b.expert)
        }
        self.perReplica = perReplica
        self.contents = contents
        self.size = size
        self.load = load
        self.dropped = dropped
        lightest = (0..<gpus).filter { serving[$0] }.sorted { load[$0] < load[$1] || (load[$0] == load[$1] && $0 < $1) }
        self.movable = movable
    }

    /// The row re-packed toward `target`: GPUs that lost a replica or sit above the target open, and kept GPUs join
    /// them, lightest first, until the open ones pack under the target. Nil when even packing every serving GPU
    /// again misses it.
    func repack(target: Double) -> [Int]? {
        let gpus = load.count
        var open = dropped
        var openCount = 0
        var total = 0.0
        var kept: [Int] = []
        for gpu in lightest {
            if load[gpu] > target { open[gpu] = true }
            if open[gpu] { openCount += 1 } else { kept.append(gpu) }
        }
        for entry in movable where entry.gpu < 0 || open[entry.gpu] { total += perReplica[entry.expert] }
        // A pack can only succeed once the open GPUs' mean load is within the target: start from the fewest kept
        // GPUs that achieves it (their loads are below the target, so each one opened lowers the mean).
        var extra = 0
        while extra < kept.count, total > target * Double(openCount + extra) {
            total += load[kept[extra]]
            extra += 1
        }
        while true {
            var opened = open
            for gpu in kept.prefix(extra) { opened[gpu] = true }
            let openGpus = (0..<gpus).filter { opened[$0] }
            // Heaviest first only where keeping first fails: its items are gathered then.
            if let bins = keepingFirst(on: openGpus, opened: opened, target: target)
                ?? LongestFirst.pack(
                    movable.filter { $0.gpu < 0 || opened[$0.gpu] }.map(\.expert), weight: perReplica,
                    bins: openGpus.count, perBin: slotsPerGpu, limit: target, distinct: true)
            {
                return Self.place(bins, on: openGpus, row: row, slotsPerGpu: slotsPerGpu, experts: experts)
            }
            if extra >= kept.count { return nil }
            extra = min(kept.count, max(1, extra * 2))
        }
    }

    /// The open GPUs packed by moving as little as may be: replicas heaviest first, each back on its own GPU while
    /// that has room and stays under the target, else onto the lightest open GPU that has room, lacks it and stays
    /// under. Where it succeeds it keeps most pairs that LPT would re-form; nil where some replica finds no GPU.
    /// Bin `b` is open GPU `openGpus[b]`.
    private func keepingFirst(on openGpus: [Int], opened: [Bool], target: Double) -> [Int]? {
        let spg = slotsPerGpu
        var binOf = [Int](repeating: -1, count: load.count)
        for (b, gpu) in openGpus.enumerated() { binOf[gpu] = b }
        var bins = [Int](repeating: -1, count: openGpus.count * spg)
        var filled = [Int](repeating: 0, count: openGpus.count)
        var loads = [Double](repeating: 0, count: openGpus.count)
        func holds(_ b: Int, _ expert: Int) -> Bool { bins[(b * spg)..<(b * spg + filled[b])].contains(expert) }
        // Open GPUs by load; an entry whose GPU has since filled up or grown is stale, and dropped when met.
        var lightest = MinHeap(openGpus.indices.map { LoadedBin(load: 0.0, index: $0) })
        var holding: [LoadedBin<Double>] = []
        for entry in movable where entry.gpu < 0 || opened[entry.gpu] {
            let share = perReplica[entry.expert]
            var bin = entry.gpu >= 0 ? binOf[entry.gpu] : -1
            if bin < 0 || filled[bin] == spg || loads[bin] + share > target || holds(bin, entry.expert) {
                bin = -1
                while let top = lightest.min {
                    if filled[top.index] == spg || top.load != loads[top.index] {
                        lightest.removeMin()
                    } else if holds(top.index, entry.expert) {
                        holding.append(top)
                        lightest.removeMin()
                    } else {
                        bin = top.index
                        break
                    }
                }
                for entry in holding { lightest.insert(entry) }
                holding.removeAll(keepingCapacity: true)
                // The lightest that may take it does not stay under the target: none does.
                guard bin >= 0, loads[bin] + share <= target else { return nil }
            }
            bins[bin * spg + filled[bin]] = entry.expert
            filled[bin] += 1
            loads[bin] += share
            if filled[bin] < spg { lightest.insert(LoadedBin(load: loads[bin], index: bin)) }
        }
        return bins
    }

    /// Gives each packed set to the open GPU holding most of it, and keeps staying replicas in their slots.
    static func place(_ bins: [Int], on gpus: [Int], row: [Int], slotsPerGpu spg: Int, experts: Int) -> [Int] {
        let count = gpus.count
        // A packed set holds each expert once, so what it shares with a GPU is how many of its experts the GPU holds.
        func overlap(_ b: Int, _ gpu: Int) -> Int {
            var common = 0
            for i in (b * spg)..<((b + 1) * spg) {
                for slot in (gpu * spg)..<((gpu + 1) * spg) where row[slot] == bins[i] {
                    common += 1
                    break
                }
            }
            return common
        }
        // The open GPUs holding each expert now (`holders[start[e] ..< start[e + 1]]`), so that only pairs with
        // something in common are scored.
        var start = [Int](repeating: 0, count: experts + 1)
        for gpu in gpus { for expert in row[(gpu * spg)..<((gpu + 1) * spg)] { start[expert + 1] += 1 } }
        for expert in 0..<experts { start[expert + 1] += start[expert] }
        var next = start
        var holders = [Int](repeating: 0, count: count * spg)
        for (g, gpu) in gpus.enumerated() {
            for expert in row[(gpu * spg)..<((gpu + 1) * spg)] {
                holders[next[expert]] = g
                next[expert] += 1
            }
        }
        var pairs: [(bin: Int, gpu: Int, common: Int)] = []
        pairs.reserveCapacity(count * spg)
        var seen = [Int](repeating: -1, count: count)
        for b in 0..<count {
            for expert in bins[(b * spg)..<((b + 1) * spg)] {
                for g in holders[start[expert]..<start[expert + 1]] where seen[g] != b {
                    seen[g] = b
                    pairs.append((b, g, overlap(b, gpus[g])))
                }
            }
        }
        let assignment: [Int]
        if count <= 24 {
            var cost = [[Double]](repeating: [Double](repeating: 0, count: count), count: count)
            for pair in pairs { cost[pair.bin][pair.gpu] = -Double(pair.common) }
            assignment = Assignment.minimumCost(cost)
        } else {
            // Large re-packs: greedy by overlap (most in common first, then in the order found), which the exact
            // assignment would only refine.
            var taken = [Bool](repeating: false, count: count)
            var chosen = [Int](repeating: -1, count: count)
            for common in stride(from: spg, through: 1, by: -1) {
                for pair in pairs where pair.common == common && chosen[pair.bin] < 0 && !taken[pair.gpu] {
                    chosen[pair.bin] = pair.gpu
                    taken[pair.gpu] = true
                }
            }
            var free = (0..<count).filter { !taken[$0] }.makeIterator()
            for b in 0..<count where chosen[b] < 0 { chosen[b] = free.next() ?? 0 }
            assignment = chosen
        }
        var result = row
        for b in 0..<count {
            let gpu = gpus[assignment[b]]
            MovementMinimizer.keepSlots(
                of: row, in: (gpu * spg)..<((gpu + 1) * spg), for: bins[(b * spg)..<((b + 1) * spg)], into: &result)
        }
        return result
    }
}
