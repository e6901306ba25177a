/// One MoE layer's placement under movement-aware local search: the row in use, changed one replica at a time.
///
/// Every change touches the layer's hottest serving GPU, and is one of:
/// - a **swap** of a replica on the hottest GPU with a lighter one elsewhere (two slots change);
/// - a **split**: some slot whose expert has a spare replica becomes one more replica of an expert on the hottest
///   GPU, lightening every GPU that holds it (one slot);
/// - a **replace**: a slot on the hottest GPU whose expert has a spare replica becomes a replica of a lighter
///   expert (one slot).
///
/// A change is taken only when the hottest GPU and every GPU it touches end below the old peak, so the layer's
/// sorted loads fall and the search ends. Moves are counted against the row in use: a slot changed back costs
/// nothing. Replicas stay in their region (a node under the hierarchical policy, so every group stays on its node;
/// the whole unit otherwise); excluded ranks are never touched and serve nothing; a forbidden expert never lands on
/// its rank and a pinned replica never leaves it.
struct LayerMoves {
    let weight: [Double]
    /// The row in use: moves are counted against it.
    let original: [Int]
    private(set) var row: [Int]
    let slotsPerGpu: Int
    let serving: [Bool]
    /// Region of each GPU: replicas never leave theirs.
    let region: [Int]
    private(set) var count: [Int]
    private(set) var loads: [Double]
    /// Each expert's load per serving replica (0 for one with none), kept with `count`.
    private var share: [Double]
    /// Serving slots of each expert: expert e's are `holders[e * stride ..< e * stride + count[e]]`. One flat array,
    /// so that copying a layer's state (each search step works on a copy) is a few buffer copies.
    private var holders: [Int]
    private var stride: Int
    private let forbidden: Set<Int>
    private let pinned: Set<Int>
    /// Serving slots whose expert differs from `original`.
    private(set) var moved = 0
    /// Searches for a change so far (`bestMove` calls by `step` and `reach`): what bounds a layer's planning time.
    private(set) var effort = 0
    /// Serving slots of each region, the only ones a change may touch.
    private let regionSlots: [[Int]]
    /// Each slot's GPU: looked up, not divided, in the search's inner loops.
    private let gpuOf: [Int]

    init(
        weight: [Double], original: [Int], row: [Int], slotsPerGpu: Int, serving: [Bool], region: [Int],
        rules: [ExpertRule] = []
    ) {
        self.weight = weight
        self.original = original
        self.row = row
        self.slotsPerGpu = slotsPerGpu
        self.serving = serving
        self.region = region
        let gpus = serving.count
        forbidden = Set(rules.filter { $0.kind == .forbid }.map { $0.expert * gpus + $0.rank })
        pinned = Set(rules.filter { $0.kind == .pin }.map { $0.expert * gpus + $0.rank })
        count = Array(repeating: 0, count: weight.count)
        for (slot, expert) in row.enumerated() where serving[slot / slotsPerGpu] && weight.indices.contains(expert) {
            count[expert] += 1
        }
        // Room for a few more replicas of every expert; `set` makes more when a split needs it.
        stride = max(1, count.max() ?? 0) + 2
        holders = Array(repeating: -1, count: weight.count * stride)
        var filled = Array(repeating: 0, count: weight.count)
        for (slot, expert) in row.enumerated() where serving[slot / slotsPerGpu] && weight.indices.contains(expert) {
            holders[expert * stride + filled[expert]] = slot
            filled[expert] += 1
        }
        var share = [Double](repeating: 0, count: weight.count)
        for expert in weight.indices where count[expert] > 0 { share[expert] = weight[expert] / Double(count[expert]) }
        self.share = share
        loads = Array(repeating: 0, count: gpus)
        for (slot, expert) in row.enumerated() where serving[slot / slotsPerGpu] && weight.indices.contains(expert) {
            loads[slot / slotsPerGpu] += share[expert]
        }
        for slot in row.indices where serving[slot / slotsPerGpu] && row[slot] != original[slot] { moved += 1 }
        gpuOf = row.indices.map { $0 / slotsPerGpu }
        var regionSlots = [[Int]](repeating: [], count: (region.max() ?? 0) + 1)
        for slot in row.indices where serving[slot / slotsPerGpu] { regionSlots[region[slot / slotsPerGpu]].append(slot) }
        self.regionSlots = regionSlots
    }

    var peak: Double { hottest.map { loads[$0] } ?? 0 }

    var hottest: Int? {
        var best: Int?
        for gpu in loads.indices where serving[gpu] && (best.map { loads[gpu] > loads[$0] } ?? true) { best = gpu }
        return best
    }

    var mean: Double {
        let gpus = serving.count { $0 }
        return gpus > 0 ? loads.indices.reduce(0.0) { serving[$1] ? $0 + loads[$1] : $0 } / Double(gpus) : 0
    }

    private func perReplica(_ expert: Int) -> Double { share[expert] }
    private func slots(of gpu: Int) -> Range<Int> { (gpu * slotsPerGpu)..<((gpu + 1) * slotsPerGpu) }

    /// Whether `gpu` holds `expert` in a slot other than `skipped`.
    private func holds(_ gpu: Int, _ expert: Int, except skipped: Int = -1) -> Bool {
        for k in 0..<count[expert] {
            let slot = holders[expert * stride + k]
            if slot != skipped && gpuOf[slot] == gpu { return true }
        }
        return false
    }

    private func inRegion(_ expert: Int, _ gpu: Int) -> Bool {
        for k in 0..<count[expert] where region[gpuOf[holders[expert * stride + k]]] == region[gpu] { return true }
        return false
    }

    private func isForbidden(_ expert: Int, on gpu: Int) -> Bool {
        !forbidden.isEmpty && forbidden.contains(expert * serving.count + gpu)
    }

    /// A pinned expert's only replica on its rank stays.
    private func locked(_ slot: Int) -> Bool {
        guard !pinned.isEmpty else { return false }
        let gpu = gpuOf[slot]
        return pinned.contains(row[slot] * serving.count + gpu) && !holds(gpu, row[slot], except: slot)
    }

    /// What moving `slot` to `expert` does to the moved count.
    private func cost(_ slot: Int, to expert: Int) -> Int {
        (expert != original[slot] ? 1 : 0) - (row[slot] != original[slot] ? 1 : 0)
    }

    /// One change: slot `a` takes expert `expertA` and, for a swap, slot `b` takes `expertB`.
    struct Move: Hashable, Sendable {
        var a: Int
        var expertA: Int
        var b: Int?
        var expertB: Int
        /// A rotation's third slot.
        var c: Int? = nil
        var expertC = -1
    }

    /// The loads of the few hottest GPUs, hottest first: the peak after a move is the largest of what it touched
    /// and the hottest GPU it did not.
    private func top(_ k: Int) -> [(gpu: Int, load: Double)] {
        var top: [(gpu: Int, load: Double)] = []
        top.reserveCapacity(k + 1)
        for gpu in loads.indices where serving[gpu] {
            guard top.count < k || loads[gpu] > top[top.count - 1].load else { continue }
            var index = top.count
            while index > 0, top[index - 1].load < loads[gpu] { index -= 1 }
            top.insert((gpu, loads[gpu]), at: index)
            if top.count > k { top.removeLast() }
        }
        return top
    }

    /// The `k` coolest serving GPUs of a region, coolest first.
    private func coolest(_ k: Int, region wanted: Int, excluding skipped: Int) -> [Int] {
        var result: [Int] = []
        result.reserveCapacity(k + 1)
        for gpu in loads.indices where serving[gpu] && gpu != skipped && region[gpu] == wanted {
            guard result.count < k || loads[gpu] < loads[result[result.count - 1]] else { continue }
            var index = result.count
            while index > 0, loads[result[index - 1]] > loads[gpu] { index -= 1 }
            result.insert(gpu, at: index)
            if result.count > k { result.removeLast() }
        }
        return result
    }

    /// The best change touching the hottest GPU; nil when none keeps every GPU it
    /// touches below the old peak. Best: the lowest new peak per moved slot, then the lowest load left on what it
    /// touched.
    ///
    /// With a `cap`, the search aims at a target peak instead: the hottest GPU must cool, and every other GPU a
    /// change touches may rise up to the cap, not just below the current peak. Each change then lowers the load
    /// above the cap, and a layer that no single change can improve may still reach the target.
    func bestMove(cap: Double? = nil) -> Move? {
        guard let hot = hottest else { return nil }
        let peak = loads[hot]
        guard peak > 0 else { return nil }
        let leaders = top(8)
        let limit = peak * (1 - 1e-12)
        let others = cap.map { min($0, limit) } ?? limit
        var best: (move: Move, score: Double, local: Double)?
        // Touched GPUs and their new loads, reused for every candidate.
        var touched: [(gpu: Int, load: Double)] = []
        touched.reserveCapacity(32)

        func consider(_ move: Move, cost: Int) {
            var highest = 0.0
            var cooled = peak
            for entry in touched {
                if entry.gpu == hot {
                    guard entry.load < limit else { return }
                    cooled = entry.load
                } else {
                    guard entry.load <= others else { return }
                }
                highest = max(highest, entry.load)
            }
            // Units before the untouched GPUs are read: a change that cannot beat the best so far stops here.
            let units = Double(max(cost, 0)) + (cost > 0 ? 0 : 0.5)
            if cap == nil, let current = best, (peak - highest) / units < current.score - 1e-12 * peak { return }
            var untouched = -Double.infinity
            var found = false
            for leader in leaders where !touched.contains(where: { $0.gpu == leader.gpu }) {
                untouched = leader.load
                found = true
                break
            }
            if !found {
                for gpu in loads.indices where serving[gpu] && !touched.contains(where: { $0.gpu == gpu }) {
                    untouched = max(untouched, loads[gpu])
                }
            }
            let newPeak = max(highest, untouched)
            // Gain per moved slot; a change that moves nothing (a slot put back) is worth any gain.
            let score = cap.map { (peak - max(cooled, $0)) / units } ?? (peak - newPeak) / units
            let local = (peak - highest) / units
            if let current = best {
                if score < current.score - 1e-12 * peak { return }
                if score <= current.score + 1e-12 * peak, local <= current.local { return }
            }
            best = (move, score, local)
        }

        for a in slots(of: hot) {
            let ea = row[a]
            guard weight.indices.contains(ea), !locked(a) else { continue }
            let la = perReplica(ea)
            // Swaps: the replica on `a` trades places with a lighter one on a cooler GPU of the region.
            for other in loads.indices where other != hot && serving[other] && region[other] == region[hot] && loads[other] < limit {
                let room = peak - loads[other]
                for b in slots(of: other) {
                    let eb = row[b]
                    guard eb != ea, weight.indices.contains(eb) else { continue }
                    let delta = la - perReplica(eb)
                    guard delta > 0, delta < room, !holds(other, ea), !holds(hot, eb), !locked(b),
                        !isForbidden(ea, on: other), !isForbidden(eb, on: hot)
                    else { continue }
                    touched.removeAll(keepingCapacity: true)
                    touched.append((hot, peak - delta))
                    touched.append((other, loads[other] + delta))
                    consider(Move(a: a, expertA: eb, b: b, expertB: ea), cost: cost(a, to: eb) + cost(b, to: ea))
                }
            }
        }

        // Rotations, when no swap helps: a replica on the hottest GPU moves to a cool GPU, one of whose replicas
        // moves to a second cool GPU, one of whose replicas comes to the hottest. The rise is shared by two GPUs,
        // which is what a GPU of few slots needs once its partners are all near the peak.
        // GPUs of many slots have swaps enough, and there a rotation's candidates grow as slots cubed.
        if best == nil, slotsPerGpu <= 4 {
            let cool = coolest(16, region: region[hot], excluding: hot)
            for a in slots(of: hot) {
                let ea = row[a]
                guard weight.indices.contains(ea), !locked(a) else { continue }
                let la = perReplica(ea)
                for first in cool where !holds(first, ea) && !isForbidden(ea, on: first) {
                    for b in slots(of: first) {
                        let eb = row[b]
                        guard weight.indices.contains(eb), eb != ea, !locked(b) else { continue }
                        let lb = perReplica(eb)
                        let firstLoad = loads[first] + la - lb
                        guard lb < la, firstLoad < limit else { continue }
                        for second in cool where second != first && !holds(second, eb) && !isForbidden(eb, on: second) {
                            for c in slots(of: second) {
                                let ec = row[c]
                                guard weight.indices.contains(ec), ec != eb, ec != ea, !locked(c), !holds(hot, ec),
                                    !holds(first, ec) || ec == eb, !isForbidden(ec, on: hot)
                                else { continue }
                                let lc = perReplica(ec)
                                guard lc < la, loads[second] + lb - lc < limit else { continue }
                                touched.removeAll(keepingCapacity: true)
                                touched.append((hot, peak - la + lc))
                                touched.append((first, firstLoad))
                                touched.append((second, loads[second] + lb - lc))
                                consider(
                                    Move(a: a, expertA: ec, b: b, expertB: ea, c: c, expertC: eb),
                                    cost: cost(a, to: ec) + cost(b, to: ea) + cost(c, to: eb))
                            }
                        }
                    }
                }
            }
        }

        // Splits: one more replica of an expert on the hottest GPU, taken from an expert with one to spare.
        var split: [Int] = []
        // Only a slot whose expert has a replica to spare can be taken.
        let spare = regionSlots[region[hot]].filter { weight.indices.contains(row[$0]) && count[row[$0]] >= 2 }
        for a in slots(of: hot) where weight.indices.contains(row[a]) && !split.contains(row[a]) {
            split.append(row[a])
            let ea = row[a]
            let (wa, ca) = (weight[ea], Double(count[ea]))
            let shrink = wa / ca - wa / (ca + 1)
            let added = wa / (ca + 1)
            for s in spare {
                let x = row[s]
                guard x != ea else { continue }
                let gpu = gpuOf[s]
                // The GPU taking the replica ends at least this high.
                guard loads[gpu] - share[x] + added <= others else { continue }
                guard serving[gpu], !holds(gpu, ea),
                    inRegion(ea, gpu), !locked(s), !isForbidden(ea, on: gpu)
                else { continue }
                let (wx, cx) = (weight[x], Double(count[x]))
                let grow = wx / (cx - 1) - wx / cx
                // x's other replicas grow: one that ends over the limit, with nothing here to cool it, rules this out.
                var blocked = false
                for k in 0..<count[x] where holders[x * stride + k] != s {
                    let other = gpuOf[holders[x * stride + k]]
                    if other != gpu, loads[other] + grow > others, !holds(other, ea) {
                        blocked = true
                        break
                    }
                }
                if blocked { continue }
                touched.removeAll(keepingCapacity: true)
                for k in 0..<count[ea] {
                    let gpu = gpuOf[holders[ea * stride + k]]
                    touched.append((gpu, loads[gpu] - shrink))
                }
                add(&touched, gpu, -wx / cx + wa / (ca + 1))
                for k in 0..<count[x] where holders[x * stride + k] != s { add(&touched, gpuOf[holders[x * stride + k]], grow) }
                consider(Move(a: s, expertA: ea, b: nil, expertB: -1), cost: cost(s, to: ea))
            }
        }

        // Replaces: a slot on the hottest GPU with a spare expert takes a lighter expert.
        var seen = [Bool](repeating: false, count: weight.count)
        var blockers: [Int] = []
        for s in slots(of: hot) {
            let x = row[s]
            guard weight.indices.contains(x), count[x] >= 2, !locked(s) else { continue }
            let (wx, cx) = (weight[x], Double(count[x]))
            let grow = wx / (cx - 1) - wx / cx
            // GPUs of x's other replicas that its lost replica would push over the limit: only an expert they hold
            // (whose added replica cools them) can be the one taken.
            blockers.removeAll(keepingCapacity: true)
            for k in 0..<count[x] where holders[x * stride + k] != s {
                let gpu = gpuOf[holders[x * stride + k]]
                if gpu != hot, loads[gpu] + grow > others, !blockers.contains(gpu) { blockers.append(gpu) }
            }
            seen.replaceSubrange(0..<seen.count, with: repeatElement(false, count: seen.count))
            for slot in regionSlots[region[hot]] {
                let y = row[slot]
                guard y != x, weight.indices.contains(y), !seen[y] else { continue }
                guard blockers.allSatisfy({ holds($0, y) }), !holds(hot, y), !isForbidden(y, on: hot) else { continue }
                seen[y] = true
                let (wy, cy) = (weight[y], Double(count[y]))
                let change = -wx / cx + wy / (cy + 1)
                guard change < 0 else { continue }
                let shrink = wy / cy - wy / (cy + 1)
                touched.removeAll(keepingCapacity: true)
                touched.append((hot, peak + change))
                for k in 0..<count[y] { add(&touched, gpuOf[holders[y * stride + k]], -shrink) }
                for k in 0..<count[x] where holders[x * stride + k] != s { add(&touched, gpuOf[holders[x * stride + k]], grow) }
                consider(Move(a: s, expertA: y, b: nil, expertB: -1), cost: cost(s, to: y))
            }
        }
        return best?.move
    }

    /// Adds `delta` to `gpu`'s entry in `touched`, from its current load if it has none yet.
    private func add(_ touched: inout [(gpu: Int, load: Double)], _ gpu: Int, _ delta: Double) {
        if let index = touched.firstIndex(where: { $0.gpu == gpu }) {
            touched[index].load += delta
        } else {
            touched.append((gpu, loads[gpu] + delta))
        }
    }

    mutating func apply(_ move: Move) {
        if let c = move.c {
            set(c, to: move.expertC)
        }
        if let b = move.b {
            set(b, to: move.expertB)
        }
        set(move.a, to: move.expertA)
        recompute()
    }

    /// Changes one slot's expert, keeping positions, counts and the moved count.
    private mutating func set(_ slot: Int, to expert: Int) {
        let old = row[slot]
        guard old != expert else { return }
        moved -= row[slot] != original[slot] ? 1 : 0
        if weight.indices.contains(old), let k = (0..<count[old]).first(where: { holders[old * stride + $0] == slot }) {
            count[old] -= 1
            holders[old * stride + k] = holders[old * stride + count[old]]
        }
        row[slot] = expert
        if count[expert] == stride { widen() }
        holders[expert * stride + count[expert]] = slot
        count[expert] += 1
        moved += expert != original[slot] ? 1 : 0
    }

    /// Doubles every expert's room in `holders`.
    private mutating func widen() {
        let wider = stride * 2
        var widened = [Int](repeating: -1, count: weight.count * wider)
        for expert in weight.indices {
            for k in 0..<count[expert] { widened[expert * wider + k] = holders[expert * stride + k] }
        }
        holders = widened
        stride = wider
    }

    /// Loads from scratch: a move changes replica counts, and with them the share of every replica of two experts.
    private mutating func recompute() {
        for expert in weight.indices { share[expert] = count[expert] > 0 ? weight[expert] / Double(count[expert]) : 0 }
        for gpu in loads.indices { loads[gpu] = 0 }
        for (slot, expert) in row.enumerated() where serving[gpuOf[slot]] && weight.indices.contains(expert) {
            loads[gpuOf[slot]] += share[expert]
        }
    }

    /// Moves until the layer's peak falls: one step of the search, as (peak drop, slots moved), or nil (and the
    /// layer untouched) when no sequence of changes lowers it.
    mutating func step(maxChanges: Int = 64) -> (gain: Double, cost: Int)? {
        let start = (row: row, count: count, share: share, loads: loads, holders: holders, stride: stride, moved: moved)
        let before = peak
        for _ in 0..<maxChanges {
            effort += 1
            guard let move = bestMove() else { break }
            apply(move)
            if peak < before * (1 - 1e-12) { return (before - peak, moved - start.moved) }
        }
        (row, count, share, loads, holders, stride, moved) = start
        return nil
    }

    /// Changes toward a target peak (`bestMove(cap:)`) until the layer gets there; false, and the layer untouched,
    /// when it does not.
    mutating func reach(_ target: Double, maxChanges: Int) -> Bool {
        let start = (row: row, count: count, share: share, loads: loads, holders: holders, stride: stride, moved: moved)
        for _ in 0..<maxChanges {
            if peak <= target { return true }
            effort += 1
            guard let move = bestMove(cap: target) else { break }
            apply(move)
        }
        if peak <= target { return true }
        (row, count, share, loads, holders, stride, moved) = start
        return false
    }

    /// Serves every expert with no serving replica: each, heaviest first, takes a slot from an expert with a spare
    /// replica, where the layer's peak stays lowest; the region is ignored (a dead rank can leave a region without
    /// room for its experts). False when some expert could not be served.
    @discardableResult
    mutating func serveAll() -> Bool {
        let unserved = weight.indices.filter { count[$0] == 0 }.sorted { weight[$0] > weight[$1] || (weight[$0] == weight[$1] && $0 < $1) }
        for expert in unserved {
            var best: (slot: Int, peak: Double)?
            for s in row.indices {
                let gpu = s / slotsPerGpu
                let x = row[s]
                guard serving[gpu], !weight.indices.contains(x) || count[x] >= 2, !locked(s), !isForbidden(expert, on: gpu)
                else { continue }
                // The peak of the GPUs this touches, as a tie-break good enough for a forced move.
                var load = loads[gpu] + weight[expert]
                if weight.indices.contains(x) { load -= weight[x] / Double(count[x]) }
                if best.map({ load < $0.peak }) ?? true { best = (s, load) }
            }
            guard let best else { return false }
            set(best.slot, to: expert)
            recompute()
        }
        return true
    }
}

