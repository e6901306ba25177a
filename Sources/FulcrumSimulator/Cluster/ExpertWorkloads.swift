import Foundation

/// Real DeepSeek-V3/R1 routed-token counts (`../shared/data/expert_load/deepseek_v3`, SGLang's recorder dumps):
/// one matrix per workload, `share[layer][expert]` = that expert's part of its layer's routed tokens. A simulated
/// unit routes its tokens by one workload at a time and moves to the next every period, so the expert-parallel
/// balancer always has a shift to react to.
public struct ExpertWorkloads: Sendable {
    public struct Workload: Sendable {
        public var name: String
        /// [moeLayer][expert], each row summing to 1.
        public var share: [[Double]]
    }

    public let prefill: [Workload]
    public let decode: [Workload]

    public init(prefill: [Workload], decode: [Workload]) {
        self.prefill = prefill
        self.decode = decode
    }

    /// Reads every `prefill_*.json` and `decode_*.json` of the directory. Rows of dense layers (all zero) are
    /// dropped, leaving the model's 58 MoE layers.
    public static func load(directory: String) throws -> ExpertWorkloads {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
        } catch {
            throw BenchDataError("cannot read the expert-load matrices in \(directory) (see --data): \(error.localizedDescription)")
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
            let share = rows.map { row in
                let total = row.reduce(0, +)
                return row.map { max(0, $0) / total }
            }
            let workload = Workload(name: String(name.dropLast(5)), share: share)
            if name.hasPrefix("prefill_") { prefill.append(workload) } else { decode.append(workload) }
        }
        guard !prefill.isEmpty, !decode.isEmpty else {
            throw BenchDataError("\(directory): needs prefill_*.json and decode_*.json expert-load matrices")
        }
        return ExpertWorkloads(prefill: prefill, decode: decode)
    }

    /// The workload a unit routes by `elapsed` seconds into the run: units start staggered, and each moves on
    /// every `period`.
    public func workload(for unit: ClusterShape.Unit, elapsed: Double, period: Double) -> Workload {
        let list = unit.role == .prefill ? prefill : decode
        let step = period > 0 ? Int(elapsed / period) : 0
        return list[(unit.index + step) % list.count]
    }
}
