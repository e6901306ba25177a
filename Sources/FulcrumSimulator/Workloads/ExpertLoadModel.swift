import Foundation

/// Built-in expert load: the share of each MoE layer's routed tokens that each of DeepSeek-V3's 256 experts (8
/// groups of 32) receives, for prefill and decode workloads, drifting slowly and switching now and then. The
/// expert-parallel balancer needs a load with the real one's shape to have anything worth doing, so the defaults
/// reproduce what the 12 public DeepSeek-V3/R1 dumps show (SGLang's expert-distribution recorder, sgl-project/sglang
/// #6017; each layer normalised to shares, figures in `Calibration`).
///
/// In log space an expert's share is a sum of independent normal parts, each a fixed draw per (seed, layer, expert):
/// - its group's popularity: a profile falling from group 0 to group 7 shared by every layer, plus a little per layer;
/// - inside the group, what the model's router prefers whatever the input (shared by every workload), what the
///   phase prefers (shared by the prefill workloads, and by the decode ones), and what the workload prefers, turned
///   slowly between two draws so the load drifts inside a workload; scaled per layer, since some layers route far
///   more unevenly than others.
public struct ExpertLoadModel: Sendable {
    /// What the public dumps show (58 MoE layers each, prefill / decode files).
    public enum Calibration {
        /// Std of log(share) per layer: mean 0.68 / 0.63, 10th–90th percentile 0.56–0.79 / 0.49–0.77.
        public static let logSpread = (mean: 0.66, p10: 0.52, p90: 0.78)
        /// Busiest expert / mean, per layer: mean 6.8 / 5.8.
        public static let hottestOverMean = 6.3
        /// Share of log(share) variance explained by the 8 group means: 0.22 / 0.30. Mean group share x 8, group 0
        /// to 7, in every file: 1.66 1.27 1.03 .95 .87 .78 .74 .70 / 1.92 1.28 1.01 .91 .81 .74 .68 .65.
        public static let groupVarianceShare = 0.26
        /// Pearson correlation of log shares, per layer: prefill–prefill 0.968, decode–decode 0.917,
        /// prefill–decode 0.789 (linear: 0.956, 0.898, 0.758).
        public static let samePhaseCorrelation = 0.94
        public static let crossPhaseCorrelation = 0.79
        /// A start-up table (expert i in slot i, slots 256-287 repeating experts 0-31), max/mean GPU load averaged
        /// over layers: 2.08 / 2.02 on 32 GPUs, 4.15 / 3.37 on 144.
        public static let startUpBalancedness32 = 2.05
        public static let startUpBalancedness144 = 3.8
    }

    public var seed: UInt64
    public var layers = ClusterShape.moeLayers
    public var experts = ClusterShape.routedExperts
    public var groups = ClusterShape.expertGroups
    /// Distinct workloads per phase (the public dumps have 8 prefill and 4 decode ones).
    public var prefillWorkloads = 8
    public var decodeWorkloads = 4
    /// Log of each group's mean share (x groups), the same in every layer: the dumps' profile, prefill and decode
    /// averaged.
    public var groupProfile = [0.58, 0.24, 0.02, -0.07, -0.17, -0.27, -0.34, -0.39]
    /// Std of a group's per-layer departure from the profile (group means correlate 0.6–0.86 between layers).
    public var groupJitter = 0.21
    /// Std of log(share) inside a group, drawn per layer uniformly from this range.
    public var withinSpread = 0.42...0.68
    /// Parts of the within-group variance: router, phase and workload (summing to 1).
    public var routerPart = 0.65
    public var phasePart = 0.27
    public var workloadPart = 0.08
    /// Seconds for the workload part to turn a full circle between its two draws: slow drift inside a workload.
    public var driftPeriod = 1_200.0

    public init(seed: UInt64 = 1) {
        self.seed = seed
    }

    public func count(_ role: ClusterShape.Role) -> Int { role == .prefill ? prefillWorkloads : decodeWorkloads }

    /// Workload `index` of `role` in log space: what stays, and the two draws the workload part turns between, so
    /// a share is proportional to `exp(fixed + cos a * turnA + sin a * turnB)`.
    public func parts(_ role: ClusterShape.Role, workload index: Int) -> (fixed: [[Double]], turnA: [[Double]], turnB: [[Double]]) {
        let phase = role == .prefill ? 1 : 2
        let workload = (index % count(role) + count(role)) % count(role)
        let router = routerPart.squareRoot()
        let phaseWeight = phasePart.squareRoot()
        let turn = workloadPart.squareRoot()
        let perGroup = max(1, experts / max(1, groups))
        var fixed: [[Double]] = []
        var turnA: [[Double]] = []
        var turnB: [[Double]] = []
        for layer in 0..<layers {
            let spread = withinSpread.lowerBound
                + (withinSpread.upperBound - withinSpread.lowerBound) * Self.uniform(seed, 0, layer)
            let jitter = KeyedNormal.row(seed, 1, layer, count: max(1, groups))
            let group = jitter.indices.map { g in (g < groupProfile.count ? groupProfile[g] : 0) + groupJitter * jitter[g] }
            let routerRow = KeyedNormal.row(seed, 2, layer, count: experts)
            let phaseRow = KeyedNormal.row(seed, 3, phase, layer, count: experts)
            fixed.append(
                (0..<experts).map { expert in
                    group[min(expert / perGroup, group.count - 1)]
                        + spread * (router * routerRow[expert] + phaseWeight * phaseRow[expert])
                })
            turnA.append(KeyedNormal.row(seed, 4, phase, workload, layer, count: experts).map { spread * turn * $0 })
            turnB.append(KeyedNormal.row(seed, 5, phase, workload, layer, count: experts).map { spread * turn * $0 })
        }
        return (fixed, turnA, turnB)
    }

    static func uniform(_ seed: UInt64, _ keys: Int...) -> Double {
        var state = seed
        for key in keys { state = KeyedNormal.mix(state ^ UInt64(bitPattern: Int64(key))) }
        return Double(state >> 11) / 9_007_199_254_740_992
    }
}
