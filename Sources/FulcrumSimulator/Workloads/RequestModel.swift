import Foundation

/// A built-in request workload: prompt and output lengths, the prompt prefix already in KV cache, and when requests
/// arrive, all drawn from one seed. The presets reproduce the published statistics of the public traces (figures
/// measured on the files of DOMAIN §3 and cited beside each), so a run needs no data files; the real traces stay
/// replayable with `--workload NAME --data DIR`.
public struct RequestModel: Sendable {
    /// A token-length distribution given by its quantiles: `(probability, tokens)` knots from 0 to 1, tokens
    /// interpolated log-linearly between knots. Percentiles are what traces publish, and knots reproduce them exactly.
    public struct Lengths: Sendable {
        public var knots: [(p: Double, tokens: Double)]

        public init(_ knots: [(Double, Double)]) {
            self.knots = knots.map { (p: $0.0, tokens: $0.1) }
        }

        public func sample(using random: inout SeededGenerator) -> Int {
            quantile(random.unit())
        }

        public func quantile(_ p: Double) -> Int {
            guard let upper = knots.firstIndex(where: { $0.p >= p }) else { return max(1, Int(knots.last?.tokens ?? 1)) }
            guard upper > 0 else { return max(1, Int(knots[0].tokens)) }
            let (a, b) = (knots[upper - 1], knots[upper])
            let t = b.p > a.p ? (p - a.p) / (b.p - a.p) : 1
            return max(1, Int(exp(log(a.tokens) + t * (log(b.tokens) - log(a.tokens))).rounded()))
        }
    }

    /// When requests arrive, in the source trace's own seconds (a run rescales time to the load it wants).
    public enum Arrivals: Sendable {
        /// Gaps with coefficient of variation `cv` (gamma; 1 is Poisson), the rate scaled every `window` seconds by a
        /// lognormal factor of spread `sigma`: the slow swings of a day's traffic.
        case renewal(cv: Double, window: Double, sigma: Double)
        /// Bursts of `burst` requests on average (geometric), `spacing` seconds apart on average inside a burst,
        /// bursts starting at random: the very bursty traffic of code completion.
        case bursts(burst: Double, spacing: Double)
        /// Every `every` seconds a Poisson number of requests at once, the rate scaled per `window` as `renewal` does:
        /// traces whose timestamps come in steps.
        case ticks(every: Double, window: Double, sigma: Double)
    }

    /// The share of a prompt already in KV cache, by its quantiles; rounded down to whole `block` token blocks.
    public struct Prefix: Sendable {
        public var share: Lengths
        public var block: Int
    }

    public var name: String
    public var input: Lengths
    public var output: Lengths
    public var prefix: Prefix?
    /// Requests a second on average.
    public var rate: Double
    public var arrivals: Arrivals

    public init(name: String, input: Lengths, output: Lengths, prefix: Prefix? = nil, rate: Double, arrivals: Arrivals) {
        self.name = name
        self.rate = rate
        self.input = input
        self.output = output
        self.prefix = prefix
        self.arrivals = arrivals
    }

    /// `count` requests from `seed`, the first at time 0.
    public func trace(count: Int, seed: UInt64) -> Trace {
        var random = SeededGenerator(seed: KeyedNormal.mix(seed ^ 0x5EED))
        let times = arrivalTimes(count: count, using: &random)
        let requests = times.map { time -> TraceRequest in
            let inputTokens = max(1, input.sample(using: &random))
            var cached = 0
            if let prefix {
                // Share quantiles are stored as tokens per million, so `Lengths` serves them too.
                let share = Double(prefix.share.sample(using: &random)) / 1_000_000
                cached = min(Int(share * Double(inputTokens)) / prefix.block * prefix.block, inputTokens - 1)
            }
            return TraceRequest(
                time: time, inputTokens: inputTokens, cachedTokens: max(0, cached),
                outputTokens: max(1, output.sample(using: &random)))
        }
        return Trace(name: name, requests: requests)
    }

    private func arrivalTimes(count: Int, using random: inout SeededGenerator) -> [Double] {
        var times: [Double] = []
        times.reserveCapacity(count)
        switch arrivals {
        case .renewal(let cv, let window, let sigma):
            // Gamma gaps of mean 1 / rate: shape 1/cv², scale mean·cv².
            let shape = 1 / (cv * cv)
            var time = 0.0
            var factor = Self.swing(sigma, using: &random)
            var windowEnd = window
            while times.count < count {
                time += random.gamma(shape: shape) / shape / (rate * factor)
                while time >= windowEnd {
                    windowEnd += window
                    factor = Self.swing(sigma, using: &random)
                }
                times.append(time)
            }
        case .bursts(let burst, let spacing):
            // Bursts start at rate / burst, so requests average `rate` a second.
            var start = 0.0
            while times.count < count {
                start += random.exponential(mean: burst / rate)
                var time = start
                let size = 1 + Int(random.exponential(mean: burst - 0.5).rounded(.down))
                for _ in 0..<size where times.count < count {
                    times.append(time)
                    time += random.exponential(mean: spacing)
                }
            }
            times.sort()
        case .ticks(let every, let window, let sigma):
            var tick = 0.0
            var factor = Self.swing(sigma, using: &random)
            var windowEnd = window
            while times.count < count {
                while tick >= windowEnd {
                    windowEnd += window
                    factor = Self.swing(sigma, using: &random)
                }
                for _ in 0..<Self.poisson(every * rate * factor, using: &random) where times.count < count { times.append(tick) }
                tick += every
            }
        }
        // Sampled swings leave the mean rate off by a few percent on a short trace; the model's rate is exact.
        guard let first = times.first, let last = times.last, last > first else { return times.map { _ in 0 } }
        let scale = Double(times.count - 1) / rate / (last - first)
        return times.map { ($0 - first) * scale }
    }

    /// A lognormal rate factor of mean 1.
    static func swing(_ sigma: Double, using random: inout SeededGenerator) -> Double {
        sigma > 0 ? exp(sigma * random.normal() - sigma * sigma / 2) : 1
    }

    static func poisson(_ mean: Double, using random: inout SeededGenerator) -> Int {
        var count = 0
        var time = random.exponential(mean: 1)
        while time < mean {
            count += 1
            time += random.exponential(mean: 1)
        }
        return count
    }
}

extension RequestModel {
    /// Azure's LLM inference trace, conversation (Splitwise, 2023; AzureLLMInferenceTrace_conv.csv: 19,366 requests in
    /// an hour). Prompt tokens p10 207, median 1,020, p90 2,734, p99 4,142, mean 1,155; output p10 54, median 129, p90
    /// 424, p99 601, mean 211. Gaps' CV 1.09; counts' variance/mean 1.39 a second and 3.86 over 10 s (slow swings).
    public static let conversation = RequestModel(
        name: "builtin",
        input: Lengths([
            (0, 2), (0.01, 29), (0.05, 181), (0.10, 207), (0.25, 396), (0.50, 1_020), (0.75, 1_189), (0.90, 2_734),
            (0.95, 4_083), (0.99, 4_142), (0.999, 6_179), (1, 14_050),
        ]),
        output: Lengths([
            (0, 7), (0.01, 16), (0.05, 41), (0.10, 54), (0.25, 85), (0.50, 129), (0.75, 395), (0.90, 424), (0.95, 451),
            (0.99, 601), (0.999, 954), (1, 1_000),
        ]),
        rate: 5.53, arrivals: .renewal(cv: 1.05, window: 10, sigma: 0.23))

    /// Azure's trace, code completion (AzureLLMInferenceTrace_code.csv: 8,819 requests in an hour). Prompt p10 147,
    /// median 1,469, p90 5,188, p99 7,436, mean 2,048; output median 13, p90 55, p99 251, mean 28. Very bursty: gaps'
    /// CV 13.2, 73% of seconds empty, counts' variance/mean 13.2 a second and 71.6 over 10 s.
    public static let code = RequestModel(
        name: "builtin-code",
        input: Lengths([
            (0, 3), (0.01, 17), (0.05, 75), (0.10, 147), (0.25, 578), (0.50, 1_469), (0.75, 2_744), (0.90, 5_188),
            (0.95, 7_303), (0.99, 7_436), (1, 7_437),
        ]),
        output: Lengths([
            (0, 6), (0.05, 6), (0.10, 7), (0.25, 9), (0.50, 13), (0.75, 24), (0.90, 55), (0.95, 90), (0.99, 251),
            (0.999, 825), (1, 1_899),
        ]),
        rate: 2.57, arrivals: .bursts(burst: 36, spacing: 0.15))

    /// Mooncake's conversation trace (Kimi, 12,031 requests in an hour). Prompt p10 964, median 6,909, p90 27,367,
    /// p99 85,400, mean 12,035; output median 350, p90 597, mean 343. 37.4% of prompt tokens are a prefix already
    /// cached (a request's leading 512-token blocks that an earlier one had): per request p10 2.8%, median 36%, p90
    /// 95%. Timestamps come in 3 s steps, ~10 requests each; counts' variance/mean 2.1 over 10 s.
    public static let longContext = RequestModel(
        name: "builtin-long",
        input: Lengths([
            (0, 891), (0.01, 894), (0.05, 901), (0.10, 964), (0.25, 2_306), (0.50, 6_909), (0.75, 15_367),
            (0.90, 27_367), (0.95, 39_550), (0.99, 85_400), (0.999, 121_301), (1, 126_195),
        ]),
        output: Lengths([
            (0, 1), (0.01, 3), (0.05, 10), (0.10, 24), (0.25, 156), (0.50, 350), (0.75, 472), (0.90, 597), (0.95, 698),
            (0.99, 1_119), (1, 2_000),
        ]),
        // Cached share x 10^6.
        prefix: Prefix(
            share: Lengths([
                (0, 1), (0.01, 7_000), (0.05, 18_000), (0.10, 28_000), (0.25, 69_000), (0.50, 363_000),
                (0.75, 712_000), (0.90, 948_000), (0.95, 976_000), (0.99, 999_000), (1, 1_000_000),
            ]), block: 512),
        rate: 3.40, arrivals: .ticks(every: 3, window: 30, sigma: 0.2))

    /// DeepSeek-R1 serving on Alibaba Bailian (ServeGen, 73 clients over a day, lengths weighted by requests served).
    /// Prompt p10 18, median 208, p90 2,092, p99 23,423, mean 1,270; long reasoning outputs: p10 287, median 792,
    /// p90 3,432, p99 12,607, mean 1,530. Arrival CV per 10-minute window: median 1.02 (the rate, 1.38 million
    /// requests a day, matters only relative to the cluster: a run rescales it).
    public static let reasoning = RequestModel(
        name: "builtin-reasoning",
        input: Lengths([
            (0, 4), (0.01, 9), (0.05, 13), (0.10, 18), (0.25, 41), (0.50, 208), (0.75, 482), (0.90, 2_092),
            (0.95, 6_714), (0.99, 23_423), (0.999, 33_783), (1, 57_284),
        ]),
        output: Lengths([
            (0, 9), (0.01, 141), (0.05, 225), (0.10, 287), (0.25, 427), (0.50, 792), (0.75, 1_499), (0.90, 3_432),
            (0.95, 5_701), (0.99, 12_607), (0.999, 20_833), (1, 32_768),
        ]),
        rate: 16, arrivals: .renewal(cv: 1.0, window: 60, sigma: 0.3))

    /// The presets by the name `--workload` takes.
    public static let presets: [RequestModel] = [conversation, code, longContext, reasoning]
}
