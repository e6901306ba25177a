import Foundation
import FulcrumSimulator

/// `fulcrum bench workloads`: the figures of each built-in workload model, beside those of the real data it stands
/// for when `--data` (or `FULCRUM_DATA`) names it. The figures the README quotes for the models come from here.
public struct WorkloadsBenchmark: Sendable {
    public var seed: UInt64 = 1
    /// Requests drawn from each request model.
    public var count = 100_000
    /// The real data's directory, to compare with.
    public var data: String?

    public init() {}

    /// The real trace each request model stands for (ServeGen's, the reasoning model's, is a distribution that
    /// `bench balance` samples; it is left out here).
    public static let counterparts = ["builtin": "azure-conv", "builtin-code": "azure-code", "builtin-long": "mooncake"]

    public func run() async throws {
        let data = WorkloadCatalog.dataDirectory(data)
        print("requests: \(count) per model, seed \(seed)\(data.map { "; real data from \($0)" } ?? "")")
        print("workload            source       input p50/p90/mean        output p50/p90/mean   cached  disp10  empty 1 s")
        func row(_ name: String, _ source: String, _ f: TraceFigures) {
            print(
                String(
                    format: "%@ %@ %6.0f/%6.0f/%6.0f   %5.0f/%5.0f/%5.0f   %6.3f  %6.2f  %9.3f",
                    name.padding(toLength: 19, withPad: " ", startingAt: 0),
                    source.padding(toLength: 12, withPad: " ", startingAt: 0), f.inputMedian, f.inputP90, f.inputMean,
                    f.outputMedian, f.outputP90, f.outputMean, f.cachedShare, f.dispersion10, f.emptySeconds))
        }
        for model in RequestModel.presets {
            row(model.name, "model", TraceFigures(model.trace(count: count, seed: seed)))
            if let data, let real = Self.counterparts[model.name] {
                row("", real, TraceFigures(try WorkloadCatalog.requests(real, data: data, seed: seed)))
            }
        }

        print("")
        print("expert load (mean over workloads)  log spread  hottest/mean  group share  start-up 32 GPUs  144 GPUs  corr same/cross phase")
        func expertRows(_ label: String, _ workloads: ExpertWorkloads) {
            for role in [ClusterShape.Role.prefill, .decode] {
                let count = role == .prefill ? workloads.prefillCount : workloads.decodeCount
                let shares = (0..<count).map { workloads.workload(role, index: $0).share }
                let figures = shares.map(ExpertLoadFigures.init)
                let mean = { (value: (ExpertLoadFigures) -> Double) in figures.map(value).reduce(0, +) / Double(figures.count) }
                let other = workloads.workload(role == .prefill ? .decode : .prefill, index: 0).share
                let same = shares.count > 1 ? ExpertLoadFigures.correlation(shares[0], shares[1]) : 1
                print(
                    String(
                        format: "%@ %10.2f  %12.2f  %11.2f  %16.2f  %8.2f  %.2f/%.2f",
                        "\(label) \(role.rawValue)".padding(toLength: 34, withPad: " ", startingAt: 0),
                        mean(\.logSpread), mean(\.hottestOverMean), mean(\.groupVarianceShare), mean(\.startUp32),
                        mean(\.startUp144), same, ExpertLoadFigures.correlation(shares[0], other)))
            }
        }
        expertRows("builtin (seed \(seed))", ExpertWorkloads.builtin(seed: seed))
        if let data {
            expertRows(WorkloadCatalog.recordedExpertLoad.name, try WorkloadCatalog.expertLoad(WorkloadCatalog.recordedExpertLoad.name, data: data, seed: seed))
        }
        print("disp10: variance / mean of requests per 10 s; group share: of log-share variance; corr: of log shares, workload 0 with workload 1 of its phase and with workload 0 of the other")
    }
}
