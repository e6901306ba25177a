import DequeModule
import Foundation

/// What Fulcrum believes a decode rank holds: its last report, grown by the rank's decode rate since, plus the
/// requests assigned and not in that report's figures (not yet in an `admitted` list, or, from a worker that sends
/// none, younger at the report than the worker's learned delivery lag), minus those that finished after it: a
/// gateway's finish recorded before a report was received is out of its figures (the gateway hears of a finish
/// only after the engine has let the request go).
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
    /// The fallback for a worker that does not list `admitted`.
    public var lag = DeliveryLag()
    /// Every request assigned here and not heard to finish, with its context: what the rank has committed to,
    /// running or queued, which a report's capped KV cannot show. `inFlightOrder` lists ids oldest first, including
    /// some already gone (dropped lazily).
    public private(set) var inFlight: [String: Int] = [:]
    private var inFlightOrder = Deque<String>()
    public private(set) var inFlightTokens = 0
    /// Requests a gateway said finished, counted as leaving a report's figures when the worker had not listed them,
    /// and when: a worker that lists one later must not have it counted twice.
    private var countedFinishes: [String: Date] = [:]
    private var listedAgain = 0

    public init(epoch: Int, rate: Double) {
        self.epoch = epoch
        self.rate = rate
    }

    /// - Parameters:
    ///   - finishes: how many ids the report lists as finished.
    ///   - admitted: the report's `admitted` ids (exact: the rest of `pending` is not in its figures); nil when the
    ///     worker does not send them (what is older than the learned lag is taken as in them).
    public mutating func observe(
        _ load: DecodeLoad, sentAt: Date, finishes: Int = 0, defaultRate: Double, admitted: Set<String>? = nil
    ) {
        self.load = load
        self.sentAt = sentAt
        // The counts drop by every request that left, whoever said so: the worker's list, or a gateway's finish
        // recorded before this report (out of its figures) that the worker has not listed.
        let gone = finished.filter { ($0.finishedAt ?? sentAt) <= sentAt }
        lag.observe(count: load.runningRequests, finishes: max(0, finishes - listedAgain) + gone.count, sentAt: sentAt)
        listedAgain = 0
        if !countedFinishes.isEmpty {
            countedFinishes = countedFinishes.filter { sentAt.timeIntervalSince($0.value) < DeliveryLag.ceiling }
        }
        for held in gone { countedFinishes[held.id] = sentAt }
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
            pending.removeAll { lag.covers($0.assignedAt, sentAt: sentAt) }
        }
        finished.removeAll { ($0.finishedAt ?? sentAt) <= sentAt }
        // More in flight than the rank holds and Fulcrum has yet to deliver: the oldest finished unheard (no list
        // named them), so they go.
        var excess = inFlight.count - load.runningRequests - pending.count
        while excess > 0, let id = inFlightOrder.popFirst() {
            if leave(id) { excess -= 1 }
        }
    }

    /// Takes a request out of what is in flight; false if it was not.
    @discardableResult
    private mutating func leave(_ id: String) -> Bool {
        guard let context = inFlight.removeValue(forKey: id) else { return false }
        inFlightTokens -= context
        if inFlightOrder.count > 64, inFlightOrder.count > 2 * inFlight.count {
            inFlightOrder = Deque(inFlightOrder.filter { inFlight[$0] != nil })
        }
        return true
    }

    public mutating func assigned(_ request: DecodeRequest, at date: Date) {
        pending.append(
            Held(id: request.id, context: request.contextTokens, maxNew: request.maxNewTokens ?? 0, assignedAt: date))
        lag.assigned(at: date)
        if let previous = inFlight.updateValue(request.contextTokens, forKey: request.id) {
            inFlightTokens -= previous
        } else {
            inFlightOrder.append(request.id)
        }
        inFlightTokens += request.contextTokens
    }

    /// Its worker lists it finished in a report whose figures no longer hold it: it only leaves what is added on top.
    public mutating func finishedInReport(_ id: String) {
        if countedFinishes.removeValue(forKey: id) != nil { listedAgain += 1 }
        leave(id)
        pending.removeAll { $0.id == id }
        finished.removeAll { $0.id == id }
    }

    public mutating func finished(_ id: String, context: Int, assignedAt: Date, at date: Date) {
        leave(id)
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
        let requests = max(0, Double((load?.runningRequests ?? 0) + pending.count - finished.count))
        // What Fulcrum has in flight there, plus the requests the figures show beyond it (another router's, or from
        // before a restart) at the rank's mean KV a request. One measure for every rank: the larger of the book and
        // the figures would count grown KV on some ranks and contexts as assigned on others, and the committed rule
        // would then queue on the ranks whose KV happens to be under-counted.
        let unexplained = max(0, requests - Double(inFlight.count))
        return DecodeRank(
            kvTokens: max(0, kv), requests: requests, capacity: Double(load?.kvTokensCapacity ?? registered),
            reserved: Double(pending.reduce(0) { $0 + $1.maxNew }),
            committedRequests: Double(inFlight.count) + unexplained,
            committedTokens: Double(inFlightTokens) + (requests > 0 ? unexplained * max(0, kv) / requests : 0))
    }
}
