/// Longest processing time first: items, heaviest first, each onto the lightest bin with room that will take it (the
/// lowest index among equals), until every bin holds `perBin`. DeepSeek's balanced packing and the re-packs share it.
///
/// Two stretches need no heap: while every bin is empty the lightest is simply the next by index, and once every
/// open bin has one slot left each takes one item and is full, so their order no longer changes and one sort does.
/// With two slots a GPU (a decode unit), that is the whole packing.
enum LongestFirst {
    /// - Parameters:
    ///   - order: item ids, heaviest first; `bins * perBin` of them.
    ///   - weight: each item's weight, by id.
    ///   - limit: no bin may end above it.
    ///   - distinct: a bin never takes an item it already holds.
    /// - Returns: the bins' items in arrival order, bin `b`'s at `b * perBin ..< (b + 1) * perBin`; nil as soon as a
    ///   bin would pass the limit or an item finds no bin.
    static func pack<Load: BinaryFloatingPoint & Sendable>(
        _ order: [Int], weight: [Load], bins count: Int, perBin: Int, limit: Load = .infinity, distinct: Bool
    ) -> [Int]? {
        guard order.count == count * perBin, perBin > 0 else { return nil }
        var bins = [Int](repeating: -1, count: count * perBin)
        var filled = [Int](repeating: 0, count: count)
        var loads = [Load](repeating: 0, count: count)
        func holds(_ bin: Int, _ item: Int) -> Bool {
            distinct && bins[(bin * perBin)..<(bin * perBin + filled[bin])].contains(item)
        }
        var next = 0
        while next < count, weight[order[next]] > 0 {
            guard weight[order[next]] <= limit else { return nil }
            bins[next * perBin] = order[next]
            filled[next] = 1
            loads[next] = weight[order[next]]
            next += 1
        }
        var lightest = MinHeap((0..<count).filter { filled[$0] < perBin }.map { LoadedBin(load: loads[$0], index: $0) })
        var lastSlot = (0..<count).count { filled[$0] == perBin - 1 }
        // Bins passed over because they hold the item already: back in the heap once it is placed.
        var holding: [LoadedBin<Load>] = []
        while next < order.count, lastSlot < lightest.count {
            let item = order[next]
            next += 1
            while let bin = lightest.min, holds(bin.index, item) {
                holding.append(bin)
                lightest.removeMin()
            }
            guard var bin = lightest.min else { return nil }
            bins[bin.index * perBin + filled[bin.index]] = item
            filled[bin.index] += 1
            bin.load += weight[item]
            // Loads only grow: a bin above the limit already fails the pack.
            guard bin.load <= limit else { return nil }
            if filled[bin.index] == perBin - 1 { lastSlot += 1 }
            if filled[bin.index] < perBin {
                lightest.replaceMin(with: bin)
            } else {
                lightest.removeMin()
                lastSlot -= 1
            }
            for bin in holding { lightest.insert(bin) }
            holding.removeAll(keepingCapacity: true)
        }
        let walk = lightest.sorted()
        var taken = [Bool](repeating: false, count: walk.count)
        var first = 0
        while next < order.count {
            let item = order[next]
            next += 1
            while first < walk.count, taken[first] { first += 1 }
            var at = first
            while at < walk.count, taken[at] || holds(walk[at].index, item) { at += 1 }
            guard at < walk.count, walk[at].load + weight[item] <= limit else { return nil }
            taken[at] = true
            bins[walk[at].index * perBin + filled[walk[at].index]] = item
            filled[walk[at].index] += 1
        }
        return bins
    }
}

/// A bin by its load, lightest first, then by index: the order in which the packings pick bins.
struct LoadedBin<Load: Comparable & Sendable>: Comparable, Sendable {
    var load: Load
    var index: Int

    static func < (a: Self, b: Self) -> Bool { a.load < b.load || (a.load == b.load && a.index < b.index) }
}
