import FulcrumSimulator
import FulcrumCore

/// One prefill rank's engine: a FIFO of prompts. Each step it takes up to `budget` new tokens from the head, first
/// come first served, chunking long prompts; a chunk costs its tokens plus its attended pairs / 14,800.
struct PrefillEngine: Sendable {
    struct Prompt: Sendable {
        var job: Int
        var cached: Int
        var newTokens: Int
        /// New tokens already taken by a step.
        var done = 0
    }

    private var queue: [Prompt] = []
    private var head = 0
    /// Bumped on every change, so a router can tell whether its copy of this queue is current.
    private(set) var version = 0
    /// Jobs whose last chunk is in the running step: their prefill ends with it.
    var completing: [Int] = []
    /// Ids finished since the last report, which carries them (the worker protocol's `finished`).
    var finishedSinceReport: [String] = []

    /// What the engine has not yet taken into a step.
    var waiting: ArraySlice<Prompt> { queue[head...] }

    mutating func enqueue(_ prompt: Prompt) {
        queue.append(prompt)
        version += 1
    }

    /// Takes the next step's tokens and returns the step's cost on this rank.
    mutating func startStep(budget: Int) -> Double {
        var taken = 0
        var cost = 0.0
        while taken < budget, head < queue.count {
            let prompt = queue[head]
            let take = min(prompt.newTokens - prompt.done, budget - taken)
            cost += Double(take)
                + StepCost.pairs(cached: prompt.cached, from: prompt.done, to: prompt.done + take) / StepCost.pairsPerToken
            queue[head].done += take
            taken += take
            if prompt.done + take == prompt.newTokens {
                completing.append(prompt.job)
                head += 1
            }
        }
        // Drop served prompts once they are half the array: amortised O(1) a prompt.
        if head > 64, head * 2 >= queue.count {
            queue.removeFirst(head)
            head = 0
        }
        if taken > 0 { version += 1 }
        return cost
    }

    /// The report: tokens, prompts and attention work not yet taken into a step (the running step's are not
    /// queued any more, as an engine's waiting queue excludes its running batch).
    func load() -> PrefillLoad {
        var tokens = 0
        var work = 0.0
        for prompt in waiting {
            tokens += prompt.newTokens - prompt.done
            work += StepCost.pairs(cached: prompt.cached, from: prompt.done, to: prompt.newTokens)
        }
        return PrefillLoad(queuedTokens: tokens, queuedRequests: waiting.count, attentionWork: Int(work))
    }

    /// The exact queue, as the clairvoyant reference plans against it.
    func rank(budget: Int) -> PrefillRank {
        var rank = PrefillRank(budget: budget)
        for prompt in waiting { rank.append(cached: prompt.cached, from: prompt.done, to: prompt.newTokens) }
        return rank
    }
}

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

/// A prefill unit in lock-step, its gateway and its telemetry, in simulated time.
///
/// Every 10 ms the gateway sends the requests that arrived since as one batch; each rank reports its queue every
/// 100 ms. A step starts on every rank at once, lasts max rank cost / `costPerSecond`, and the next starts as soon
/// as it ends if any rank has work; a request that lands mid-step waits for the next.
enum PrefillSimulation {
    static let ranks = 32
    /// New tokens an engine takes a step.
    static let budget = 16_384
    /// Step cost a rank gets through a second: DeepSeek's ~73.7k prefill tokens/s per 8-GPU node, ~9.2k per GPU.
    static let costPerSecond = 9_200.0
    /// A perfectly balanced unit's throughput, in step cost a second.
    static var capacity: Double { Double(ranks) * costPerSecond }
    static let tick = 0.01
    static let ticksPerReport = 10

    /// Runs until `window` ends; with `drain`, on (arrivals continuing) until every request that arrived in the
    /// window is prefilled, at most `window.upperBound + maxDrain`.
    static func run<Router: PrefillRouting>(
        _ router: Router, arrivals: [Arrival], window: Range<Double>, drain: Bool, maxDrain: Double
    ) -> PrefillRunResult {
        var router = router
        var engines = Array(repeating: PrefillEngine(), count: ranks)
        var completedAt = [Double](repeating: -1, count: arrivals.count)
        var outstanding = arrivals.filter { window.contains($0.time) }.count
        var stepEnd: Double?
        var (sumMean, sumMax, steps) = (0.0, 0.0, 0)

        func startStep(at time: Double) {
            var (total, peak) = (0.0, 0.0)
            for rank in 0..<ranks {
                let cost = engines[rank].startStep(budget: budget)
                total += cost
                peak = max(peak, cost)
            }
            guard peak > 0 else {
                stepEnd = nil
                return
            }
            stepEnd = time + peak / costPerSecond
            if window.contains(time) {
                sumMean += total / Double(ranks)
                sumMax += peak
                steps += 1
            }
        }

        var next = 0
        var tickIndex = 0
        var now = 0.0
        while true {
            tickIndex += 1
            // Same expression for every tick: report instants compare equal to dispatch instants.
            now = Double(tickIndex) * tick
            while let end = stepEnd, end <= now {
                for rank in 0..<ranks {
                    for job in engines[rank].completing {
                        completedAt[job] = end
                        engines[rank].finishedSinceReport.append(String(job))
                        if window.contains(arrivals[job].time) { outstanding -= 1 }
                    }
                    engines[rank].completing.removeAll(keepingCapacity: true)
                }
                startStep(at: end)
            }
            if now >= window.upperBound, !drain || outstanding == 0 || now >= window.upperBound + maxDrain { break }
            var batch: [PrefillRequest] = []
            let first = next
            while next < arrivals.count, arrivals[next].time <= now {
                let request = arrivals[next].request
                batch.append(
                    PrefillRequest(id: String(next), inputTokens: request.inputTokens, cachedTokens: request.cachedTokens))
                next += 1
            }
            if !batch.isEmpty {
                for (offset, rank) in router.route(batch, now: now, engines: engines).enumerated() {
                    let request = batch[offset]
                    engines[rank].enqueue(
                        PrefillEngine.Prompt(
                            job: first + offset, cached: request.cachedTokens, newTokens: request.newTokens))
                }
                if stepEnd == nil { startStep(at: now) }
            }
            if tickIndex % ticksPerReport == 0 {
                for rank in 0..<ranks {
                    router.observe(
                        rank: rank, load: engines[rank].load(), finished: engines[rank].finishedSinceReport, sentAt: now)
                    engines[rank].finishedSinceReport.removeAll(keepingCapacity: true)
                }
            }
        }
        var ttft: [Double] = []
        var unfinished = 0
        for (job, arrival) in arrivals.enumerated() where window.contains(arrival.time) {
            if completedAt[job] < 0 { unfinished += 1 }
            ttft.append((completedAt[job] < 0 ? now : completedAt[job]) - arrival.time)
        }
        return PrefillRunResult(
            efficiency: sumMax > 0 ? sumMean / sumMax : 0,
            throughput: sumMax > 0 ? sumMean * Double(ranks) / (sumMax / costPerSecond) : 0, ttft: ttft.sorted(),
            steps: steps, unfinished: unfinished)
    }
}
