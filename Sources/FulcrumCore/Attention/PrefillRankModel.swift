import DequeModule
import Foundation

/// What Fulcrum believes a prefill rank's queue holds: the requests it assigned there, first come first served, in
/// front of them whatever the rank reported that no assignment of ours explains, and each request's progress.
///
/// A report tells how many new tokens are still queued. Assignments made at least `settle` before the report was
/// sent are in it; since the engine serves its queue in order, the reported count is the tail of those, and the
/// ones before it are done. Assignments made later are added on top: two batches between reports never land on
/// the same "least loaded" rank.
public struct PrefillRankModel: Sendable {
    public struct Item: Sendable {
        public var id: String
        public var cached: Int
        public var newTokens: Int
        /// New tokens already processed (a prompt being chunked).
        public var done = 0
        public var assignedAt: Date

        public var remaining: Int { newTokens - done }
    }

    public var epoch: Int
    public var sentAt: Date?
    /// Reported work our assignments do not explain (sent by another router, or from before a restart).
    public var opaqueTokens = 0
    public var opaqueWork = 0.0
    public var queue = Deque<Item>()

    public init(epoch: Int) {
        self.epoch = epoch
    }

    public mutating func observe(_ load: PrefillLoad, sentAt: Date, settle: TimeInterval) {
        self.sentAt = sentAt
        let absorbed = queue.firstIndex { $0.assignedAt.timeIntervalSince(sentAt) > -settle } ?? queue.count
        var remaining = load.queuedTokens
        var first = absorbed
        while first > 0, remaining > 0 {
            let left = queue[first - 1].remaining
            if left > remaining { queue[first - 1].done = queue[first - 1].newTokens - remaining }
            remaining -= min(left, remaining)
            first -= 1
        }
        queue.removeFirst(first)
        opaqueTokens = remaining
        var explained = 0.0
        for item in queue.prefix(absorbed - first) {
            explained += StepCost.pairs(cached: item.cached, from: item.done, to: item.newTokens)
        }
        opaqueWork = remaining > 0 ? max(0, Double(load.attentionWork) - explained) : 0
    }

    public mutating func assigned(_ request: PrefillRequest, at date: Date) {
        queue.append(Item(id: request.id, cached: request.cachedTokens, newTokens: request.newTokens, assignedAt: date))
    }

    /// Its prefill is done: it leaves the queue wherever it is.
    public mutating func finished(_ id: String) {
        if let index = queue.firstIndex(where: { $0.id == id }) { queue.remove(at: index) }
    }

    /// The queue as the balancer plans against it.
    public func rank(budget: Int) -> PrefillRank {
        var rank = PrefillRank(budget: budget)
        rank.appendOpaque(tokens: opaqueTokens, attentionWork: opaqueWork)
        for item in queue { rank.append(cached: item.cached, from: item.done, to: item.newTokens) }
        return rank
    }
}
