import FulcrumSimulator
import FulcrumCore

/// Solve time of the balancers alone: a batch of 256 onto loaded ranks, as a gateway sends them at peak.
enum BalanceSolverBench {
    static let batch = 256

    /// Median microseconds per request of `repetitions` solves, decode (144 ranks) and prefill (32 ranks).
    static func run(
        decodeTrace: Trace, prefillTrace: Trace, repetitions: Int, seed: UInt64
    ) -> (decode: Double, prefill: Double) {
        var random = SeededGenerator(seed: seed)
        func draw(_ trace: Trace) -> TraceRequest {
            trace.requests[Int.random(in: 0..<trace.requests.count, using: &random)]
        }

        // Decode ranks mid-flight: ~92 requests each (DeepSeek's operating point), part way through their outputs.
        let decodeRanks = (0..<DecodeSimulation.ranks).map { _ -> DecodeRank in
            let requests = Int.random(in: 80...104, using: &random)
            var kv = 0.0
            for _ in 0..<requests {
                let request = draw(decodeTrace)
                kv += Double(request.inputTokens + Int.random(in: 0..<request.outputTokens, using: &random))
            }
            let capacity = Double(DecodeSimulation.kvCapacity)
            return DecodeRank(kvTokens: min(kv, 0.8 * capacity), requests: Double(requests), capacity: capacity)
        }
        let decodeBatch = (0..<batch).map { DecodeRequest(id: "d\($0)", contextTokens: draw(decodeTrace).inputTokens) }

        // Prefill ranks with a few prompts queued each, one of them part way through.
        let prefillRanks = (0..<PrefillSimulation.ranks).map { _ -> PrefillRank in
            var rank = PrefillRank(budget: PrefillSimulation.budget)
            for index in 0..<Int.random(in: 1...6, using: &random) {
                let request = draw(prefillTrace)
                let newTokens = request.inputTokens - request.cachedTokens
                let done = index == 0 ? Int.random(in: 0..<newTokens, using: &random) : 0
                rank.append(cached: request.cachedTokens, from: done, to: newTokens)
            }
            return rank
        }
        let prefillBatch = (0..<batch).map { index -> PrefillRequest in
            let request = draw(prefillTrace)
            return PrefillRequest(id: "p\(index)", inputTokens: request.inputTokens, cachedTokens: request.cachedTokens)
        }

        let decode = medianMicroseconds(repetitions) {
            var units = [decodeRanks]
            return DecodeBalancer.assign(decodeBatch, units: &units).count
        }
        let prefill = medianMicroseconds(repetitions) {
            var units = [prefillRanks]
            return PrefillBalancer.assign(prefillBatch, units: &units).count
        }
        return (decode / Double(batch), prefill / Double(batch))
    }

    /// Median of `count` timed runs, after one untimed warm-up.
    static func medianMicroseconds(_ count: Int, _ body: () -> Int) -> Double {
        var sink = body()
        var times: [Double] = []
        for _ in 0..<max(1, count) {
            let start = ContinuousClock.now
            sink &+= body()
            let elapsed = ContinuousClock.now - start
            times.append(elapsed.seconds * 1e6)
        }
        // Keeps the optimiser from dropping the solves.
        if sink == .min { print(sink) }
        return times.sorted()[times.count / 2]
    }
}
