import DequeModule
import Foundation

/// How long an assignment takes to show in its rank's reported figures (gateway forwarding, the engine taking it in,
/// the report's trip), learned per worker from the reports of a worker that does not list `admitted`.
///
/// The evidence is counts. Between two reports the engine took in `count − previous count + finishes listed` requests;
/// it takes them in the order they were sent, so those are the oldest of Fulcrum's assignments not yet accounted
/// for. The newest of them was in the figures (the lag is at most its age at the report) and the oldest of the rest
/// was not (the lag exceeds its age). The estimate moves only as far as it must to agree with the latest report, so
/// a steady loop, fast or slow, settles on its own lag within a few reports.
///
/// Counts are exact for a decode worker that lists its finishes. A prefill report's queue leaves out the prompts in
/// the running step, so its evidence runs a prompt or two behind until they finish; the shortfall is carried, not
/// lost. The counts assume Fulcrum routes all of the rank's traffic: another router's requests read as early
/// deliveries and pull the estimate down. With `admitted` none of this is needed.
public struct DeliveryLag: Sendable {
    /// The estimate before any report has shown one: a starting point that the first informative report replaces.
    public static let prior: TimeInterval = 0.25
    /// No estimate goes above this: past it an assignment the counts never confirm is taken as delivered.
    public static let ceiling: TimeInterval = 10

    public private(set) var seconds: TimeInterval = prior
    /// When each of Fulcrum's assignments to the rank that the counts have not shown yet was made, oldest first.
    private var unconfirmed = Deque<Date>()
    /// Requests the counts say arrived that no assignment has been matched to yet (negative: a shortfall carried
    /// to the next report).
    private var credit = 0
    /// The previous report's count: 0 before the first, as a model starts before anything was assigned (a rank
    /// that already held requests reads as arrivals no assignment explains, which are dropped).
    private var lastCount = 0

    public init() {}

    public mutating func assigned(at date: Date) {
        unconfirmed.append(date)
    }

    /// - Parameters:
    ///   - count: the requests the report says the rank holds (prefill: queued; decode: running and waiting).
    ///   - finishes: how many ids the report lists as finished since the worker's previous report.
    public mutating func observe(count: Int, finishes: Int, sentAt: Date) {
        defer { lastCount = count }
        while let oldest = unconfirmed.first, sentAt.timeIntervalSince(oldest) > Self.ceiling {
            unconfirmed.removeFirst()
        }
        credit += count - lastCount + finishes
        let delivered = min(max(credit, 0), unconfirmed.count)
        credit -= delivered
        // More arrivals than assignments (another router's, or the ceiling dropped some): nothing to carry.
        if unconfirmed.count == delivered { credit = min(credit, 0) }
        // A shortfall bigger than a burst means the counts stopped describing our traffic: start afresh.
        if credit < -64 { credit = 0 }
        let upper = delivered > 0 ? sentAt.timeIntervalSince(unconfirmed[delivered - 1]) : Self.ceiling
        let lower = delivered < unconfirmed.count ? sentAt.timeIntervalSince(unconfirmed[delivered]) : 0
        unconfirmed.removeFirst(delivered)
        guard delivered > 0 || lower > 0 else { return }
        // The lag is in (lower, upper]: an assignment exactly `lower` old was not in the figures.
        if seconds > upper {
            seconds = max(0, upper)
        } else if seconds <= lower {
            seconds = min(upper, lower + min(0.005, (upper - lower) / 2))
        }
        seconds = min(seconds, Self.ceiling)
    }

    /// Whether an assignment made at `assignedAt` is in the figures of a report sent at `sentAt`.
    public func covers(_ assignedAt: Date, sentAt: Date) -> Bool {
        sentAt.timeIntervalSince(assignedAt) >= seconds
    }
}
