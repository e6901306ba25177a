/// One request of the replayed trace on its way through the simulated cluster.
struct SimulatedRequest: Sendable {
    /// The id Fulcrum knows it by: the trace's request, and `-rN` when a dead rank lost it and it was sent again.
    var id: String
    var inputTokens: Int
    var cachedTokens: Int
    var outputTokens: Int
    var arrivedAt: ContinuousClock.Instant
    var prefilledAt: ContinuousClock.Instant?
    var attempt = 0

    var newTokens: Int { inputTokens - cachedTokens }

    /// The same request under a fresh id: Fulcrum answers a repeated id with its first assignment.
    func resent() -> SimulatedRequest {
        var copy = self
        copy.attempt += 1
        let base = id.split(separator: "~").first.map(String.init) ?? id
        copy.id = "\(base)~r\(copy.attempt)"
        copy.prefilledAt = nil
        return copy
    }
}

/// A rank's condition, set by the failure scenarios.
struct RankHealth: Sendable {
    var dead = false
    /// Its steps take this many times as long (a throttled or faulty GPU).
    var slowdown = 1.0
}
