/// What a balancer does with a rank whose telemetry is older than the staleness limit.
public enum StalenessPolicy: String, Codable, Sendable, CaseIterable, StrictEnum {
    /// Keep using the last reported figures plus what was assigned to the rank since (the default).
    case lastPlusAssigned = "last-plus-assigned"
    /// Give the rank no new work until it reports again.
    case exclude
}

/// One rank as the balancers see it: whether it may take new work, and the load figures to use.
public struct RankLoad: Codable, Hashable, Sendable {
    public var rank: Int
    public var worker: String
    public var state: WorkerState
    /// May take new work: active, reported since Fulcrum started, and fresh (or stale under last-plus-assigned).
    public var eligible: Bool
    public var stale: Bool
    /// Seconds since the last applied report; nil when none arrived since Fulcrum started.
    public var ageSeconds: Double?
    public var prefill: PrefillLoad?
    public var decode: DecodeLoad?

    public init(
        rank: Int, worker: String, state: WorkerState, eligible: Bool, stale: Bool, ageSeconds: Double?,
        prefill: PrefillLoad?, decode: DecodeLoad?
    ) {
        self.rank = rank
        self.worker = worker
        self.state = state
        self.eligible = eligible
        self.stale = stale
        self.ageSeconds = ageSeconds
        self.prefill = prefill
        self.decode = decode
    }

    /// Decides eligibility: dead, cordoned and draining ranks get nothing; a rank that has not reported since
    /// Fulcrum started is never assumed healthy; a stale one follows the policy.
    public static func eligible(state: WorkerState, hasReport: Bool, stale: Bool, policy: StalenessPolicy) -> Bool {
        guard state == .active, hasReport else { return false }
        return !stale || policy == .lastPlusAssigned
    }
}
