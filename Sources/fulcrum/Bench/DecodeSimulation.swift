import FulcrumSimulator
import FulcrumCore

/// One decode rank's engine: the requests it runs, and those waiting for KV room, first come first served.
struct DecodeEngine: Sendable {
    struct Waiting: Sendable {
        var job: Int
        var context: Int
    }

    private var waiting: [Waiting] = []
    private var head = 0
    private(set) var waitingTokens = 0
    private(set) var running = 0
    /// KV tokens of the running requests: their contexts, each grown by one a step.
    private(set) var kvTokens = 0
    /// Output tokens a second of its last step, all running requests together.
    var tokensPerSecond: Double?
    var finishedSinceReport: [FinishedDecode] = []

    var waitingCount: Int { waiting.count - head }
    /// What the rank has taken on: KV in use plus the contexts waiting for room.
    var committedTokens: Int { kvTokens + waitingTokens }
    var requests: Int { running + waitingCount }

    mutating func enqueue(job: Int, context: Int) {
        waiting.append(Waiting(job: job, context: context))
        waitingTokens += context
    }

    /// Starts waiting requests, oldest first, while their context fits; returns them.
    mutating func admit(capacity: Int, into admitted: inout [Int]) {
        while head < waiting.count, kvTokens + waiting[head].context <= capacity {
            kvTokens += waiting[head].context
            waitingTokens -= waiting[head].context
            running += 1
            admitted.append(waiting[head].job)
            head += 1
        }
        if head > 64, head * 2 >= waiting.count {
            waiting.removeFirst(head)
            head = 0
        }
    }

    /// Every running request made one token.
    mutating func grow() { kvTokens += running }

    mutating func leave(finalContext: Int) {
        running -= 1
        kvTokens -= finalContext
    }

    var report: DecodeLoad { DecodeLoad(kvTokensUsed: committedTokens, kvTokensCapacity: 0, runningRequests: requests) }
}

/// What one decode run measured.
struct DecodeRunResult: Sendable {
    var efficiency: Double
    /// Step cost processed a second over the measured steps.
    var throughput: Double
    /// Step durations, seconds, of the steps started in the window, sorted.
    var stepSeconds: [Double]
    /// Mean running requests per rank over those steps.
    var requestsPerRank: Double
    /// Share of the window's requests that waited for KV room (on a rank, or held at the gateway).
    var waitedForKV: Double
    /// Most KV any rank held over those steps, as a share of its capacity (above 1: growth past capacity).
    var peakKV: Double
}

/// A decode unit in lock-step, its gateway and its telemetry, in simulated time. Each step every running request
/// makes one token (its context grows by one) and leaves after its output length; a rank's step costs its running
/// requests + KV tokens / 14,800, and the step lasts the costliest rank's cost / `costPerSecond`.
///
/// A request lands on its rank at once and starts at the next step if its context fits in the rank's free KV,
/// else waits there, first come first served. Growth past capacity is allowed (an engine would retract a request);
/// the capacity is set so that this is rare at the loads measured. A router may refuse a request (no room
/// anywhere): the gateway holds it and offers it again, oldest first, with the next batches.
enum DecodeSimulation {
    static let ranks = 144
    /// KV-cache tokens a rank holds: an H800's ~40 GB left for MLA's ~70 KB per token after weights.
    static let kvCapacity = 600_000
    /// Step cost a rank gets through a second. DeepSeek decodes ~14.8k tokens/s per node (1,850 per GPU) at
    /// ~20 tokens/s per request, so ~92.5 requests per GPU at a mean context of 4,989: a step costs
    /// 92.5 x (1 + 4,989 / 14,800) = 123.7 and lasts 50 ms, so 2,474 a second.
    static let costPerSecond = 1_850 * (1 + 4_989 / StepCost.pairsPerToken)
    static var capacity: Double { Double(ranks) * costPerSecond }
    static let tick = 0.01
    static let ticksPerReport = 10
    /// Held requests offered again with each batch, oldest first: enough to refill a unit, bounded so a backlog
    /// does not make every batch huge.
    static let heldPerBatch = 256

    /// `stepFloor`: the shortest a step may be, seconds (0: the model, a step costs only its work). A
    /// floor stands for what a real decode step spends whatever its batch (reading the weights, all-to-all
    /// latency); it gives the unit an operating point below saturation, which the pure cost model lacks.
    static func run<Router: DecodeRouting>(
        _ router: Router, arrivals: [Arrival], window: Range<Double>, stepFloor: Double = 0
    ) -> DecodeRunResult {
        var router = router
        var engines = Array(repeating: DecodeEngine(), count: ranks)
        var rankOf = [Int](repeating: -1, count: arrivals.count)
        var assignedAt = [Double](repeating: 0, count: arrivals.count)
        /// The first step a request could have run in; later means it waited for room.
        var eligibleStep = [Int](repeating: 0, count: arrivals.count)
        var waited = [Bool](repeating: false, count: arrivals.count)
        var finishing: [Int: [Int]] = [:]
        var step = 0
        var stepEnd: Double?
        var (sumMean, sumMax, sumRequests, peakKV) = (0.0, 0.0, 0.0, 0)
        var stepSeconds: [Double] = []
        var admitted: [Int] = []

        func startStep(at time: Double) {
            step += 1
            var (total, peak, running) = (0.0, 0.0, 0)
            for rank in 0..<ranks {
                admitted.removeAll(keepingCapacity: true)
                engines[rank].admit(capacity: kvCapacity, into: &admitted)
                for job in admitted {
                    if step > eligibleStep[job] { waited[job] = true }
                    finishing[step + arrivals[job].request.outputTokens - 1, default: []].append(job)
                }
                let cost = StepCost.decodeStep(
                    runningRequests: Double(engines[rank].running), kvTokens: Double(engines[rank].kvTokens))
                total += cost
                peak = max(peak, cost)
                running += engines[rank].running
                if window.contains(time) { peakKV = max(peakKV, engines[rank].kvTokens) }
            }
            guard peak > 0 else {
                stepEnd = nil
                return
            }
            let seconds = max(peak / costPerSecond, stepFloor)
            stepEnd = time + seconds
            for rank in 0..<ranks where engines[rank].running > 0 {
                engines[rank].tokensPerSecond = Double(engines[rank].running) / seconds
            }
            if window.contains(time) {
                sumMean += total / Double(ranks)
                sumMax += peak
                sumRequests += Double(running) / Double(ranks)
                stepSeconds.append(seconds)
            }
        }

        func finishStep(at time: Double) {
            for rank in 0..<ranks { engines[rank].grow() }
            for job in finishing.removeValue(forKey: step) ?? [] {
                let request = arrivals[job].request
                engines[rankOf[job]].leave(finalContext: request.inputTokens + request.outputTokens)
                engines[rankOf[job]].finishedSinceReport.append(
                    FinishedDecode(id: String(job), contextTokens: request.inputTokens, assignedAt: assignedAt[job]))
            }
        }

        /// Refused requests the gateway holds, oldest first, from `heldHead` on.
        var held: [Int] = []
        var heldHead = 0
        var next = 0
        var tickIndex = 0
        while true {
            tickIndex += 1
            let now = Double(tickIndex) * tick
            while let end = stepEnd, end <= now {
                finishStep(at: end)
                startStep(at: end)
            }
            if now >= window.upperBound { break }
            let offered = min(heldPerBatch, held.count - heldHead)
            var jobs = Array(held[heldHead..<(heldHead + offered)])
            heldHead += offered
            while next < arrivals.count, arrivals[next].time <= now {
                jobs.append(next)
                next += 1
            }
            if !jobs.isEmpty {
                let batch = jobs.map { DecodeRequest(id: String($0), contextTokens: arrivals[$0].request.inputTokens) }
                var (refusedHeld, refusedNew) = ([Int](), [Int]())
                for (index, (job, rank)) in zip(jobs, router.route(batch, now: now, engines: engines)).enumerated() {
                    guard let rank else {
                        waited[job] = true
                        if index < offered { refusedHeld.append(job) } else { refusedNew.append(job) }
                        continue
                    }
                    rankOf[job] = rank
                    assignedAt[job] = now
                    eligibleStep[job] = step + 1
                    engines[rank].enqueue(job: job, context: arrivals[job].request.inputTokens)
                }
                // Oldest first: those offered again go back in front of the ones not offered, new ones behind.
                heldHead -= refusedHeld.count
                for (offset, job) in refusedHeld.enumerated() { held[heldHead + offset] = job }
                held.append(contentsOf: refusedNew)
                if heldHead > 1_024, heldHead * 2 >= held.count {
                    held.removeFirst(heldHead)
                    heldHead = 0
                }
                if stepEnd == nil { startStep(at: now) }
            }
            if tickIndex % ticksPerReport == 0 {
                for rank in 0..<ranks {
                    var load = engines[rank].report
                    load.kvTokensCapacity = kvCapacity
                    load.tokensPerSecond = engines[rank].tokensPerSecond
                    router.observe(rank: rank, load: load, finished: engines[rank].finishedSinceReport, sentAt: now)
                    engines[rank].finishedSinceReport.removeAll(keepingCapacity: true)
                }
            }
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
