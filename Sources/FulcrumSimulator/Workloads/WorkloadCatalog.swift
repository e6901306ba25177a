import Foundation

/// The workloads `--workload` and `--expert-load` name: the built-in models (the default; no files needed) or real
/// third-party data read from `--data DIR` / `FULCRUM_DATA` (laid out as their publishers do, `recorded` below),
/// never from a default path, so a fresh clone runs as it is and a missing file is named before anything starts.
public enum WorkloadCatalog {
    /// Real traces by name, and their file under the data directory.
    public static let recorded: [(name: String, path: String)] = [
        ("azure-conv", "azure_llm_2023/AzureLLMInferenceTrace_conv.csv"),
        ("azure-code", "azure_llm_2023/AzureLLMInferenceTrace_code.csv"),
        ("mooncake", "mooncake/conversation_trace.jsonl"),
        ("mooncake-synthetic", "mooncake/synthetic_trace.jsonl"),
    ]
    /// The real DeepSeek-V3/R1 expert-load dumps under the data directory.
    public static let recordedExpertLoad = (name: "deepseek-v3", path: "expert_load/deepseek_v3")

    public static var workloadNames: [String] { RequestModel.presets.map(\.name) + recorded.map(\.name) }

    /// Where the real data is: `--data`, else `FULCRUM_DATA`; nil when neither is set.
    public static func dataDirectory(_ flag: String?, environment: [String: String] = ProcessInfo.processInfo.environment)
        -> String?
    {
        if let flag, !flag.isEmpty { return flag }
        return environment["FULCRUM_DATA"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The requests of `choice`: a built-in model's `count` requests from `seed`, a real trace by name, or a Mooncake
    /// `.jsonl` / Azure `.csv` file.
    public static func requests(_ choice: String, data: String?, seed: UInt64, count: Int = 50_000) throws -> Trace {
        if let model = RequestModel.presets.first(where: { $0.name == choice }) {
            return model.trace(count: count, seed: seed)
        }
        let path = try file(for: choice, data: data)
        let name = recorded.contains { $0.name == choice } ? choice : String(choice.split(separator: "/").last ?? Substring(choice))
        return path.hasSuffix(".jsonl")
            ? try BalanceTraces.mooncake(path, name: name) : try BalanceTraces.azure(path, name: name)
    }

    /// The expert load of `choice`: `builtin` (seeded), `deepseek-v3` under the data directory, or a directory of
    /// SGLang expert-distribution dumps.
    public static func expertLoad(_ choice: String, data: String?, seed: UInt64) throws -> ExpertWorkloads {
        if choice == "builtin" { return ExpertWorkloads.builtin(seed: seed) }
        return try ExpertWorkloads.load(directory: try expertDirectory(for: choice, data: data))
    }

    /// Checks, without reading them, that the files a choice needs are there: the error names the flag to fix.
    public static func check(workload: String, expertLoad: String, data: String?) throws {
        if !RequestModel.presets.contains(where: { $0.name == workload }) {
            let path = try file(for: workload, data: data)
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw BenchDataError("--workload \(workload): cannot read \(path)\(dataHint(data))")
            }
        }
        if expertLoad != "builtin" {
            let directory = try expertDirectory(for: expertLoad, data: data)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw BenchDataError(
                    "--expert-load \(expertLoad): no directory \(directory)\(dataHint(data)); the choices are builtin, "
                        + "\(recordedExpertLoad.name) (with --data) or a directory of SGLang expert-distribution dumps")
            }
        }
    }

    static func file(for choice: String, data: String?) throws -> String {
        if let known = recorded.first(where: { $0.name == choice }) {
            guard let data else {
                throw BenchDataError(
                    "--workload \(choice) replays a real trace (\(known.path)) and needs --data DIR or FULCRUM_DATA "
                        + "naming the directory that holds it; the built-in workloads need no files: "
                        + RequestModel.presets.map(\.name).joined(separator: ", "))
            }
            return "\(data)/\(known.path)"
        }
        guard choice.hasSuffix(".jsonl") || choice.hasSuffix(".csv") else {
            throw BenchDataError(
                "--workload must be one of \(workloadNames.joined(separator: ", ")), or a Mooncake .jsonl or Azure .csv file")
        }
        return choice
    }

    static func expertDirectory(for choice: String, data: String?) throws -> String {
        guard choice == recordedExpertLoad.name else { return choice }
        guard let data else {
            throw BenchDataError(
                "--expert-load \(choice) reads the real dumps (\(recordedExpertLoad.path)) and needs --data DIR or "
                    + "FULCRUM_DATA; --expert-load builtin needs no files")
        }
        return "\(data)/\(recordedExpertLoad.path)"
    }

    private static func dataHint(_ data: String?) -> String {
        data.map { " (under the data directory \($0), from --data or FULCRUM_DATA)" } ?? ""
    }
}
