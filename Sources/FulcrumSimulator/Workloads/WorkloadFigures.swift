import FulcrumCore
import Foundation

/// Summary figures of a trace: lengths, cached share, and how bursty its arrivals are. Computed the same way for the
/// built-in models and the real data: `WorkloadModelTests` checks them, `fulcrum bench workloads` prints them.
public struct TraceFigures: Sendable {
    public var inputMedian, inputP90, inputMean, outputMedian, outputP90, outputMean: Double
    public var cachedShare: Double
    public var rate: Double
    /// Variance / mean of request counts per 10 s, and the share of empty 1 s windows.
    public var dispersion10: Double
    public var emptySeconds: Double

    public init(_ trace: Trace) {
        let inputs = trace.requests.map { Double($0.inputTokens) }.sorted()
        let outputs = trace.requests.map { Double($0.outputTokens) }.sorted()
        inputMedian = percentile(inputs, 0.5)
        inputP90 = percentile(inputs, 0.9)
        inputMean = inputs.reduce(0, +) / Double(inputs.count)
        outputMedian = percentile(outputs, 0.5)
        outputP90 = percentile(outputs, 0.9)
        outputMean = outputs.reduce(0, +) / Double(outputs.count)
        cachedShare = Double(trace.requests.reduce(0) { $0 + $1.cachedTokens }) / inputs.reduce(0, +)
        let span = trace.requests.last?.time ?? 1
        rate = Double(trace.requests.count - 1) / span
        func counts(_ window: Double) -> [Double] {
            var counts = Array(repeating: 0.0, count: Int(span / window))
            for request in trace.requests where Int(request.time / window) < counts.count {
                counts[Int(request.time / window)] += 1
            }
            return counts
        }
        let tens = counts(10)
        let mean = tens.reduce(0, +) / Double(tens.count)
        dispersion10 = tens.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(tens.count) / mean
        let ones = counts(1)
        emptySeconds = Double(ones.count { $0 == 0 }) / Double(ones.count)
    }
}

/// Per-layer figures of an expert-load workload, averaged over layers.
public struct ExpertLoadFigures: Sendable {
    public var logSpread = 0.0
    public var hottestOverMean = 0.0
    public var groupVarianceShare = 0.0
    public var startUp32 = 0.0
    public var startUp144 = 0.0

    public init(_ share: [[Double]]) {
        for row in share {
            let logs = row.map { log(max($0, 1e-12)) }
            let mean = logs.reduce(0, +) / Double(logs.count)
            let variance = logs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(logs.count)
            logSpread += variance.squareRoot()
            hottestOverMean += (row.max() ?? 0) * Double(row.count)
            let groups = (0..<8).map { g in logs[(g * 32)..<(g * 32 + 32)].reduce(0, +) / 32 }
            groupVarianceShare += groups.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / 8 / variance
            startUp32 += Self.startUp(row, gpus: 32)
            startUp144 += Self.startUp(row, gpus: 144)
        }
        let layers = Double(share.count)
        logSpread /= layers
        hottestOverMean /= layers
        groupVarianceShare /= layers
        startUp32 /= layers
        startUp144 /= layers
    }

    /// Max / mean GPU load of an engine's start-up table: slot i holds expert i mod 256.
    public static func startUp(_ row: [Double], gpus: Int) -> Double {
        let table = (0..<288).map { $0 % 256 }
        return PlacementLoad.evaluate([table], weight: [row], slotsPerGpu: 288 / gpus).balancedness
    }

    /// Mean over layers of the Pearson correlation of two workloads' log shares.
    public static func correlation(_ a: [[Double]], _ b: [[Double]]) -> Double {
        zip(a, b).map { x, y -> Double in
            let (lx, ly) = (x.map { log(max($0, 1e-12)) }, y.map { log(max($0, 1e-12)) })
            let (mx, my) = (lx.reduce(0, +) / Double(lx.count), ly.reduce(0, +) / Double(ly.count))
            var (sxy, sxx, syy) = (0.0, 0.0, 0.0)
            for (u, v) in zip(lx, ly) {
                sxy += (u - mx) * (v - my)
                sxx += (u - mx) * (u - mx)
                syy += (v - my) * (v - my)
            }
            return sxy / (sxx * syy).squareRoot()
        }.reduce(0, +) / Double(a.count)
    }
}
