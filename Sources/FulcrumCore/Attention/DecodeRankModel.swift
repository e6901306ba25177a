import Foundation

/// What Fulcrum believes a decode rank holds: its last report, grown by the rank's decode rate since, plus the
/// requests assigned after that report, minus those that finished after it.
public struct DecodeRankModel: Sendable {
    public var epoch: Int
    public var load: DecodeLoad?
    public var sentAt: Date?
    /// Output tokens per second of one running request on this rank.
    public var rate: Double
    /// Assigned after the last report: not in its figures yet.
    public var pending: [String: (context: Int, at: Date)] = [:]
    /// In the last report's figures but finished since.
    public var finished: [String: (context: Int, assignedAt: Date, finishedAt: Date)] = [:]

    public init(epoch: Int, rate: Double) {
        self.epoch = epoch
        self.rate = rate
    }

    public mutating func observe(_ load: DecodeLoad, sentAt: Date, settle: TimeInterval, defaultRate: Double) {
        self.load = load
        self.sentAt = sentAt
        if let total = load.tokensPerSecond, load.runningRequests > 0 {
            rate = total / Double(load.runningRequests)
        } else if load.tokensPerSecond == nil {
            rate = defaultRate
        }
        pending = pending.filter { $0.value.at.timeIntervalSince(sentAt) > -settle }
        finished = finished.filter { $0.value.finishedAt.timeIntervalSince(sentAt) > -settle }
    }

    public mutating func assigned(_ request: DecodeRequest, at date: Date) {
        pending[request.id] = (request.contextTokens, date)
    }

    public mutating func finished(_ id: String, context: Int, assignedAt: Date, at date: Date) {
        if pending.removeValue(forKey: id) == nil, let sentAt, assignedAt <= sentAt {
            finished[id] = (context, assignedAt, date)
        }
    }

    /// The rank now: every request's KV grows by `rate` tokens a second.
    public func rank(now: Date, capacity registered: Int) -> DecodeRank {
        let reportAge = sentAt.map { max(0, now.timeIntervalSince($0)) } ?? 0
        var kv = Double(load?.kvTokensUsed ?? 0) + Double(load?.runningRequests ?? 0) * rate * reportAge
        for (context, at) in pending.values { kv += Double(context) + rate * max(0, now.timeIntervalSince(at)) }
        for (context, assignedAt, finishedAt) in finished.values {
            kv -= Double(context) + rate * max(0, finishedAt.timeIntervalSince(assignedAt))
        }
        let requests = Double((load?.runningRequests ?? 0) + pending.count - finished.count)
        return DecodeRank(
            kvTokens: max(0, kv), requests: max(0, requests), capacity: Double(load?.kvTokensCapacity ?? registered))
    }
}
