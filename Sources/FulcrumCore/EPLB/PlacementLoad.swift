/// What a placement is predicted to cost under a load: every expert's tokens split evenly over its replicas on
/// serving ranks, summed per GPU. A layer takes as long as its busiest GPU, so the sum over layers of that peak is
/// the MoE part of a step's time; the mean is what a perfect placement would give.
public struct PlacementLoad: Codable, Hashable, Sendable {
    /// Σ over layers of the busiest serving GPU's tokens.
    public var peakSum: Double
    /// Σ over layers of the mean serving GPU's tokens.
    public var meanSum: Double
    /// peakSum / meanSum: 1.0 is perfect (1.0 too when there is no load).
    public var balancedness: Double
    /// (layer, expert) pairs with no replica on a serving rank: their tokens have nowhere to go, and are left out
    /// of the loads above.
    public var unservedExperts: Int
    public var unservedTokens: Double
    /// Per layer: the busiest serving GPU's tokens.
    public var peaks: [Double]

    /// - Parameters:
    ///   - phy2log: `[layer][slot]` → expert.
    ///   - weight: `[layer][expert]` tokens.
    ///   - excludedRanks: ranks that serve nothing.
    public static func evaluate(
        _ phy2log: [[Int]], weight: [[Double]], slotsPerGpu: Int, excludedRanks: Set<Int> = []
    ) -> PlacementLoad {
        var peaks: [Double] = []
        var (peakSum, meanSum, unserved, unservedTokens) = (0.0, 0.0, 0, 0.0)
        for (layer, row) in phy2log.enumerated() {
            let loads = layerLoads(row, weight: weight[layer], slotsPerGpu: slotsPerGpu, excludedRanks: excludedRanks)
            unserved += loads.unserved
            unservedTokens += loads.unservedTokens
            let serving = loads.gpus.enumerated().filter { !excludedRanks.contains($0.offset) }.map(\.element)
            let peak = serving.max() ?? 0
            peaks.append(peak)
            peakSum += peak
            meanSum += serving.isEmpty ? 0 : serving.reduce(0, +) / Double(serving.count)
        }
        return PlacementLoad(
            peakSum: peakSum, meanSum: meanSum, balancedness: meanSum > 0 ? peakSum / meanSum : 1,
            unservedExperts: unserved, unservedTokens: unservedTokens, peaks: peaks)
    }

    /// One layer: tokens per GPU (0 on excluded ranks) and how many experts have no serving replica.
    static func layerLoads(
        _ row: [Int], weight: [Double], slotsPerGpu: Int, excludedRanks: Set<Int>
    ) -> (gpus: [Double], unserved: Int, unservedTokens: Double) {
        var replicas = [Int](repeating: 0, count: weight.count)
        for (slot, expert) in row.enumerated() where !excludedRanks.contains(slot / slotsPerGpu) {
            if weight.indices.contains(expert) { replicas[expert] += 1 }
        }
        var gpus = [Double](repeating: 0, count: slotsPerGpu > 0 ? row.count / slotsPerGpu : 0)
        for (slot, expert) in row.enumerated() where !excludedRanks.contains(slot / slotsPerGpu) {
            if weight.indices.contains(expert) { gpus[slot / slotsPerGpu] += weight[expert] / Double(replicas[expert]) }
        }
        let unserved = replicas.indices.filter { replicas[$0] == 0 }
        return (gpus, unserved.count, unserved.reduce(0) { $0 + weight[$1] })
    }
}
