/// The nearest-rank percentile: the smallest value of `sorted` (ascending) with at least a share `q` of the values
/// at or below it, so p50 of 1...100 is 50 and p99 is 99. NaN for no values. Every figure Fulcrum prints or exports
/// (metrics, simulation reports, benchmarks) uses this one definition.
public func percentile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let rank = Int((q * Double(sorted.count)).rounded(.up))
    return sorted[min(sorted.count - 1, max(0, rank - 1))]
}
