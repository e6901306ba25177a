import Foundation

/// What a prefill rank is working on: the queue its engine has not yet processed.
public struct PrefillLoad: Codable, Hashable, Sendable {
    public var queuedTokens: Int
    public var queuedRequests: Int
    /// Core-attention work of the queue, Σ n·c + n(n+1)/2 over its requests (DOMAIN §2.1).
    public var attentionWork: Int

    public init(queuedTokens: Int, queuedRequests: Int, attentionWork: Int) {
        self.queuedTokens = queuedTokens
        self.queuedRequests = queuedRequests
        self.attentionWork = attentionWork
    }
}

/// What a decode rank holds: KV-cache tokens of its running requests.
public struct DecodeLoad: Codable, Hashable, Sendable {
    public var kvTokensUsed: Int
    public var kvTokensCapacity: Int
    public var runningRequests: Int
    /// Output tokens the rank generated per second lately (all its requests together); the balancer grows each
    /// running request's KV by its share between reports. Optional.
    public var tokensPerSecond: Double?

    public init(kvTokensUsed: Int, kvTokensCapacity: Int, runningRequests: Int, tokensPerSecond: Double? = nil) {
        self.kvTokensUsed = kvTokensUsed
        self.kvTokensCapacity = kvTokensCapacity
        self.runningRequests = runningRequests
        self.tokensPerSecond = tokensPerSecond
    }
}

/// Tokens each of this GPU's expert slots received over a window: `slotTokens[layer][localSlot]`.
public struct ExpertWindow: Codable, Hashable, Sendable {
    public var windowStart: Date
    public var windowEnd: Date
    public var slotTokens: [[Int]]

    public init(windowStart: Date, windowEnd: Date, slotTokens: [[Int]]) {
        self.windowStart = windowStart
        self.windowEnd = windowEnd
        self.slotTokens = slotTokens
    }
}

/// One report from a worker (`POST /v1/workers/{id}/telemetry`). `seq` rises with every report a worker sends, so
/// a retried report is recognised and never applied twice.
public struct TelemetryReport: Codable, Hashable, Sendable {
    public var seq: Int
    public var sentAt: Date
    public var prefill: PrefillLoad?
    public var decode: DecodeLoad?
    public var experts: ExpertWindow?
    public var finished: [String]?
    /// Requests the engine took in since its previous report: they are in this report's figures. Optional; with it
    /// the attention balancers' rank models are exact, without it they fall back to timing.
    public var admitted: [String]?

    public init(
        seq: Int, sentAt: Date, prefill: PrefillLoad? = nil, decode: DecodeLoad? = nil, experts: ExpertWindow? = nil,
        finished: [String]? = nil, admitted: [String]? = nil
    ) {
        self.admitted = admitted
        self.seq = seq
        self.sentAt = sentAt
        self.prefill = prefill
        self.decode = decode
        self.experts = experts
        self.finished = finished
    }

    public enum Limits {
        /// Far above any real queue or cache, far below overflow when summed over 4,096 ranks.
        public static let count = 0...1_000_000_000_000
        public static let finishedPerReport = 0...65_536
        public static let requestIDLength = 1...128
        /// Exact in a double (JavaScript clients), and far from Int64's end: a seq at the top of Int64 would leave
        /// no later seq for the worker's next report.
        public static let seq = 0...(1 << 53)
    }

    /// Checks the report against the shape of the worker's unit; every failure names its field.
    public func validate(for unit: DeploymentUnit) throws(ValidationError) {
        try Limits.seq.check(seq, field: "seq")
        if let prefill {
            try Limits.count.check(prefill.queuedTokens, field: "prefill.queuedTokens")
            try Limits.count.check(prefill.queuedRequests, field: "prefill.queuedRequests")
            try Limits.count.check(prefill.attentionWork, field: "prefill.attentionWork")
        }
        if let decode {
            try Limits.count.check(decode.kvTokensUsed, field: "decode.kvTokensUsed")
            try Limits.count.check(decode.runningRequests, field: "decode.runningRequests")
            try (1...Limits.count.upperBound).check(decode.kvTokensCapacity, field: "decode.kvTokensCapacity")
            if let rate = decode.tokensPerSecond, !(rate.isFinite && rate >= 0 && rate <= 1e9) {
                throw ValidationError(field: "decode.tokensPerSecond", "must be a number from 0 to 1e9, got \(rate)")
            }
            guard decode.kvTokensUsed <= decode.kvTokensCapacity else {
                throw ValidationError(
                    field: "decode.kvTokensUsed",
                    "\(decode.kvTokensUsed) is more than kvTokensCapacity \(decode.kvTokensCapacity)")
            }
        }
        if let experts {
            guard experts.windowEnd >= experts.windowStart else {
                throw ValidationError(field: "experts.windowEnd", "must not be before windowStart")
            }
            guard experts.slotTokens.count == unit.model.moeLayers else {
                throw ValidationError(
                    field: "experts.slotTokens",
                    "must have one row per MoE layer: \(unit.model.moeLayers), got \(experts.slotTokens.count)")
            }
            for (layer, row) in experts.slotTokens.enumerated() {
                guard row.count == unit.slotsPerGpu else {
                    throw ValidationError(
                        field: "experts.slotTokens[\(layer)]",
                        "must have one count per slot of this GPU: \(unit.slotsPerGpu), got \(row.count)")
                }
                if let slot = row.firstIndex(where: { !Limits.count.contains($0) }) {
                    throw ValidationError(
                        field: "experts.slotTokens[\(layer)][\(slot)]",
                        "must be between 0 and \(Limits.count.upperBound), got \(row[slot])")
                }
            }
        }
        for (ids, field) in [(finished, "finished"), (admitted, "admitted")] {
            guard let ids else { continue }
            try Limits.finishedPerReport.check(ids.count, field: field)
            if let index = ids.firstIndex(where: { !Limits.requestIDLength.contains($0.utf8.count) }) {
                throw ValidationError(
                    field: "\(field)[\(index)]",
                    "request ids must be 1 to \(Limits.requestIDLength.upperBound) bytes long")
            }
        }
    }
}
