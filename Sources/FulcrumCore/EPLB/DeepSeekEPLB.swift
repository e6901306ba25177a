/// DeepSeek's published EPLB (deepseek-ai/EPLB, `rebalance_experts`), ported step for step: the baseline Fulcrum's
/// solver starts from and must never do worse than. Layers are solved independently, as torch does row-wise, and in
/// float32 (`weight.float()`), so sorts, sums and ties come out as DeepSeek's do.
public enum DeepSeekEPLB {
    public static func solve(_ problem: EPLBProblem) -> EPLBSolution {
        let (groups, nodes) = problem.policy == .hierarchical ? (problem.groups, problem.nodes) : (1, 1)
        var phy2log: [[Int]] = []
        var logcnt: [[Int]] = []
        for row in problem.weight {
            let (slots, counts) = hierarchical(
                row.map { Float($0) }, replicas: problem.replicas, groups: groups, nodes: nodes, gpus: problem.gpus)
            phy2log.append(slots)
            logcnt.append(counts)
        }
        return EPLBSolution(phy2log: phy2log, logcnt: logcnt, gpus: problem.gpus)
    }

    /// Items heaviest first, each to the lightest pack that still has room; every pack gets items/packs items.
    /// Ties go to the lower index, as Python's `min` and a stable sort do.
    static func balancedPacking(_ weights: [Float], packs: Int) -> (pack: [Int], rank: [Int]) {
        let perPack = weights.count / packs
        guard perPack > 1 else { return (Array(weights.indices), Array(repeating: 0, count: weights.count)) }
        let order = weights.indices.map { HeavierFirst(weight: weights[$0], index: $0) }.sorted().map(\.index)
        var pack = Array(repeating: 0, count: weights.count)
        var rank = Array(repeating: 0, count: weights.count)
        // The lightest pack with room, the lowest index among equals, as DeepSeek's linear scan picks it. No limit
        // and no distinctness: it always packs.
        let bins = LongestFirst.pack(order, weight: weights, bins: packs, perBin: perPack, distinct: false) ?? []
        for (position, item) in bins.enumerated() where item >= 0 {
            pack[item] = position / perPack
            rank[item] = position % perPack
        }
        return (pack, rank)
    }

    /// Gives each extra slot, one at a time, to the expert with the highest load per replica.
    static func replicate(_ weights: [Float], physical: Int) -> (phy2log: [Int], rank: [Int], logcnt: [Int]) {
        var phy2log = Array(weights.indices)
        var rank = Array(repeating: 0, count: weights.count)
        var logcnt = Array(repeating: 1, count: weights.count)
        guard physical > weights.count else { return (phy2log, rank, logcnt) }
        // The highest load per replica, the lowest index among equals, as DeepSeek's argmax picks it.
        var hottest = MinHeap(weights.indices.map { ReplicaShare(load: weights[$0], expert: $0) })
        for _ in weights.count..<physical {
            guard let best = hottest.min?.expert else { break }
            phy2log.append(best)
            rank.append(logcnt[best])
            logcnt[best] += 1
            hottest.replaceMin(with: ReplicaShare(load: weights[best] / Float(logcnt[best]), expert: best))
        }
        return (phy2log, rank, logcnt)
    }

    static func inverse(_ permutation: [Int]) -> [Int] {
        var inverse = Array(repeating: 0, count: permutation.count)
        for (index, value) in permutation.enumerated() { inverse[value] = index }
        return inverse
    }

    /// `rebalance_experts_hierarchical` for one layer.
    static func hierarchical(_ weight: [Float], replicas: Int, groups: Int, nodes: Int, gpus: Int) -> ([Int], [Int]) {
        let experts = weight.count
        let groupSize = experts / groups
        let groupsPerNode = groups / nodes
        let perGpu = replicas / gpus
        let expertsPerNode = experts / nodes
        let slotsPerNode = replicas / nodes

        // 1. Whole groups onto nodes.
        let groupTokens = (0..<groups).map { g in weight[(g * groupSize)..<((g + 1) * groupSize)].reduce(0, +) }
        let (groupPack, groupRank) = balancedPacking(groupTokens, packs: nodes)
        let log2mlog = (0..<experts).map { e in
            (groupPack[e / groupSize] * groupsPerNode + groupRank[e / groupSize]) * groupSize + e % groupSize
        }
        let mlog2log = inverse(log2mlog)

        var phy2log = Array(repeating: 0, count: replicas)
        var logcnt = Array(repeating: 0, count: experts)
        for node in 0..<nodes {
            // 2. Redundant slots inside the node.
            let tokens = (0..<expertsPerNode).map { weight[mlog2log[node * expertsPerNode + $0]] }
            let (phy2mlog, _, mlogcnt) = replicate(tokens, physical: slotsPerNode)
            // 3. The node's replicas onto its GPUs.
            let perReplica = phy2mlog.map { tokens[$0] / Float(mlogcnt[$0]) }
            let (pack, rankInPack) = balancedPacking(perReplica, packs: gpus / nodes)
            let pphy2phy = inverse(zip(pack, rankInPack).map { $0 * perGpu + $1 })
            for local in 0..<slotsPerNode {
                phy2log[node * slotsPerNode + local] = mlog2log[node * expertsPerNode + phy2mlog[pphy2phy[local]]]
            }
            for local in 0..<expertsPerNode {
                logcnt[mlog2log[node * expertsPerNode + local]] = mlogcnt[local]
            }
        }
        return (phy2log, logcnt)
    }
}

/// An expert by its load per replica, highest first, then by the lowest index: `replicate`'s order, the minimum of
/// a `MinHeap`.
struct ReplicaShare: Comparable, Sendable {
    var load: Float
    var expert: Int

    static func < (a: Self, b: Self) -> Bool { a.load > b.load || (a.load == b.load && a.expert < b.expert) }
}

/// An item by weight, heaviest first, then by the lower index: a total order, so any sort gives DeepSeek's stable one.
struct HeavierFirst: Comparable {
    var weight: Float
    var index: Int

    static func < (a: Self, b: Self) -> Bool { a.weight > b.weight || (a.weight == b.weight && a.index < b.index) }
}
