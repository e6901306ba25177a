import Foundation

/// A unit's own settings for its balancers, each overriding the server-wide default when present.
public struct UnitPolicy: Codable, Hashable, Sendable {
    /// Seconds between scheduled rebalances; 0: only on demand and when ranks change.
    public var rebalanceIntervalSeconds: Double?
    /// A scheduled rebalance publishes only when the predicted peak falls by more than this fraction.
    public var minGain: Double?
    /// At most this many replicas move in one rebalance; 0: no limit.
    public var maxMoves: Int?
    public var stalePolicy: StalenessPolicy?
    /// The expert-load window solved from, in seconds.
    public var windowSeconds: Double?
    /// Bytes of one routed expert's weights: what moving a replica copies.
    public var expertBytes: Int?
    /// Gigabytes a second one GPU sends or receives expert weights at.
    public var linkGBps: Double?

    public init(
        rebalanceIntervalSeconds: Double? = nil, minGain: Double? = nil, maxMoves: Int? = nil,
        stalePolicy: StalenessPolicy? = nil, windowSeconds: Double? = nil, expertBytes: Int? = nil, linkGBps: Double? = nil
    ) {
        self.rebalanceIntervalSeconds = rebalanceIntervalSeconds
        self.minGain = minGain
        self.maxMoves = maxMoves
        self.stalePolicy = stalePolicy
        self.windowSeconds = windowSeconds
        self.expertBytes = expertBytes
        self.linkGBps = linkGBps
    }

    public enum Limits {
        public static let interval = 10.0...(7 * 86_400.0)
        public static let maxMoves = 0...100_000_000
        public static let minWindow = 10.0
        /// 1 byte to 16 GB: the largest expert of any model in sight is far below.
        public static let expertBytes = 1...16_000_000_000
        /// 0.01 GB/s to 10 TB/s.
        public static let linkGBps = 0.01...10_000.0
    }

    /// Checks every member; `maxWindow` is the longest expert-load window the server keeps.
    public func validate(maxWindow: Duration) throws(ValidationError) {
        if let interval = rebalanceIntervalSeconds, interval != 0, !(interval.isFinite && Limits.interval.contains(interval)) {
            throw ValidationError(
                field: "policy.rebalanceIntervalSeconds",
                "must be 0 (only on demand) or from \(Int(Limits.interval.lowerBound)) to \(Int(Limits.interval.upperBound)) seconds, got \(interval)")
        }
        if let gain = minGain, !(gain.isFinite && (0...1).contains(gain)) {
            throw ValidationError(field: "policy.minGain", "must be a fraction from 0 to 1, got \(gain)")
        }
        if let moves = maxMoves {
            try Limits.maxMoves.check(moves, field: "policy.maxMoves")
        }
        if let bytes = expertBytes {
            try Limits.expertBytes.check(bytes, field: "policy.expertBytes")
        }
        if let rate = linkGBps, !(rate.isFinite && Limits.linkGBps.contains(rate)) {
            throw ValidationError(
                field: "policy.linkGBps",
                "must be from \(Limits.linkGBps.lowerBound) to \(Int(Limits.linkGBps.upperBound)) GB/s, got \(rate)")
        }
        if let window = windowSeconds {
            let longest = maxWindow.seconds
            guard window.isFinite, window >= Limits.minWindow, window <= longest else {
                throw ValidationError(
                    field: "policy.windowSeconds",
                    "must be from \(Int(Limits.minWindow)) to \(longest) seconds (the server's --expert-load-window), got \(window)")
            }
        }
    }
}

/// The settings a unit's balancers run with: its policy over the server's defaults.
public struct EffectivePolicy: Codable, Hashable, Sendable {
    public var rebalanceIntervalSeconds: Double
    public var minGain: Double
    /// nil: no limit.
    public var maxMoves: Int?
    public var stalePolicy: StalenessPolicy
    public var windowSeconds: Double
    public var expertBytes: Int
    public var linkGBps: Double

    /// DeepSeek-V3's routed expert in FP8 (three 7168 x 2048 matrices at a byte a weight) over a 400 Gb/s link.
    public static let defaultExpertBytes = 3 * 7_168 * 2_048
    public static let defaultLinkGBps = 50.0

    public init(
        rebalanceIntervalSeconds: Double, minGain: Double, maxMoves: Int?, stalePolicy: StalenessPolicy,
        windowSeconds: Double, expertBytes: Int = defaultExpertBytes, linkGBps: Double = defaultLinkGBps
    ) {
        self.rebalanceIntervalSeconds = rebalanceIntervalSeconds
        self.minGain = minGain
        self.maxMoves = maxMoves
        self.stalePolicy = stalePolicy
        self.windowSeconds = windowSeconds
        self.expertBytes = expertBytes
        self.linkGBps = linkGBps
    }

    enum CodingKeys: String, CodingKey {
        case rebalanceIntervalSeconds, minGain, maxMoves, stalePolicy, windowSeconds, expertBytes, linkGBps
    }

    /// Documents written before the transfer settings existed decode with their defaults.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            rebalanceIntervalSeconds: try container.decode(Double.self, forKey: .rebalanceIntervalSeconds),
            minGain: try container.decode(Double.self, forKey: .minGain),
            maxMoves: try container.decodeIfPresent(Int.self, forKey: .maxMoves),
            stalePolicy: try container.decode(StalenessPolicy.self, forKey: .stalePolicy),
            windowSeconds: try container.decode(Double.self, forKey: .windowSeconds),
            expertBytes: try container.decodeIfPresent(Int.self, forKey: .expertBytes) ?? Self.defaultExpertBytes,
            linkGBps: try container.decodeIfPresent(Double.self, forKey: .linkGBps) ?? Self.defaultLinkGBps)
    }

    public var interval: Duration { .milliseconds(Int64((rebalanceIntervalSeconds * 1_000).rounded())) }
    public var window: Duration { .milliseconds(Int64((windowSeconds * 1_000).rounded())) }

    // Encoded with every member, `maxMoves` as null for no limit: a dashboard reads what is in force.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(rebalanceIntervalSeconds, forKey: .rebalanceIntervalSeconds)
        try container.encode(minGain, forKey: .minGain)
        try container.encode(maxMoves, forKey: .maxMoves)
        try container.encode(stalePolicy, forKey: .stalePolicy)
        try container.encode(windowSeconds, forKey: .windowSeconds)
        try container.encode(expertBytes, forKey: .expertBytes)
        try container.encode(linkGBps, forKey: .linkGBps)
    }

    /// `policy` over these defaults.
    public func overridden(by policy: UnitPolicy) -> EffectivePolicy {
        var result = self
        if let value = policy.rebalanceIntervalSeconds { result.rebalanceIntervalSeconds = value }
        if let value = policy.minGain { result.minGain = value }
        if let value = policy.maxMoves { result.maxMoves = value == 0 ? nil : value }
        if let value = policy.stalePolicy { result.stalePolicy = value }
        if let value = policy.windowSeconds { result.windowSeconds = value }
        if let value = policy.expertBytes { result.expertBytes = value }
        if let value = policy.linkGBps { result.linkGBps = value }
        return result
    }
}
