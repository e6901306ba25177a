/// Re-packs one layer toward a target peak while keeping every GPU that can stay: the replica counts become a fresh
/// solve's, each GPU whose replicas still fit under the target keeps them, and only the rest are packed again
/// (heaviest replica first onto the lightest open GPU). When the rest cannot reach the target alone, the lightest
/// kept GPUs open too, a doubling number at a time. Packed sets then go to the open GPUs that already hold most of
/// them, and replicas that stay keep their slot.
///
/// For the global policy (any replica anywhere). Where local search stalls on GPUs of few slots (a decode unit has
/// two), pairs must be re-formed, and this keeps most of the unit while doing it.
enum LayerRepack {
    /// - Parameters:
    ///   - row: the row in use (`[slot]` → expert); excluded ranks' slots are kept.
    ///   - counts: the replica count each expert should have on the serving GPUs.
    ///   - target: the peak to reach.
    /// - Returns: the new row, or nil when even packing every serving GPU again misses the target.
    static func repack(
        row: [Int], weight: [Double], counts: [Int], target: Double, slotsPerGpu spg: Int, serving: [Bool]
    ) -> [Int]? {
        let gpus = serving.count
        let perReplica = weight.indices.map { counts[$0] > 0 ? weight[$0] / Double(counts[$0]) : 0 }
        // Current replicas per GPU, dropping those of experts over their new count (from the hottest GPUs first).
        var contents: [[Int]] = (0..<gpus).map { gpu in serving[gpu] ? Array(row[(gpu * spg)..<((gpu + 1) * spg)]) : [] }
        var have = [Int](repeating: 0, count: weight.count)
        for gpu in 0..<gpus { for expert in contents[gpu] { have[expert] += 1 } }
        var load = contents.map { $0.reduce(0.0) { $0 + perReplica[$1] } }
        var open = [Bool](repeating: false, count: gpus)
        var pool: [Int] = []
        let byLoad = (0..<gpus).filter { serving[$0] }.sorted { load[$0] > load[$1] || (load[$0] == load[$1] && $0 < $1) }
        for gpu in byLoad {
            for (index, expert) in contents[gpu].enumerated().reversed() where have[expert] > counts[expert] {
                have[expert] -= 1
                contents[gpu].remove(at: index)
                load[gpu] -= perReplica[expert]
                open[gpu] = true
            }
        }
        for expert in weight.indices where have[expert] < counts[expert] {
            pool.append(contentsOf: repeatElement(expert, count: counts[expert] - have[expert]))
        }
        for gpu in 0..<gpus where serving[gpu] && load[gpu] > target { open[gpu] = true }

        let kept = (0..<gpus).filter { serving[$0] && !open[$0] }.sorted { load[$0] < load[$1] || (load[$0] == load[$1] && $0 < $1) }
        var extra = 0
        while true {
            var opened = open
            for gpu in kept.prefix(extra) { opened[gpu] = true }
            let openGpus = (0..<gpus).filter { opened[$0] }
            var items = pool
            for gpu in openGpus { items += contents[gpu] }
            if let bins = pack(items, into: openGpus.count, perBin: spg, perReplica: perReplica, target: target) {
                return place(bins, on: openGpus, row: row, slotsPerGpu: spg)
            }
            if extra >= kept.count { return nil }
            extra = max(1, extra * 2)
        }
    }

    /// Heaviest first onto the lightest bin with room that lacks the expert; nil if a bin ends above the target or
    /// an item finds no bin.
    static func pack(_ items: [Int], into count: Int, perBin: Int, perReplica: [Double], target: Double) -> [[Int]]? {
        guard items.count == count * perBin else { return nil }
        let order = items.sorted { perReplica[$0] > perReplica[$1] || (perReplica[$0] == perReplica[$1] && $0 < $1) }
        var bins = [[Int]](repeating: [], count: count)
        var loads = [Double](repeating: 0, count: count)
        for item in order {
            var best: Int?
            for bin in 0..<count where bins[bin].count < perBin && !bins[bin].contains(item) {
                if best.map({ loads[bin] < loads[$0] }) ?? true { best = bin }
            }
            guard let bin = best else { return nil }
            bins[bin].append(item)
            loads[bin] += perReplica[item]
        }
        return loads.allSatisfy { $0 <= target } ? bins : nil
    }

    /// Gives each packed set to the open GPU holding most of it, and keeps staying replicas in their slots.
    static func place(_ bins: [[Int]], on gpus: [Int], row: [Int], slotsPerGpu spg: Int) -> [Int] {
        func overlap(_ bin: [Int], _ gpu: Int) -> Int {
            var old = Array(row[(gpu * spg)..<((gpu + 1) * spg)])
            var common = 0
            for expert in bin {
                if let index = old.firstIndex(of: expert) {
                    common += 1
                    old.remove(at: index)
                }
            }
            return common
        }
        // Which open GPUs hold each expert now, so that only pairs with something in common are scored.
        var holding: [Int: [Int]] = [:]
        for (g, gpu) in gpus.enumerated() {
            for expert in Set(row[(gpu * spg)..<((gpu + 1) * spg)]) { holding[expert, default: []].append(g) }
        }
        var pairs: [(bin: Int, gpu: Int, common: Int)] = []
        for (b, bin) in bins.enumerated() {
            var candidates: [Int] = []
            for expert in Set(bin) { candidates += holding[expert] ?? [] }
            for g in Set(candidates) { pairs.append((b, g, overlap(bin, gpus[g]))) }
        }
        let assignment: [Int]
        if gpus.count <= 24 {
            var cost = [[Double]](repeating: [Double](repeating: 0, count: gpus.count), count: bins.count)
            for pair in pairs { cost[pair.bin][pair.gpu] = -Double(pair.common) }
            assignment = Assignment.minimumCost(cost)
        } else {
            // Large re-packs: greedy by overlap, which the exact assignment would only refine.
            var taken = [Bool](repeating: false, count: gpus.count)
            var chosen = [Int](repeating: -1, count: bins.count)
            pairs.sort { $0.common > $1.common || ($0.common == $1.common && ($0.bin, $0.gpu) < ($1.bin, $1.gpu)) }
            for pair in pairs where chosen[pair.bin] < 0 && !taken[pair.gpu] {
                chosen[pair.bin] = pair.gpu
                taken[pair.gpu] = true
            }
            var free = (0..<gpus.count).filter { !taken[$0] }.makeIterator()
            for b in bins.indices where chosen[b] < 0 { chosen[b] = free.next() ?? 0 }
            assignment = chosen
        }
        var result = row
        for (b, bin) in bins.enumerated() {
            let gpu = gpus[assignment[b]]
            let slots = MovementMinimizer.keepingSlots(of: Array(row[(gpu * spg)..<((gpu + 1) * spg)]), for: bin)
            result.replaceSubrange((gpu * spg)..<((gpu + 1) * spg), with: slots)
        }
        return result
    }
}
