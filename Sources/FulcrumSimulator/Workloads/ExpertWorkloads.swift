import Foundation

/// The expert load a simulated unit routes its tokens by: `share[layer][expert]` = that expert's part of its layer's
/// routed tokens. Either the built-in model (`builtin`, the default: seeded, drifting) or real DeepSeek-V3/R1 dumps
/// (`load(directory:)`, SGLang's recorder files). A unit routes by one workload at a time and moves to the next every
/// period, so the expert-parallel balancer always has a shift to react to.
public struct ExpertWorkloads: Sendable {
    public struct Workload: Sendable {
        public var name: String
        /// [moeLayer][expert], each row summing to 1.
        public var share: [[Double]]

        public init(name: String, share: [[Double]]) {
            self.name = name
            self.share = share
        }
    }

    enum Source: Sendable {
        case recorded(Workload)
        /// Log-space parts of `ExpertLoadModel`: the share at angle a is exp(fixed + cos a * turnA + sin a * turnB).
        case modelled(name: String, fixed: [[Double]], turnA: [[Double]], turnB: [[Double]])
    }

    /// What the workloads are, for a run's first line: `builtin (seed 1)` or the directory read.
    public let origin: String
    let prefill: [Source]
    let decode: [Source]
    let driftPeriod: Double

    /// The built-in model's workloads for `seed`.
    public static func builtin(seed: UInt64 = 1) -> ExpertWorkloads {
        let model = ExpertLoadModel(seed: seed)
        func sources(_ role: ClusterShape.Role) -> [Source] {
            (0..<model.count(role)).map { index in
                let parts = model.parts(role, workload: index)
                return .modelled(
                    name: "builtin-\(role.rawValue)-\(index)", fixed: parts.fixed, turnA: parts.turnA, turnB: parts.turnB)
            }
        }
        return ExpertWorkloads(
            origin: "builtin (seed \(seed))", prefill: sources(.prefill), decode: sources(.decode),
            driftPeriod: model.driftPeriod)
    }

    /// Fixed workloads, as given.
    public init(prefill: [Workload], decode: [Workload], origin: String = "given") {
        self.init(origin: origin, prefill: prefill.map(Source.recorded), decode: decode.map(Source.recorded), driftPeriod: 0)
    }

    init(origin: String, prefill: [Source], decode: [Source], driftPeriod: Double) {
        self.origin = origin
        self.prefill = prefill
        self.decode = decode
        self.driftPeriod = driftPeriod
    }

    /// Reads every `prefill_*.json` and `decode_*.json` of the directory. Rows of dense layers (all zero) are
    /// dropped, leaving the model's 58 MoE layers.
    public static func load(directory: String) throws -> ExpertWorkloads {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
        } catch {
            throw BenchDataError("cannot read the expert-load matrices in \(directory): \(error.localizedDescription)")
        }
        struct File: Decodable { var logical_count: [[Double]] }
        var prefill: [Workload] = []
        var decode: [Workload] = []
        for name in names where name.hasPrefix("prefill_") || name.hasPrefix("decode_") {
            let path = "\(directory)/\(name)"
            let file: File
            do {
                file = try JSONDecoder().decode(File.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
            } catch {
                throw BenchDataError("\(path): not an expert-load matrix {\"logical_count\": [[...]]} (\(error))")
            }
            let rows = file.logical_count.filter { $0.contains { $0 > 0 } }
            guard rows.count == ClusterShape.moeLayers, rows.allSatisfy({ $0.count == ClusterShape.routedExperts }) else {
                throw BenchDataError(
                    "\(path): expected \(ClusterShape.moeLayers) MoE layers of \(ClusterShape.routedExperts) experts")
            }
            // Counts below zero are read as zero; every row kept has a positive count.
            let share = rows.map { row in
                let total = row.reduce(0) { $0 + max(0, $1) }
                return row.map { max(0, $0) / total }
            }
            let workload = Workload(name: String(name.dropLast(5)), share: share)
            if name.hasPrefix("prefill_") { prefill.append(workload) } else { decode.append(workload) }
        }
        guard !prefill.isEmpty, !decode.isEmpty else {
            throw BenchDataError("\(directory): needs prefill_*.json and decode_*.json expert-load matrices")
        }
        return ExpertWorkloads(prefill: prefill, decode: decode, origin: directory)
    }

    /// The workload a unit routes by `elapsed` seconds into the run: units start staggered, and each moves on
    /// every `period`. A modelled workload drifts: its share is re-evaluated each whole second.
    public func workload(for unit: ClusterShape.Unit, elapsed: Double, period: Double) -> Workload {
        let step = period > 0 ? Int(elapsed / period) : 0
        return workload(unit.role, index: unit.index + step, at: elapsed.rounded(.down))
    }

    /// Workload `index` (modulo their number) of `role`, `seconds` into its drift.
    public func workload(_ role: ClusterShape.Role, index: Int, at seconds: Double = 0) -> Workload {
        let list = role == .prefill ? prefill : decode
        switch list[(index % list.count + list.count) % list.count] {
        case .recorded(let workload): return workload
        case .modelled(let name, let fixed, let turnA, let turnB):
            let angle = driftPeriod > 0 ? 2 * Double.pi * seconds / driftPeriod : 0
            let (a, b) = (cos(angle), sin(angle))
            let share = fixed.indices.map { layer in
                var row = fixed[layer].indices.map { exp(fixed[layer][$0] + a * turnA[layer][$0] + b * turnB[layer][$0]) }
                let total = row.reduce(0, +)
                for expert in row.indices { row[expert] /= total }
                return row
            }
            return Workload(name: seconds == 0 ? name : "\(name)@\(Int(seconds))", share: share)
        }
    }

    public var prefillCount: Int { prefill.count }
    public var decodeCount: Int { decode.count }

    /// Every workload at the start of its drift, decode first (as the dumps' file names sort).
    public var all: [Workload] {
        (0..<decode.count).map { workload(.decode, index: $0) } + (0..<prefill.count).map { workload(.prefill, index: $0) }
    }
}
