import Foundation

/// What Fulcrum believes a decode rank holds: its last report, grown by the rank's decode rate since, plus the
/// requests assigned and not in that report's figures (not yet in an `admitted` list, or, from a worker that sends
/// none, assigned less than `settle` before it), minus those that finished after it.
public struct DecodeRankModel: Sendable {
    public var epoch: Int
    public var load: DecodeLoad?
    public var sentAt: Date?
    /// Output tokens per second of one running request on this rank.
    public var rate: Double
    public struct Held: Sendable {
        public var id: String
        public var context: Int
        /// Tokens it may still generate (`maxNewTokens`): room kept for it until the rank's report shows it.
        public var maxNew = 0
        public var assignedAt: Date
        public var finishedAt: Date?
    }

    /// Assigned after the last report: not in its figures yet. Arrays in arrival order, not dictionaries: sums in
    /// hash order would round differently from run to run and flip near-ties.
    public var pending: [Held] = []
    /// In the last report's figures but finished since.
    public var finished: [Held] = []

    public init(epoch: Int, rate: Double) {
        self.epoch = epoch
        self.rate = rate
    }

    /// - Parameter admitted: the report's `admitted` ids (exact: the rest of `pending` is not in its figures); nil when
    ///   the worker does not send them (what was assigned at least `settle` before the report is taken as in it).
    public mutating func observe(
        _ load: DecodeLoad, sentAt: Date, settle: TimeInterval, defaultRate: Double, admitted: Set<String>? = nil
    ) {
        self.load = load
        self.sentAt = sentAt
        if let total = load.tokensPerSecond, load.runningRequests > 0 {
            rate = total / Double(load.runningRequests)
        } else if load.tokensPerSecond == nil {
            rate = defaultRate
        }
        if let admitted {
            pending.removeAll {
                admitted.contains($0.id) || $0.assignedAt.timeIntervalSince(sentAt) < -PrefillRankModel.lostAfter
            }
        } else {
            pending.removeAll { $0.assignedAt.timeIntervalSince(sentAt) <= -settle }
        }
        finished.removeAll { ($0.finishedAt ?? sentAt).timeIntervalSince(sentAt) <= -settle }
    }

    public mutating func assigned(_ request: DecodeRequest, at date: Date) {
        pending.append(
            Held(id: request.id, context: request.contextTokens, maxNew: request.maxNewTokens ?? 0, assignedAt: date))
    }

    /// Its worker lists it finished in a report whose figures no longer hold it: it only leaves what is added on top.
    public mutating func finishedInReport(_ id: String) {
        pending.removeAll { $0.id == id }
        finished.removeAll { $0.id == id }
    }

    public mutating func finished(_ id: String, context: Int, assignedAt: Date, at date: Date) {
        if let index = pending.firstIndex(where: { $0.id == id }) {
            pending.remove(at: index)
        } else if let sentAt, assignedAt <= sentAt, !finished.contains(where: { $0.id == id }) {
            finished.append(Held(id: id, context: context, assignedAt: assignedAt, finishedAt: date))
        }
    }

    /// The rank now: every request's KV grows by `rate` tokens a second.
    public func rank(now: Date, capacity registered: Int) -> DecodeRank {
        let reportAge = sentAt.map { max(0, now.timeIntervalSince($0)) } ?? 0
        var kv = Double(load?.kvTokensUsed ?? 0) + Double(load?.runningRequests ?? 0) * rate * reportAge
        for held in pending { kv += Double(held.context) + rate * max(0, now.timeIntervalSince(held.assignedAt)) }
        for held in finished {
            kv -= Double(held.context) + rate * max(0, (held.finishedAt ?? now).timeIntervalSince(held.assignedAt))
        }
        let requests = Double((load?.runningRequests ?? 0) + pending.count - finished.count)
        return DecodeRank(
            kvTokens: max(0, kv), requests: max(0, requests), capacity: Double(load?.kvTokensCapacity ?? registered),
            reserved: Double(pending.reduce(0) { $0 + $1.maxNew }))
    }
}
