import FulcrumCore
import Foundation
import Testing

/// Without `admitted`, a rank model learns its worker's delivery lag from the counts its reports show; these runs
/// drive a decode and a prefill rank model with a worker whose loop is fast or slow, whose gateway forwards at once
/// or late, and compare what the model believes with what the engine holds.
@Suite("Delivery lag without admitted")
struct DeliveryLagTests {
    /// A worker and its gateway in simulated time: one request assigned every `every` seconds, reaching the engine
    /// `delay` later, each living `life` seconds there; a report every `report` seconds.
    struct Loop {
        var every: Double
        var delay: Double
        var report: Double
        var life: Double
    }

    static let loops: [(String, Loop)] = [
        ("fast loop, at once", Loop(every: 0.004, delay: 0, report: 0.01, life: 0.5)),
        ("fast loop, forwarded late", Loop(every: 0.004, delay: 0.03, report: 0.01, life: 0.5)),
        ("slow loop, at once", Loop(every: 0.05, delay: 0, report: 2, life: 20)),
        ("slow loop, forwarded late", Loop(every: 0.05, delay: 1.2, report: 2, life: 20)),
    ]

    /// Worst gap, in requests, between the model without `admitted` and the exact one, over the last half of the
    /// run; and the lag learned.
    static func decodeGap(_ loop: Loop) -> (gap: Double, lag: Double) {
        var exact = DecodeRankModel(epoch: 0, rate: 20)
        var learned = exact
        var assigned: [(id: String, at: Double)] = []
        var nextReport = loop.report
        var lastReport = 0.0
        var listed = 0
        var doneListed = 0
        var worst = 0.0
        let end = loop.life * 6
        var time = 0.0
        var index = 0
        while time < end {
            time = Double(index) * loop.every
            while nextReport <= time {
                // What the engine holds at the report: delivered and not finished.
                let delivered = assigned.filter { $0.at + loop.delay <= nextReport }
                let done = delivered.filter { $0.at + loop.delay + loop.life <= nextReport }
                let newlyDone = done[doneListed...]
                doneListed = done.count
                let newlyIn = delivered[listed...]
                listed = delivered.count
                let load = DecodeLoad(
                    kvTokensUsed: (delivered.count - done.count) * 1_000, kvTokensCapacity: 10_000_000,
                    runningRequests: delivered.count - done.count)
                let sentAt = Date(timeIntervalSince1970: nextReport)
                for request in newlyDone {
                    exact.finishedInReport(request.id)
                    learned.finishedInReport(request.id)
                }
                exact.observe(load, sentAt: sentAt, finishes: newlyDone.count, defaultRate: 0, admitted: Set(newlyIn.map(\.id)))
                learned.observe(load, sentAt: sentAt, finishes: newlyDone.count, defaultRate: 0)
                lastReport = nextReport
                nextReport += loop.report
            }
            let request = DecodeRequest(id: "r\(index)", contextTokens: 1_000)
            exact.assigned(request, at: Date(timeIntervalSince1970: time))
            learned.assigned(request, at: Date(timeIntervalSince1970: time))
            assigned.append((request.id, time))
            if time > end / 2 {
                let now = Date(timeIntervalSince1970: time)
                let gap = learned.rank(now: now, capacity: 10_000_000).requests - exact.rank(now: now, capacity: 10_000_000).requests
                worst = max(worst, abs(gap))
            }
            index += 1
        }
        return (worst, learned.lag.seconds)
    }

    @Test(arguments: loops.indices)
    func decodeWithoutAdmittedStaysWithinOneRequestOfTheExactModel(_ index: Int) {
        let (name, loop) = Self.loops[index]
        let (gap, lag) = Self.decodeGap(loop)
        #expect(gap <= 1, "\(name): \(gap), lag \(lag)")
    }

    /// Worst gap, in queued tokens, between the prefill model without `admitted` and the exact one over the last
    /// half of a run. The engine serves its queue first come first served at `rate` tokens a second, and the prompt
    /// it is serving is out of the reported queue (as an engine's running batch is), so counts run one behind
    /// until it finishes.
    static func prefillGap(_ loop: Loop, rate: Double) -> Double {
        var exact = PrefillRankModel(epoch: 0)
        var learned = exact
        let tokens = 4_000
        var queue: [(id: String, left: Int)] = []
        var inFlight: [(id: String, at: Double)] = []
        var (admitted, finished) = ([String](), [String]())
        var nextReport = loop.report
        var worst = 0.0
        let end = loop.life * 6
        var index = 0
        while Double(index) * loop.every < end {
            let time = Double(index) * loop.every
            while let first = inFlight.first, first.at + loop.delay <= time {
                queue.append((first.id, tokens))
                admitted.append(first.id)
                inFlight.removeFirst()
            }
            // Slower than arrivals for a third of the run, then faster: a queue builds up and drains.
            var budget = Int(rate * loop.every * (time < end / 3 ? 0.8 : 1.2))
            while budget > 0, !queue.isEmpty {
                let take = min(budget, queue[0].left)
                queue[0].left -= take
                budget -= take
                if queue[0].left == 0 { finished.append(queue.removeFirst().id) }
            }
            if nextReport <= time {
                // The head prompt is being served: out of the queue's figures.
                let waiting = queue.dropFirst()
                let load = PrefillLoad(
                    queuedTokens: waiting.reduce(0) { $0 + $1.left }, queuedRequests: waiting.count, attentionWork: 0)
                let sentAt = Date(timeIntervalSince1970: time)
                for id in finished {
                    exact.finished(id)
                    learned.finished(id)
                }
                exact.observe(load, sentAt: sentAt, finishes: finished.count, admitted: Set(admitted))
                learned.observe(load, sentAt: sentAt, finishes: finished.count)
                (admitted, finished) = ([], [])
                nextReport += loop.report
            }
            let request = PrefillRequest(id: "p\(index)", inputTokens: tokens, cachedTokens: 0)
            exact.assigned(request, at: Date(timeIntervalSince1970: time))
            learned.assigned(request, at: Date(timeIntervalSince1970: time))
            inFlight.append((request.id, time))
            if time > end / 2 {
                let gap = learned.rank(budget: 16_384).queuedTokens - exact.rank(budget: 16_384).queuedTokens
                worst = max(worst, Double(abs(gap)))
            }
            index += 1
        }
        return worst
    }

    @Test(arguments: loops.indices)
    func prefillWithoutAdmittedStaysWithinOnePromptOfTheExactModel(_ index: Int) {
        let (name, loop) = Self.loops[index]
        let gap = Self.prefillGap(loop, rate: 4_000 / loop.every)
        #expect(gap <= 4_000, "\(name): \(gap) tokens")
    }
}
