/// Which decode requests may still be held back, and since when each was: the rule the service applies and the
/// benchmark replays. A request held back for `limit` seconds, or for `limitSteps` of the unit's decode steps when
/// those are slower, is then placed (queued where its rank's engine will start it), so none waits forever; its
/// clock runs from its first hold until it is placed (a refusal for lack of room anywhere does not restart it).
/// Times are seconds on any one clock. The limit counts steps too because what holding buys is measured in them:
/// a unit whose steps take 2 s turns its running batch over 40 times slower than one at 50 ms.
public struct DecodeHolds: Sendable {
    public let limit: Double
    private var since: [String: Double] = [:]

    /// The limit in decode steps: `holdLimit` at DeepSeek's ~50 ms a step.
    public let limitSteps: Double

    public init(limit: Double = DecodeBalancer.holdLimit, limitSteps: Double? = nil) {
        self.limit = limit
        self.limitSteps = limitSteps ?? limit / 0.05
    }

    public var count: Int { since.count }

    /// Whether each request of the batch may be held back: only for a gateway that offers held requests again, and
    /// only until its clock reaches the limit.
    /// - Parameter stepSeconds: how long the unit's decode steps take (1 / a request's output tokens a second);
    ///   nil when unknown.
    public func mayHold(_ batch: [DecodeRequest], allowed: Bool = true, now: Double, stepSeconds: Double? = nil) -> [Bool] {
        let limit = max(limit, limitSteps * (stepSeconds ?? 0))
        return batch.map { allowed && now - (since[$0.id] ?? now) < limit }
    }

    /// Starts the clock of each request held back for the first time, and forgets each one placed.
    public mutating func record(_ batch: [DecodeRequest], _ outcomes: [DecodeBalancer.Outcome], now: Double) {
        for (request, outcome) in zip(batch, outcomes) {
            switch outcome {
            case .heldBack: if since[request.id] == nil { since[request.id] = now }
            case .placed: since[request.id] = nil
            case .noRoom: break
            }
        }
    }

    /// Gateways that gave up on a request never offer it again: once more than `bound` are remembered, forget those
    /// first held more than six limits ago.
    public mutating func prune(now: Double, bound: Int = 10_000) {
        guard since.count > bound else { return }
        since = since.filter { now - $0.value < 6 * limit }
    }
}
