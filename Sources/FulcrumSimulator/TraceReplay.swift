import FulcrumCore

/// Replays a trace's arrivals `speed` times faster than recorded, from the start again (shifted by one lap) when
/// it runs out, so a run can last longer than its trace.
struct TraceReplay: Sendable {
    let trace: Trace
    let speed: Double
    let tag: String
    let maxOutputTokens: Int
    private var index = 0
    private var lap = 0
    private var serial = 0
    /// Trace seconds of one lap: the last arrival plus the mean gap between arrivals.
    private let lapSeconds: Double

    init(trace: Trace, speed: Double, tag: String, maxOutputTokens: Int?) {
        self.maxOutputTokens = maxOutputTokens ?? .max
        self.trace = trace
        self.speed = speed
        self.tag = tag
        let last = trace.requests.last?.time ?? 0
        lapSeconds = last + (trace.requests.count > 1 ? last / Double(trace.requests.count - 1) : 1)
    }

    /// The requests due by `elapsed` seconds of the run, stamped with their own arrival instants.
    mutating func due(by elapsed: Double, start: ContinuousClock.Instant) -> [SimulatedRequest] {
        var due: [SimulatedRequest] = []
        guard !trace.requests.isEmpty else { return due }
        while true {
            let request = trace.requests[index]
            let at = (Double(lap) * lapSeconds + request.time) / speed
            guard at <= elapsed else { return due }
            serial += 1
            due.append(
                SimulatedRequest(
                    id: "\(tag)-\(serial)", inputTokens: request.inputTokens, cachedTokens: request.cachedTokens,
                    outputTokens: min(request.outputTokens, maxOutputTokens), arrivedAt: start + .seconds(at)))
            index += 1
            if index == trace.requests.count {
                index = 0
                lap += 1
            }
        }
    }

    /// The replay speed that loads the busier phase to `utilisation` of what the cluster can do: prefill at 9,200
    /// cost units a second per GPU, decode at 2,472 (the engines' rates), a request costing DOMAIN §2.4's step cost.
    /// Lock-step steps waste part of that capacity (the efficiency the report measures), so the default leaves
    /// room for it.
    static func speed(
        for trace: Trace, maxOutputTokens: Int?, prefillGPUs: Int, decodeGPUs: Int, utilisation: Double
    ) -> Double {
        guard let last = trace.requests.last?.time, last > 0, prefillGPUs > 0, decodeGPUs > 0 else { return 1 }
        var prefill = 0.0
        var decode = 0.0
        for request in trace.requests {
            let fresh = request.inputTokens - request.cachedTokens
            prefill += Double(fresh)
                + StepCost.pairs(cached: request.cachedTokens, from: 0, to: fresh) / StepCost.pairsPerToken
            let output = Double(min(request.outputTokens, maxOutputTokens ?? .max))
            decode += output + output * (Double(request.inputTokens) + output / 2) / StepCost.pairsPerToken
        }
        let prefillLoad = prefill / last / (Double(prefillGPUs) * SimulatedPrefillUnit.costPerSecond)
        let decodeLoad = decode / last / (Double(decodeGPUs) * SimulatedDecodeUnit.costPerSecond)
        return utilisation / max(prefillLoad, decodeLoad)
    }
}
