import DequeModule
import FulcrumCore
import FulcrumSimulator

/// What one prefill run measured.
struct PrefillRunResult: Sendable {
    /// Σ mean rank cost / Σ max rank cost over the steps started in the measured window.
    var efficiency: Double
    /// Step cost processed a second over those steps: what the unit gets through when it has work.
    var throughput: Double
    /// Time to first token (arrival to the end of the last prefill chunk) of the requests that arrived in the
    /// window, sorted.
    var ttft: [Double]
    var steps: Int
    /// Requests of the window still queued when the run gave up draining; counted in `ttft` at their age then.
    var unfinished: Int
}

/// A prefill unit in lock-step, its gateway and its telemetry, in simulated time, on the simulator's engines
/// (`PrefillEngine`), under a `ControlLoop`.
///
/// The gateway sends what arrived as one batch every `batchEvery`; each request reaches its engine `delay` later.
/// A step starts on every rank at once, lasts max rank cost / `costPerSecond` (or the loop's fixed step), and the
/// next starts as soon as it ends if any rank has work; a request that lands mid-step waits for the next.
enum PrefillSimulation {
    static let ranks = 32
    /// New tokens an engine takes a step.
    static let budget = 16_384
    /// Step cost a rank gets through a second: DeepSeek's ~73.7k prefill tokens/s per 8-GPU node, ~9.2k per GPU.
    static let costPerSecond = 9_200.0
    /// A perfectly balanced unit's throughput, in step cost a second.
    static var capacity: Double { Double(ranks) * costPerSecond }

    /// Runs until `window` ends; with `drain`, on (arrivals continuing) until every request that arrived in the
    /// window is prefilled, at most `window.upperBound + maxDrain`.
    static func run<Router: PrefillRouting>(
        _ router: Router, arrivals: [Arrival], window: Range<Double>, loop: ControlLoop = .standard(),
        drain: Bool = false, maxDrain: Double = 0
    ) -> PrefillRunResult {
        var router = router
        var engines = Array(repeating: PrefillEngine<Int>(), count: ranks)
        var completedAt = [Double](repeating: -1, count: arrivals.count)
        var outstanding = arrivals.filter { window.contains($0.time) }.count
        var stepEnd: Double?
        var stepsDone = 0
        var (sumMean, sumMax, steps) = (0.0, 0.0, 0)
        var forwarding = Forwarding(delay: loop.delay)

        func startStep(at time: Double) {
            var (total, peak) = (0.0, 0.0)
            for rank in 0..<ranks {
                let cost = engines[rank].startStep(budget: budget).cost
                total += cost
                peak = max(peak, cost)
            }
            guard peak > 0 else {
                stepEnd = nil
                return
            }
            switch loop.pacing {
            case .cost(let floor): stepEnd = time + max(floor, peak / costPerSecond)
            case .fixed(let seconds): stepEnd = time + seconds
            }
            if window.contains(time) {
                sumMean += total / Double(ranks)
                sumMax += peak
                steps += 1
            }
        }

        func report(at time: Double) {
            for rank in 0..<ranks {
                let (load, finished, admitted) = engines[rank].report()
                router.observe(
                    rank: rank, report: PrefillReport(load: load, finished: finished, admitted: loop.admitted ? admitted : nil),
                    sentAt: time)
            }
        }

        func deliver(_ job: Int, _ rank: Int) {
            let request = arrivals[job].request
            engines[rank].enqueue(
                id: String(job), payload: job, cached: request.cachedTokens,
                newTokens: request.inputTokens - request.cachedTokens)
        }

        var next = 0
        var nextBatch = loop.batchEvery
        var nextReport = loop.firstReport
        var now = 0.0
        while true {
            // The next event: a step's end, a delivery, a report on its timer, the gateway's next batch.
            var candidates = [stepEnd, forwarding.next, nextReport]
            let batchAt = next < arrivals.count ? loop.tick(after: arrivals[next].time, notBefore: nextBatch) : nil
            candidates.append(batchAt)
            guard let time = candidates.compactMap({ $0 }).min() else { break }
            now = time
            if now >= window.upperBound, !drain || outstanding == 0 || now >= window.upperBound + maxDrain { break }
            if let end = stepEnd, end <= now {
                for rank in 0..<ranks {
                    for prompt in engines[rank].finishStep() {
                        completedAt[prompt.payload] = end
                        if window.contains(arrivals[prompt.payload].time) { outstanding -= 1 }
                    }
                }
                stepsDone += 1
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
                nextReport = loop.report(after: due)
                continue
            }
            // The gateway's batch: everything that arrived by the tick.
            let tick = now
            nextBatch = tick + loop.batchEvery
            var batch: [PrefillRequest] = []
            let first = next
            while next < arrivals.count, arrivals[next].time <= tick {
                let request = arrivals[next].request
                batch.append(
                    PrefillRequest(id: String(next), inputTokens: request.inputTokens, cachedTokens: request.cachedTokens))
                next += 1
            }
            guard !batch.isEmpty else { continue }
            for (offset, rank) in router.route(batch, now: now, engines: engines).enumerated() {
                forwarding.send(job: first + offset, rank: rank, now: now, deliver: deliver)
            }
            if stepEnd == nil, loop.delay == 0 { startStep(at: now) }
        }
        var ttft: [Double] = []
        var unfinished = 0
        for (job, arrival) in arrivals.enumerated() where window.contains(arrival.time) {
            if completedAt[job] < 0 { unfinished += 1 }
            ttft.append((completedAt[job] < 0 ? now : completedAt[job]) - arrival.time)
        }
        let seconds: Double =
            switch loop.pacing {
            case .cost: sumMax / costPerSecond
            case .fixed(let step): Double(steps) * step
            }
        return PrefillRunResult(
            efficiency: sumMax > 0 ? sumMean / sumMax : 0,
            throughput: seconds > 0 ? sumMean * Double(ranks) / seconds : 0, ttft: ttft.sorted(), steps: steps,
            unfinished: unfinished)
    }
}
