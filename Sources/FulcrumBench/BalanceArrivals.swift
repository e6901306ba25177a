import FulcrumSimulator
import FulcrumCore

/// A request as one run replays it: when it reaches the gateway, in simulated seconds.
struct Arrival: Sendable {
    var time: Double
    var request: TraceRequest
}

/// How much work the traces bring, and how they are stretched or compressed to a given load.
enum BalanceArrivals {
    /// Step cost a prompt adds to its rank over all its chunks: new tokens plus attended pairs / 14,800. Chunking
    /// does not change the sum, so this is exact whatever the engine does.
    static func prefillCost(_ request: TraceRequest) -> Double {
        let newTokens = request.inputTokens - request.cachedTokens
        return Double(newTokens)
            + StepCost.attentionWork(cached: request.cachedTokens, newTokens: newTokens) / StepCost.pairsPerToken
    }

    /// Step cost a decode request adds over its life: one token a step for `outputTokens` steps, attending a
    /// context that starts at `inputTokens` and grows by one each step.
    static func decodeCost(_ request: TraceRequest) -> Double {
        let (input, output) = (Double(request.inputTokens), Double(request.outputTokens))
        return StepCost.decodeStep(runningRequests: output, kvTokens: output * input + output * (output - 1) / 2)
    }

    /// The trace's timestamps scaled (and the trace replayed end to end as often as needed) so the work arriving
    /// in the first `duration` simulated seconds is `load` x `capacity` (step cost a second) x `duration`. Bursts
    /// stay bursts: only the clock changes. Arrivals go on to `horizon`, so a run can drain at the same load.
    static func scaled(
        _ trace: Trace, cost: (TraceRequest) -> Double, capacity: Double, load: Double, duration: Double,
        horizon: Double
    ) -> [Arrival] {
        let requests = trace.requests
        guard let last = requests.last?.time, !requests.isEmpty else { return [] }
        // A replay starts one mean gap after the previous one ended.
        let period = last > 0 ? last * Double(requests.count) / Double(max(1, requests.count - 1)) : Double(requests.count)
        func time(_ index: Int) -> Double {
            requests[index % requests.count].time + Double(index / requests.count) * period
        }
        let target = load * capacity * duration
        var work = 0.0
        var index = 0
        while work < target {
            work += cost(requests[index % requests.count])
            index += 1
        }
        // The request that brings the work to the target arrives at `duration`.
        let scale = duration / max(time(index - 1), 1e-9)
        var arrivals: [Arrival] = []
        index = 0
        while time(index) * scale < horizon {
            arrivals.append(Arrival(time: time(index) * scale, request: requests[index % requests.count]))
            index += 1
        }
        return arrivals
    }

    /// Extra requests whose contexts half way through their outputs add up to `tokens`: spread over the warm-up,
    /// they fill a decode unit's KV cache, which 1.3x capacity alone would take many simulated minutes to do
    /// (only the excess 0.3x accumulates). Taken from the trace's end backwards, so they are not the requests the
    /// run starts with.
    static func fill(_ trace: Trace, tokens: Double) -> [TraceRequest] {
        guard !trace.requests.isEmpty else { return [] }
        var requests: [TraceRequest] = []
        var total = 0.0
        var index = trace.requests.count
        while total < tokens {
            index = index > 0 ? index - 1 : trace.requests.count - 1
            let request = trace.requests[index]
            total += Double(request.inputTokens) + Double(request.outputTokens) / 2
            requests.append(request)
        }
        return requests
    }

    /// `extra` spread evenly over `[0, seconds)`, merged into `arrivals` by time.
    static func merge(_ extra: [TraceRequest], over seconds: Double, into arrivals: [Arrival]) -> [Arrival] {
        let spread = extra.enumerated().map {
            Arrival(time: seconds * Double($0.offset) / Double(max(1, extra.count)), request: $0.element)
        }
        return (spread + arrivals).enumerated()
            .sorted { $0.element.time != $1.element.time ? $0.element.time < $1.element.time : $0.offset < $1.offset }
            .map(\.element)
    }
}
