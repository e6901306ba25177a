import DequeModule
import FulcrumCore
import FulcrumSimulator

/// What one decode run measured.
struct DecodeRunResult: Sendable {
    var efficiency: Double
    /// Step cost processed a second over the measured steps.
    var throughput: Double
    /// Step durations, seconds, of the steps started in the window, sorted.
    var stepSeconds: [Double]
    /// Mean running requests per rank over those steps.
    var requestsPerRank: Double
    /// Share of the window's requests that waited for KV room (on a rank, or refused at the gateway).
    var waitedForKV: Double
    /// Most KV any rank held over those steps, as a share of its capacity (above 1: growth past capacity).
    var peakKV: Double
}

/// A decode unit in lock-step, its gateway and its telemetry, in simulated time, on the simulator's engines
/// (`DecodeEngine`), under a `ControlLoop`. A step lasts the costliest rank's cost / `costPerSecond` (at least the
/// loop's floor), or the loop's fixed step.
///
/// A router may refuse a request (no room anywhere, or held back for a gateway that allows it): the gateway keeps
/// it and offers it again, oldest first, with its next batches.
enum DecodeSimulation {
    static let ranks = 144
    /// KV-cache tokens a rank holds: an H800's ~40 GB left for MLA's ~70 KB per token after weights.
    static let kvCapacity = 600_000
    /// Step cost a rank gets through a second. DeepSeek decodes ~14.8k tokens/s per node (1,850 per GPU) at
    /// ~20 tokens/s per request, so ~92.5 requests per GPU at a mean context of 4,989: a step costs
    /// 92.5 x (1 + 4,989 / 14,800) = 123.7 and lasts 50 ms, so 2,474 a second.
    static let costPerSecond = 1_850 * (1 + 4_989 / StepCost.pairsPerToken)
    static var capacity: Double { Double(ranks) * costPerSecond }
    /// Held requests offered again with the first batch after a step ends or a report comes (when room may have
    /// changed), oldest first: enough to refill a unit, bounded so a backlog does not make every batch huge.
    static let heldPerBatch = 256

    /// How long the unit's steps take, from the engines' output rates (the clairvoyant reference reads them).
    static func stepSeconds(_ engines: [DecodeEngine<Int>]) -> Double? {
        let (tokens, running) = engines.reduce((0.0, 0)) { ($0.0 + ($1.tokensPerSecond ?? 0), $0.1 + $1.runningCount) }
        return tokens > 0 ? Double(running) / tokens : nil
    }

    static func run<Router: DecodeRouting>(
        _ router: Router, arrivals: [Arrival], window: Range<Double>, loop: ControlLoop = .standard()
    ) -> DecodeRunResult {
        var router = router
        var engines = Array(repeating: DecodeEngine<Int>(capacity: kvCapacity), count: ranks)
        /// The first step a request could have run in; later means it waited for room.
        var eligibleStep = [Int](repeating: 0, count: arrivals.count)
        var waited = [Bool](repeating: false, count: arrivals.count)
        var step = 0
        var stepEnd: Double?
        var stepLength = 0.0
        var (sumMean, sumMax, sumRequests, peakKV) = (0.0, 0.0, 0.0, 0)
        var stepSeconds: [Double] = []
        var forwarding = Forwarding(delay: loop.delay)

        func startStep(at time: Double) {
            step += 1
            var (total, peak, running) = (0.0, 0.0, 0)
            for rank in 0..<ranks {
                let cost = engines[rank].startStep { job in if step > eligibleStep[job] { waited[job] = true } }
                total += cost
                peak = max(peak, cost)
                running += engines[rank].runningCount
                if window.contains(time) { peakKV = max(peakKV, engines[rank].kvTokens) }
            }
            guard peak > 0 else {
                stepEnd = nil
                return
            }
            switch loop.pacing {
            case .cost(let floor): stepLength = max(peak / costPerSecond, floor)
            case .fixed(let seconds): stepLength = seconds
            }
            stepEnd = time + stepLength
            if window.contains(time) {
                sumMean += total / Double(ranks)
                sumMax += peak
                sumRequests += Double(running) / Double(ranks)
                stepSeconds.append(stepLength)
            }
        }

        func report(at time: Double) {
            for rank in 0..<ranks {
                let waiting = engines[rank].waiting.count
                var (load, finished, admitted) = engines[rank].report()
                if !loop.tokensPerSecond { load.tokensPerSecond = nil }
                router.observe(
                    rank: rank,
                    report: DecodeReport(
                        load: load, finished: finished, admitted: loop.admitted ? admitted : nil, waiting: waiting),
                    sentAt: time)
            }
        }

        func deliver(_ job: Int, _ rank: Int) {
            let request = arrivals[job].request
            eligibleStep[job] = step + 1
            engines[rank].enqueue(
                id: String(job), payload: job, context: request.inputTokens, outputTokens: request.outputTokens)
        }

        /// Refused requests the gateway holds, oldest first.
        var held = Deque<Int>()
        var next = 0
        var nextBatch = loop.batchEvery
        var nextReport = loop.firstReport
        var now = 0.0
        var stepsDone = 0
        /// A step ended or a report came since the held requests were last offered: room may have changed.
        var changed = false
        while true {
            var candidates = [stepEnd, forwarding.next, nextReport]
            if !held.isEmpty, changed {
                candidates.append(nextBatch)
            } else if next < arrivals.count {
                candidates.append(loop.tick(after: arrivals[next].time, notBefore: nextBatch))
            }
            guard let time = candidates.compactMap({ $0 }).min() else { break }
            now = time
            if now >= window.upperBound { break }
            if let end = stepEnd, end <= now {
                for rank in 0..<ranks { _ = engines[rank].finishStep(seconds: stepLength) }
                stepsDone += 1
                changed = true
                if loop.reports(afterStep: stepsDone) { report(at: end) }
                startStep(at: end)
                continue
            }
            if forwarding.arrive(by: now, deliver: deliver) {
                if stepEnd == nil { startStep(at: now) }
                continue
            }
            if let due = nextReport, due <= now {
                report(at: now)
                changed = true
                nextReport = loop.report(after: due)
                continue
            }
            nextBatch = now + loop.batchEvery
            let offered = changed ? min(heldPerBatch, held.count) : 0
            changed = false
            var jobs = Array(held.prefix(offered))
            held.removeFirst(offered)
            while next < arrivals.count, arrivals[next].time <= now {
                jobs.append(next)
                next += 1
            }
            guard !jobs.isEmpty else { continue }
            let batch = jobs.map { DecodeRequest(id: String($0), contextTokens: arrivals[$0].request.inputTokens) }
            var (refusedHeld, refusedNew) = ([Int](), [Int]())
            let ranksChosen = router.route(batch, now: now, allowHold: loop.gatewayHolds, engines: engines)
            for (index, (job, rank)) in zip(jobs, ranksChosen).enumerated() {
                guard let rank else {
                    waited[job] = true
                    if index < offered { refusedHeld.append(job) } else { refusedNew.append(job) }
                    continue
                }
                forwarding.send(job: job, rank: rank, now: now, deliver: deliver)
            }
            // Oldest first: those offered again go back in front of the ones not offered, new ones behind.
            for job in refusedHeld.reversed() { held.prepend(job) }
            held.append(contentsOf: refusedNew)
            if stepEnd == nil, loop.delay == 0 { startStep(at: now) }
        }
        let measured = arrivals.indices.filter { window.contains(arrivals[$0].time) }
        let steps = Double(max(1, stepSeconds.count))
        return DecodeRunResult(
            efficiency: sumMax > 0 ? sumMean / sumMax : 0,
            throughput: sumMax > 0 ? sumMean * Double(ranks) / stepSeconds.reduce(0, +) : 0,
            stepSeconds: stepSeconds.sorted(),
            requestsPerRank: sumRequests / steps,
            waitedForKV: Double(measured.filter { waited[$0] }.count) / Double(max(1, measured.count)),
            peakKV: Double(peakKV) / Double(kvCapacity))
    }
}
