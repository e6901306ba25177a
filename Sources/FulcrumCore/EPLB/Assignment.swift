/// The assignment problem: which column each row takes so that the total cost is smallest (Hungarian algorithm
/// with potentials, O(n³)). `cost[row][column]`, square.
public enum Assignment {
    public static func minimumCost(_ cost: [[Double]]) -> [Int] {
        let n = cost.count
        guard n > 0 else { return [] }
        // 1-based arrays as in the classic formulation; column 0 is a sentinel.
        var u = [Double](repeating: 0, count: n + 1)
        var v = [Double](repeating: 0, count: n + 1)
        var owner = [Int](repeating: 0, count: n + 1)  // owner[column] = row
        var way = [Int](repeating: 0, count: n + 1)
        for row in 1...n {
            owner[0] = row
            var column0 = 0
            var minimum = [Double](repeating: .infinity, count: n + 1)
            var used = [Bool](repeating: false, count: n + 1)
            repeat {
                used[column0] = true
                let row0 = owner[column0]
                var delta = Double.infinity
                var column1 = 0
                for column in 1...n where !used[column] {
                    let reduced = cost[row0 - 1][column - 1] - u[row0] - v[column]
                    if reduced < minimum[column] {
                        minimum[column] = reduced
                        way[column] = column0
                    }
                    if minimum[column] < delta {
                        delta = minimum[column]
                        column1 = column
                    }
                }
                for column in 0...n {
                    if used[column] {
                        u[owner[column]] += delta
                        v[column] -= delta
                    } else {
                        minimum[column] -= delta
                    }
                }
                column0 = column1
            } while owner[column0] != 0
            repeat {
                let column1 = way[column0]
                owner[column0] = owner[column1]
                column0 = column1
            } while column0 != 0
        }
        var result = [Int](repeating: 0, count: n)
        for column in 1...n where owner[column] > 0 { result[owner[column] - 1] = column - 1 }
        return result
    }
}

/// Keeps what can stay: relabels a new placement's nodes and GPUs onto the previous one's, by the most replicas in
/// common (two assignment problems), then keeps every expert that stays on a GPU in its old slot. Relabelling
/// permutes whole GPUs inside nodes and whole nodes, so every GPU's load, and the balance, is unchanged.
public enum MovementMinimizer {
    public struct Result: Hashable, Sendable {
        public var solution: EPLBSolution
        /// Slots whose expert differs from the previous placement (weights that must be copied), per layer.
        public var moved: [Int]
    }

    /// - Parameters:
    ///   - nodes: nodes that keep their groups (1 under the global policy).
    public static func relabel(_ solution: EPLBSolution, previous: [[Int]], nodes requested: Int) -> Result {
        // Nodes that do not divide the GPUs cannot be kept whole; relabel across the unit instead.
        let nodes = requested > 0 && solution.gpus % requested == 0 ? requested : 1
        var relabelled = solution
        var moved: [Int] = []
        for layer in solution.phy2log.indices {
            guard layer < previous.count, previous[layer].count == solution.phy2log[layer].count else {
                moved.append(solution.phy2log[layer].count)
                continue
            }
            let row = relabel(
                solution.phy2log[layer], previous: previous[layer], gpus: solution.gpus, nodes: nodes)
            relabelled.phy2log[layer] = row
            moved.append(zip(row, previous[layer]).filter { $0 != $1 }.count)
        }
        return Result(solution: relabelled, moved: moved)
    }

    static func relabel(_ row: [Int], previous: [Int], gpus: Int, nodes: Int) -> [Int] {
        let perGpu = row.count / gpus
        let gpusPerNode = gpus / nodes
        func gpuContents(_ slots: [Int], _ gpu: Int) -> [Int] { Array(slots[(gpu * perGpu)..<((gpu + 1) * perGpu)]) }
        /// Replicas two slot lists have in common (multiset intersection), by merging them sorted.
        func overlap(_ a: [Int], _ b: [Int]) -> Int {
            let (x, y) = (a.sorted(), b.sorted())
            var (i, j, common) = (0, 0, 0)
            while i < x.count, j < y.count {
                if x[i] == y[j] {
                    common += 1
                    i += 1
                    j += 1
                } else if x[i] < y[j] {
                    i += 1
                } else {
                    j += 1
                }
            }
            return common
        }
        // Nodes first: new node j goes where previous node nodeFor[j] was.
        var nodeFor = Array(0..<nodes)
        if nodes > 1 {
            let nodeSlots = gpusPerNode * perGpu
            let cost = (0..<nodes).map { j in
                (0..<nodes).map { i in
                    -Double(overlap(Array(row[(j * nodeSlots)..<((j + 1) * nodeSlots)]), Array(previous[(i * nodeSlots)..<((i + 1) * nodeSlots)])))
                }
            }
            nodeFor = Assignment.minimumCost(cost)
        }
        var result = previous
        for j in 0..<nodes {
            let target = nodeFor[j]
            let newGpus = (j * gpusPerNode)..<((j + 1) * gpusPerNode)
            let oldGpus = (target * gpusPerNode)..<((target + 1) * gpusPerNode)
            let newContents = newGpus.map { gpuContents(row, $0) }
            let oldContents = oldGpus.map { gpuContents(previous, $0) }
            let cost = newContents.map { content in oldContents.map { -Double(overlap(content, $0)) } }
            let gpuFor = Assignment.minimumCost(cost)
            for (k, content) in newContents.enumerated() {
                let oldGpu = oldGpus.lowerBound + gpuFor[k]
                let slots = keepingSlots(of: oldContents[gpuFor[k]], for: content)
                result.replaceSubrange((oldGpu * perGpu)..<((oldGpu + 1) * perGpu), with: slots)
            }
        }
        return result
    }

    /// A GPU's new replicas in slot order: each expert it already holds stays in its old slot, the others fill the
    /// freed slots in order. `content` has as many replicas as `old` has slots.
    public static func keepingSlots(of old: [Int], for content: [Int]) -> [Int] {
        var remaining = content
        var placed = [Int?](repeating: nil, count: old.count)
        for (slot, expert) in old.enumerated() {
            if let index = remaining.firstIndex(of: expert) {
                placed[slot] = expert
                remaining.remove(at: index)
            }
        }
        return placed.indices.map { slot in placed[slot] ?? (remaining.isEmpty ? old[slot] : remaining.removeFirst()) }
    }

    /// `keepingSlots` for the GPU whose slots are `slots` of `row`, written into the same slots of `result`: the same
    /// answer without allocating, for the re-packs' many GPUs.
    static func keepSlots(of row: [Int], in slots: Range<Int>, for content: ArraySlice<Int>, into result: inout [Int]) {
        // A GPU holds a handful of slots: quadratic scans, with bit sets for what is taken, and nothing allocated.
        guard content.count <= 64, slots.count <= 64 else {
            let kept = keepingSlots(of: Array(row[slots]), for: Array(content))
            result.replaceSubrange(slots, with: kept)
            return
        }
        var used: UInt64 = 0
        var kept: UInt64 = 0
        for (offset, slot) in slots.enumerated() {
            var index = 0
            while index < content.count, used & (1 << index) != 0 || content[content.startIndex + index] != row[slot] { index += 1 }
            if index < content.count {
                used |= 1 << index
                kept |= 1 << offset
                result[slot] = row[slot]
            }
        }
        var next = 0
        for (offset, slot) in slots.enumerated() where kept & (1 << offset) == 0 {
            while next < content.count, used & (1 << next) != 0 { next += 1 }
            if next < content.count {
                used |= 1 << next
                result[slot] = content[content.startIndex + next]
            } else {
                result[slot] = row[slot]
            }
        }
    }
}
