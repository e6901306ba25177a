import DequeModule
import FulcrumCore

/// One prefill rank's engine, as the simulated cluster and `fulcrum bench balance` both run it: a queue of prompts,
/// first come first served. Each step takes up to `budget` new tokens from the head, chunking long prompts; a chunk
/// costs its tokens plus its attended pairs / 14,800 (DOMAIN §2.4). A prompt whose last chunk is in the running step
/// leaves the queue (an engine's waiting queue excludes its running batch) and is done when the step ends.
public struct PrefillEngine<Payload: Sendable>: Sendable {
    public struct Prompt: Sendable {
        public var id: String
        public var payload: Payload
        public var cached: Int
        public var newTokens: Int
        /// New tokens already taken into a step.
        public var done = 0
    }

    public private(set) var queue = Deque<Prompt>()
    /// Prompts whose last chunk is in the running step.
    public private(set) var completing: [Prompt] = []
    /// Since the last report: the ids done (its `finished`) and taken in (its `admitted`).
    public private(set) var finished: [String] = []
    public private(set) var admitted: [String] = []
    /// Bumped on every change, so a reader can tell whether its copy of this queue is current.
    public private(set) var version = 0

    public init() {}

    public mutating func enqueue(id: String, payload: Payload, cached: Int, newTokens: Int) {
        queue.append(Prompt(id: id, payload: payload, cached: cached, newTokens: newTokens))
        admitted.append(id)
        version += 1
    }

    /// Takes the step's tokens; returns its cost on this rank and the new tokens taken.
    public mutating func startStep(budget: Int) -> (cost: Double, tokens: Int) {
        var taken = 0
        var cost = 0.0
        var position = 0
        while taken < budget, position < queue.count {
            let prompt = queue[position]
            let take = min(prompt.newTokens - prompt.done, budget - taken)
            cost += Double(take)
                + StepCost.pairs(cached: prompt.cached, from: prompt.done, to: prompt.done + take) / StepCost.pairsPerToken
            queue[position].done += take
            taken += take
            position += 1
        }
        while let head = queue.first, head.done == head.newTokens {
            completing.append(head)
            queue.removeFirst()
        }
        if taken > 0 { version += 1 }
        return (cost, taken)
    }

    /// The running step ended: its completed prompts, which the next report lists as finished.
    public mutating func finishStep() -> [Prompt] {
        let done = completing
        completing.removeAll(keepingCapacity: true)
        finished.append(contentsOf: done.map(\.id))
        return done
    }

    /// Tokens, prompts and attention work not yet taken into a step.
    public var load: PrefillLoad {
        var tokens = 0
        var work = 0.0
        for prompt in queue {
            tokens += prompt.newTokens - prompt.done
            work += StepCost.pairs(cached: prompt.cached, from: prompt.done, to: prompt.newTokens)
        }
        return PrefillLoad(queuedTokens: tokens, queuedRequests: queue.count, attentionWork: Int(work))
    }

    /// The report: the load, and the ids finished and taken in since the previous one.
    public mutating func report() -> (load: PrefillLoad, finished: [String], admitted: [String]) {
        defer {
            finished.removeAll(keepingCapacity: true)
            admitted.removeAll(keepingCapacity: true)
        }
        return (load, finished, admitted)
    }

    /// The exact queue, as a balancer would plan against it.
    public func rank(budget: Int) -> PrefillRank {
        var rank = PrefillRank(budget: budget)
        for prompt in queue { rank.append(cached: prompt.cached, from: prompt.done, to: prompt.newTokens) }
        return rank
    }

    /// The rank died: everything it held is lost.
    public mutating func kill() -> [Payload] {
        defer {
            queue.removeAll()
            completing.removeAll()
            version += 1
        }
        return completing.map(\.payload) + queue.map(\.payload)
    }
}
