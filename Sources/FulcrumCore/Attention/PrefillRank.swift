/// A prefill rank's queue as its engine will run it: each step takes up to `budget` new tokens first come first
/// served, chunking long prompts, and costs tokens + attended pairs / 14,800. `profile[s]` is the predicted cost
/// of the s-th coming step, which is what lock-step balancing is about: a long prompt's late chunks attend to
/// everything before them, so per-step cost is lumpy and totals alone cannot balance steps.
public struct PrefillRank: Hashable, Sendable {
    /// New tokens one step takes (the engine's max batch tokens).
    public let budget: Int
    /// Predicted cost of each coming step, the next first.
    public private(set) var profile: [Double] = []
    /// New tokens queued: where the next request's tokens start in the stream.
    public private(set) var queuedTokens = 0
    /// Σ attended pairs of the queued tokens (core-attention work).
    public private(set) var attentionWork = 0.0
    public private(set) var queuedRequests = 0

    public init(budget: Int) {
        self.budget = max(1, budget)
    }

    /// Steps planned one by one; whatever lies beyond is summed into one last entry of the profile, so a huge
    /// reported queue (or a tiny step budget) costs bounded memory and time.
    public static let horizon = 512

    /// Steps until the queue drains.
    public var steps: Int { (queuedTokens + budget - 1) / budget }

    /// Queues new tokens `[from, to)` of a request with `cached` cached tokens (`from` > 0 for one already begun).
    public mutating func append(cached: Int, from: Int = 0, to: Int) {
        guard to > from else { return }
        forEachChunk(cached: cached, from: from, to: to) { step, cost in add(cost, at: step) }
        queuedTokens += to - from
        attentionWork += StepCost.pairs(cached: cached, from: from, to: to)
        queuedRequests += 1
    }

    /// Queues work known only in total (a rank's reported queue that no assignment of ours explains): its
    /// attention spread evenly over its tokens.
    public mutating func appendOpaque(tokens: Int, attentionWork work: Double) {
        guard tokens > 0 else { return }
        let perToken = max(0, work) / Double(tokens)
        var position = queuedTokens
        let end = queuedTokens + tokens
        while position < end {
            let step = min(position / budget, Self.horizon)
            let upTo = step == Self.horizon ? end : min(end, (step + 1) * budget)
            add(Double(upTo - position) * (1 + perToken / StepCost.pairsPerToken), at: step)
            position = upTo
        }
        queuedTokens = end
        attentionWork += max(0, work)
        queuedRequests += 1
    }

    private mutating func add(_ cost: Double, at step: Int) {
        if step >= profile.count { profile.append(contentsOf: repeatElement(0, count: step + 1 - profile.count)) }
        profile[step] += cost
    }

    /// Calls `body(step, cost)` for each step a request appended now would touch, without queuing it; steps past
    /// the horizon come as one call at `horizon`.
    public func forEachChunk(cached: Int, from: Int = 0, to: Int, _ body: (Int, Double) -> Void) {
        var position = queuedTokens
        var token = from
        while token < to {
            let step = min(position / budget, Self.horizon)
            let take = step == Self.horizon ? to - token : min(to - token, (step + 1) * budget - position)
            body(step, Double(take) + StepCost.pairs(cached: cached, from: token, to: token + take) / StepCost.pairsPerToken)
            token += take
            position += take
        }
    }
}
