/// A prompt to prefill: `inputTokens` in all, the first `cachedTokens` of them already in KV cache (a reused prefix).
public struct PrefillRequest: Codable, Hashable, Sendable {
    public var id: String
    public var inputTokens: Int
    public var cachedTokens: Int

    public init(id: String, inputTokens: Int, cachedTokens: Int = 0) {
        self.id = id
        self.inputTokens = inputTokens
        self.cachedTokens = cachedTokens
    }

    /// Tokens to compute (n) and to dispatch through the MoE all-to-all.
    public var newTokens: Int { inputTokens - cachedTokens }
    public var attentionWork: Double { StepCost.attentionWork(cached: cachedTokens, newTokens: newTokens) }
}

/// A request to decode: its context (prompt plus anything generated so far) moves into the rank's KV cache and grows
/// by one token a step.
public struct DecodeRequest: Codable, Hashable, Sendable {
    public var id: String
    public var contextTokens: Int
    /// The most it may generate; when given, the rank must have room for all of it.
    public var maxNewTokens: Int?

    public init(id: String, contextTokens: Int, maxNewTokens: Int? = nil) {
        self.id = id
        self.contextTokens = contextTokens
        self.maxNewTokens = maxNewTokens
    }

    /// KV-cache tokens the rank must have free to take it.
    public var reservedTokens: Int { contextTokens + (maxNewTokens ?? 0) }
}

/// Bounds on what a gateway may send.
public enum AssignmentLimits {
    /// Requests in one batch.
    public static let batch = 1...4_096
    /// Tokens of one prompt or context: far above any model's window, far below overflow in Σ n².
    public static let tokens = 1...10_000_000
    public static let requestIDLength = TelemetryReport.Limits.requestIDLength

    public static func validate(_ requests: [PrefillRequest]) throws(ValidationError) {
        try batch.check(requests.count, field: "requests")
        var seen = Set<String>()
        for (index, request) in requests.enumerated() {
            let field = "requests[\(index)]"
            try checkID(request.id, field: "\(field).id", seen: &seen)
            try tokens.check(request.inputTokens, field: "\(field).inputTokens")
            guard (0..<request.inputTokens).contains(request.cachedTokens) else {
                throw ValidationError(
                    field: "\(field).cachedTokens",
                    "must be from 0 to inputTokens - 1 (\(request.inputTokens - 1)): at least one token is computed; got \(request.cachedTokens)")
            }
        }
    }

    public static func validate(_ requests: [DecodeRequest]) throws(ValidationError) {
        try batch.check(requests.count, field: "requests")
        var seen = Set<String>()
        for (index, request) in requests.enumerated() {
            let field = "requests[\(index)]"
            try checkID(request.id, field: "\(field).id", seen: &seen)
            try tokens.check(request.contextTokens, field: "\(field).contextTokens")
            if let maxNew = request.maxNewTokens { try tokens.check(maxNew, field: "\(field).maxNewTokens") }
        }
    }

    /// Ids a gateway reports finished.
    public static func validate(finished ids: [String]) throws(ValidationError) {
        try (1...TelemetryReport.Limits.finishedPerReport.upperBound).check(ids.count, field: "ids")
        if let index = ids.firstIndex(where: { !requestIDLength.contains($0.utf8.count) }) {
            throw ValidationError(
                field: "ids[\(index)]", "request ids must be 1 to \(requestIDLength.upperBound) bytes long")
        }
    }

    static func checkID(_ id: String, field: String, seen: inout Set<String>) throws(ValidationError) {
        guard requestIDLength.contains(id.utf8.count) else {
            throw ValidationError(field: field, "request ids must be 1 to \(requestIDLength.upperBound) bytes long")
        }
        guard seen.insert(id).inserted else {
            throw ValidationError(field: field, "'\(id)' appears twice in the batch")
        }
    }
}
