/// The traces `fulcrum simulate --trace` knows by name, read from the third-party data directory; any other value
/// is the path of a Mooncake JSON-lines or Azure CSV trace.
public enum TraceCatalog {
    public static let names = ["mooncake", "mooncake-synthetic", "azure-code", "azure-conv"]

    public static func load(_ choice: String, data: String) throws -> Trace {
        switch choice {
        case "mooncake": return try BalanceTraces.mooncake("\(data)/mooncake/conversation_trace.jsonl", name: choice)
        case "mooncake-synthetic": return try BalanceTraces.mooncake("\(data)/mooncake/synthetic_trace.jsonl", name: choice)
        case "azure-code":
            return try BalanceTraces.azure("\(data)/azure_llm_2023/AzureLLMInferenceTrace_code.csv", name: choice)
        case "azure-conv":
            return try BalanceTraces.azure("\(data)/azure_llm_2023/AzureLLMInferenceTrace_conv.csv", name: choice)
        default:
            let name = String(choice.split(separator: "/").last ?? Substring(choice))
            if choice.hasSuffix(".jsonl") { return try BalanceTraces.mooncake(choice, name: name) }
            if choice.hasSuffix(".csv") { return try BalanceTraces.azure(choice, name: name) }
            throw BenchDataError(
                "--trace must be one of \(names.joined(separator: ", ")), or a Mooncake .jsonl or Azure .csv file")
        }
    }
}
