/// The value below which a share `q` of `sorted` (ascending) lies, by nearest rank as every bench reports it;
/// NaN for no values.
public func percentile(_ sorted: [Double], _ q: Double) -> Double {
    sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]
}
