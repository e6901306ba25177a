/// Why a placement version exists.
public enum PlacementTrigger: String, Codable, Sendable, CaseIterable {
    /// Version 1: what an engine runs before any rebalance.
    case initial
    /// The rebalancer's interval came round and the predicted gain beat the threshold.
    case schedule
    /// An operator asked for a rebalance.
    case manual
    /// A rank died or came back, so the serving ranks changed.
    case workerChange = "worker_change"
    /// An operator published a table of their own.
    case explicit
    /// An operator rolled back to an earlier version: its table, published as a new version.
    case rollback
    /// An operator's pin or forbid rule was added, removed or expired.
    case expertRule = "expert_rule"
}
