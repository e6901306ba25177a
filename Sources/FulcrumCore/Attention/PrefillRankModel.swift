import DequeModule
import Foundation

/// What Fulcrum believes a prefill rank's queue holds: the requests it assigned there, first come first served, in
/// front of them whatever the rank reported that no assignment of ours explains, and each request's progress.
///
/// A report tells how many new tokens are still queued. The assignments it covers are those its `admitted` lists say
/// the engine took in (exact), or, from a worker that does not send them, those older at the report than the
/// worker's learned delivery lag (`DeliveryLag`); since the engine serves its queue in order, the reported count is the tail of those, and the
/// ones before it are done. The others are added on top: two batches between reports never land on the same "least
/// loaded" rank, and a report that arrives before an assignment reached its engine never counts it twice.
public struct PrefillRankModel: Sendable {
    public struct Item: Sendable {
        public var id: String
        public var cached: Int
        public var newTokens: Int
        /// New tokens already processed (a prompt being chunked).
        public var done = 0
        public var assignedAt: Date
        /// A report listed it in `admitted`: it is in the engine's figures from then on.
        public var admitted = false

        public var remaining: Int { newTokens - done }
    }

    public var epoch: Int
    public var sentAt: Date?
    /// Reported work our assignments do not explain (sent by another router, or from before a restart).
    public var opaqueTokens = 0
    public var opaqueWork = 0.0
    public var queue = Deque<Item>()
    /// The fallback for a worker that does not list `admitted`.
    public var lag = DeliveryLag()

    public init(epoch: Int) {
        self.epoch = epoch
    }

    /// An assignment no `admitted` list has named this long after it was made is taken as admitted: the report that
    /// named it was lost. Far above any delivery lag, so it never decides in normal operation.
    public static let lostAfter: TimeInterval = 30

    /// - Parameters:
    ///   - finishes: how many ids the report lists as finished.
    ///   - admitted: the report's `admitted` ids; nil when the worker does not send them.
    public mutating func observe(_ load: PrefillLoad, sentAt: Date, finishes: Int = 0, admitted: Set<String>? = nil) {
        self.sentAt = sentAt
        lag.observe(count: load.queuedRequests, finishes: finishes, sentAt: sentAt)
        let absorbed: Int
        if let admitted {
            for index in queue.indices where !queue[index].admitted {
                // Listed now, or so old that the report that listed it must have been lost.
                queue[index].admitted =
                    admitted.contains(queue[index].id) || queue[index].assignedAt.timeIntervalSince(sentAt) < -Self.lostAfter
            }
            // The engine queues what it took in ahead of what has not reached it yet: reorder only when a later
            // assignment reached it before an earlier one (rare; this runs on every report).
            if let waiting = queue.firstIndex(where: { !$0.admitted }),
                queue[waiting...].contains(where: \.admitted)
            {
                queue = Deque(queue.filter(\.admitted) + queue.filter { !$0.admitted })
            }
            absorbed = queue.prefix { $0.admitted }.count
        } else {
            absorbed = queue.firstIndex { !lag.covers($0.assignedAt, sentAt: sentAt) } ?? queue.count
        }
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
        lag.assigned(at: date)
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
