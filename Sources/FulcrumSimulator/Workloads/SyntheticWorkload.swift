import Foundation

/// Request streams drawn from simple distributions rather than fitted to a trace: the conditions a balancer tuned
/// on the built-in models has not seen. Each is a family with parameters; `random(seed:)` draws the parameters too.
public struct SyntheticWorkload: Sendable, CustomStringConvertible {
    /// A lognormal length: `median` tokens, spread `sigma` (of the log), clamped to [`min`, `max`].
    public struct Lognormal: Sendable {
        public var median: Double
        public var sigma: Double
        public var min = 1.0
        public var max = 200_000.0

        func draw(_ random: inout SeededGenerator) -> Int {
            Int(Swift.min(max, Swift.max(min, median * exp(sigma * random.normal()))).rounded())
        }
    }

    public enum Arrivals: Sendable {
        /// Poisson.
        case poisson
        /// Requests come in bursts of `size` (geometric mean) at once, the bursts Poisson.
        case bursts(size: Double)
    }

    public var name: String
    /// Prompt lengths: a mixture, each part with its weight.
    public var inputs: [(weight: Double, length: Lognormal)]
    /// A share of prompts (`share`) drawn uniformly from `range` instead: the heavy tail.
    public var tail: (share: Double, range: ClosedRange<Int>)?
    public var outputs: Lognormal
    /// Share of each prompt already in the prefix cache, uniform in this range.
    public var cached: ClosedRange<Double> = 0...0
    public var arrivals: Arrivals = .poisson

    public var description: String {
        let parts = inputs.map { String(format: "%.0f%% ~%.0f", $0.weight * 100, $0.length.median) }
        var text = "\(name): prompts \(parts.joined(separator: " + "))"
        if let tail { text += String(format: ", %.0f%% %d-%d", tail.share * 100, tail.range.lowerBound, tail.range.upperBound) }
        text += String(format: ", outputs ~%.0f", outputs.median)
        if cached.upperBound > 0 {
            text += String(format: ", cached %.0f-%.0f%%", cached.lowerBound * 100, cached.upperBound * 100)
        }
        if case .bursts(let size) = arrivals { text += String(format: ", bursts of ~%.0f", size) }
        return text
    }

    /// Two populations of prompts, short chat and long documents.
    public static let lognormalMixture = SyntheticWorkload(
        name: "lognormal-mix",
        inputs: [
            (0.7, Lognormal(median: 600, sigma: 0.9, max: 32_000)), (0.3, Lognormal(median: 6_000, sigma: 0.6, max: 64_000)),
        ],
        tail: nil, outputs: Lognormal(median: 250, sigma: 0.9, max: 8_000))

    /// Ordinary prompts with ~10% of 16k-64k tokens: the long prompts that make per-step cost lumpy.
    public static let heavyTail = SyntheticWorkload(
        name: "heavy-tail", inputs: [(1, Lognormal(median: 1_500, sigma: 1.0, max: 16_000))],
        tail: (0.1, 16_000...64_000), outputs: Lognormal(median: 300, sigma: 1.0, max: 8_000))

    /// Requests that come in bursts of ~40, some sharing a cached prefix.
    public static let bursty = SyntheticWorkload(
        name: "bursty", inputs: [(1, Lognormal(median: 2_000, sigma: 1.1, max: 48_000))], tail: nil,
        outputs: Lognormal(median: 400, sigma: 0.8, max: 8_000), cached: 0...0.5, arrivals: .bursts(size: 40))

    public static let families = [lognormalMixture, heavyTail, bursty]

    /// A family with every parameter drawn from `seed`.
    public static func random(seed: UInt64) -> SyntheticWorkload {
        var random = SeededGenerator(seed: seed)
        func between(_ low: Double, _ high: Double) -> Double { low + (high - low) * random.unit() }
        let parts = Int(between(1, 3.999))
        let inputs = (0..<parts).map { _ in
            (weight: between(0.2, 1), length: Lognormal(median: exp(between(log(200), log(12_000))), sigma: between(0.3, 1.4), max: 64_000))
        }
        let total = inputs.reduce(0) { $0 + $1.weight }
        let tailShare = random.unit() < 0.5 ? between(0.02, 0.15) : 0
        let cachedTop = random.unit() < 0.5 ? between(0.1, 0.8) : 0
        return SyntheticWorkload(
            name: "random-\(seed)", inputs: inputs.map { ($0.weight / total, $0.length) },
            tail: tailShare > 0 ? (tailShare, 16_000...64_000) : nil,
            outputs: Lognormal(median: exp(between(log(50), log(2_000))), sigma: between(0.4, 1.2), max: 16_000),
            cached: 0...cachedTop, arrivals: random.unit() < 0.5 ? .poisson : .bursts(size: between(4, 80)))
    }

    /// `count` requests, one a second on average (a benchmark rescales the clock to the load it wants).
    public func trace(count: Int, seed: UInt64) -> Trace {
        var random = SeededGenerator(seed: seed ^ 0x5EED_0F54_4737)
        var requests: [TraceRequest] = []
        requests.reserveCapacity(count)
        var time = 0.0
        while requests.count < count {
            let together: Int
            switch arrivals {
            case .poisson:
                time += random.exponential(mean: 1)
                together = 1
            case .bursts(let size):
                time += random.exponential(mean: size)
                together = 1 + Int(random.exponential(mean: size - 1))
            }
            for _ in 0..<min(together, count - requests.count) {
                let input: Int
                if let tail, random.unit() < tail.share {
                    input = Int.random(in: tail.range, using: &random)
                } else {
                    var pick = random.unit()
                    var chosen = inputs[inputs.count - 1].length
                    for part in inputs {
                        if pick < part.weight {
                            chosen = part.length
                            break
                        }
                        pick -= part.weight
                    }
                    input = chosen.draw(&random)
                }
                let share = cached.lowerBound + (cached.upperBound - cached.lowerBound) * random.unit()
                requests.append(
                    TraceRequest(
                        time: time, inputTokens: input, cachedTokens: min(input - 1, Int(Double(input) * share)),
                        outputTokens: outputs.draw(&random)))
            }
        }
        return Trace(name: name, requests: requests)
    }
}
